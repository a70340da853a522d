"""Caller-named hosts are connected to only at addresses the gateway checked (no DNS rebinding)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

from switchboard.providers.transport.errors import ConnectFailed

MAX_CHECKED_HOSTS = 10_000  # caller-named hosts remembered as "connect only where checked"

Resolve = Callable[[str], Awaitable[list[str]]]
IsInternal = Callable[[str], bool]


class CheckedResolver:
    """Hosts a caller named are connected to only at the addresses the gateway checked.

    The gateway resolves such a host and refuses internal answers before it sends anything; the client
    connects from that same (cached) resolution and drops anything internal again, so a DNS answer that
    changes between the check and the connect (rebinding) never reaches a socket.
    """

    def __init__(self, resolve_checked: Resolve, is_internal: IsInternal) -> None:
        self.resolve_checked = resolve_checked
        self.is_internal = is_internal
        self.checked_hosts: OrderedDict[str, None] = OrderedDict()  # oldest first

    def require_check(self, host: str) -> None:
        """From now on `host` resolves only to checked addresses. Past MAX_CHECKED_HOSTS the host named longest
        ago is forgotten, one at a time: a call's host is named again (and checked again) before it connects,
        so a host in use is never dropped between its check and its connect, as clearing them all could."""
        self.checked_hosts[host] = None
        self.checked_hosts.move_to_end(host)
        while len(self.checked_hosts) > MAX_CHECKED_HOSTS:
            self.checked_hosts.popitem(last=False)

    async def resolve(self, host: str) -> list[str]:
        """The checked addresses of `host`, internal ones dropped; ConnectFailed when none is left."""
        try:
            addresses = [a for a in await self.resolve_checked(host) if not self.is_internal(a)]
        except OSError as exc:
            raise ConnectFailed(f"the host does not resolve ({type(exc).__name__})") from None
        if not addresses:
            raise ConnectFailed("the host resolves to no address the gateway may connect to")
        return addresses
