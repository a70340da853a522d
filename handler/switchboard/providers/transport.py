"""The upstream hop: one aiohttp session per process, keep-alive pooling, llhttp parsing.

aiohttp does the HTTP (its parser is llhttp, the same as httptools); this module holds only what the
gateway promises on top of it:
  * redirects are never followed, no compression is asked for, no proxy unless SWITCHBOARD_TRUST_ENV;
  * a pooled connection with anything unread in its buffers is never reused, so a host that sends more
    than it declared, or an unsolicited 408 on an idle connection, cannot shift a connection one response
    behind and hand one caller another's answer;
  * a request that meets a close or an unsolicited 408 on a reused connection is retried once on a fresh
    connection (nothing reached the model, so that is safe);
  * caller-named hosts connect only to addresses that were checked (see CheckedResolver);
  * error bodies are read to a cap, and every failure is one of three exceptions below.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import socket
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_proto import ResponseHandler
from aiohttp.helpers import _EXC_SENTINEL
from yarl import URL

MAX_ERROR_BODY = 64 * 1024
MAX_CHECKED_HOSTS = 10_000  # caller-named hosts remembered as "connect only where checked"
DRAIN_BYTES = 64 * 1024


class TransportError(Exception):
    """Any failure of the upstream hop."""


class ConnectFailed(TransportError):
    pass


class Timeout(TransportError):
    pass


class ProtocolError(TransportError):
    """The peer broke HTTP/1.1: malformed framing, or the connection closed mid-body."""


Resolve = Callable[[str], Awaitable[list[str]]]
IsInternal = Callable[[str], bool]


class CheckedResolver(AbstractResolver):
    """Hosts a caller named are connected to only at the addresses the gateway checked.

    The gateway resolves such a host and refuses internal answers before it sends anything; this resolver
    answers aiohttp's connector from that same (cached) resolution and drops anything internal again, so a
    DNS answer that changes between the check and the connect (rebinding) never reaches a socket.
    """

    def __init__(self, resolve_checked: Resolve, is_internal: IsInternal) -> None:
        self.resolve_checked = resolve_checked
        self.is_internal = is_internal
        self.checked_hosts: OrderedDict[str, None] = OrderedDict()  # oldest first
        self._default: aiohttp.ThreadedResolver | None = None  # bound to a loop: made on first use

    def require_check(self, host: str) -> None:
        """From now on `host` resolves only to checked addresses. Past MAX_CHECKED_HOSTS the host named longest
        ago is forgotten, one at a time: a call's host is named again (and checked again) before it connects,
        so a host in use is never dropped between its check and its connect, as clearing them all could."""
        self.checked_hosts[host] = None
        self.checked_hosts.move_to_end(host)
        while len(self.checked_hosts) > MAX_CHECKED_HOSTS:
            self.checked_hosts.popitem(last=False)

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        if host not in self.checked_hosts:
            if self._default is None or self._default._loop is not asyncio.get_running_loop():
                self._default = aiohttp.ThreadedResolver()
            return await self._default.resolve(host, port, family)
        addresses = [a for a in await self.resolve_checked(host) if not self.is_internal(a)]
        if not addresses:
            raise OSError(f"{host} resolves to no address the gateway may connect to")
        return [{"hostname": host, "host": address, "port": port,
                 "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST} for address in addresses]

    async def close(self) -> None:
        pass  # shared by the sessions; nothing of its own to close


# Whether the request being sent in this task got a pooled connection (set by _CleanConnector._get, which
# runs inside the request's own task, so the caller sees the value when the request returns or fails).
_REUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("switchboard_reused", default=False)


class _BodyEndingHandler(ResponseHandler):
    """aiohttp's protocol, with one guarantee added: a body that cannot go on is failed, never left waiting.

    With aiohttp's C parser, a framing error inside a chunked body (a negative or non-hex chunk size after the
    first chunk) closes the connection and marks the protocol failed, but the body's reader is never told:
    `readany()` waits forever, the read timeout dropped with it, and the caller's stream stays open with it.
    Here whatever fails the protocol, or closes the connection before the body's end, fails the body too.
    """

    def set_exception(self, exc: BaseException, exc_cause: BaseException = _EXC_SENTINEL) -> None:
        payload = self._payload
        super().set_exception(exc, exc_cause)
        if payload is not None:  # next turn of the loop: aiohttp's own error for it (a read timeout) goes first
            self._loop.call_soon(_fail_body, payload, exc)

    def connection_lost(self, exc: BaseException | None) -> None:
        payload = self._payload
        super().connection_lost(exc)
        if payload is not None:
            self._loop.call_soon(_fail_body, payload, exc)


def _fail_body(payload: aiohttp.StreamReader, exc: BaseException | None) -> None:
    if not payload.is_eof() and payload.exception() is None:
        payload.set_exception(aiohttp.ClientPayloadError(f"the response body broke off ({type(exc).__name__})"))


class _CleanConnector(aiohttp.TCPConnector):
    """A TCPConnector that never hands out a pooled connection with unread bytes waiting on it, and whose
    connections fail a broken body rather than leave it waiting (_BodyEndingHandler)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._factory = functools.partial(_BodyEndingHandler, loop=self._loop)

    async def _get(self, key, traces):  # type: ignore[override]
        while True:
            connection = await super()._get(key, traces)
            if connection is None:
                return None
            protocol = connection.protocol
            if protocol is not None and not protocol.should_close:
                _REUSED.set(True)
                return connection
            connection.close()  # bytes nobody asked for are waiting: never let them answer a request


class UpstreamResponse:
    """A streamed response. Read it with `chunks()` or `read()`, then `close()` (safe to call twice)."""

    __slots__ = ("_response", "status", "headers")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as the socket delivers it (chunked framing already undone)."""
        content = self._response.content
        try:
            while True:
                data = await content.readany()
                if not data:
                    return
                yield data
        except TimeoutError:
            raise Timeout("read timed out") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise ProtocolError(_describe(exc)) from None

    async def read(self, limit: int = MAX_ERROR_BODY) -> bytes:
        """At most `limit` bytes of the body; the rest is never read (the connection is then dropped)."""
        parts, size = [], 0
        async with contextlib.aclosing(self.chunks()) as chunks:  # closed here, not by the GC's finalizer hook
            async for data in chunks:
                parts.append(data[: limit - size])
                size += len(parts[-1])
                if size >= limit:
                    break
        return b"".join(parts)

    async def drain(self, timeout_s: float = 0.25) -> None:
        """Read what follows the last event (the chunked terminator) so the connection can be pooled."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.read(DRAIN_BYTES)
        except (TimeoutError, TransportError):
            pass

    def close(self) -> None:
        """Back to the pool only when the body was read to its end; otherwise the connection is closed."""
        response = self._response
        if response.content.at_eof():
            response.release()
        else:
            response.close()


class UpstreamClient:
    """One aiohttp session for every upstream call this process makes."""

    def __init__(self, connect_timeout: float, read_timeout: float, *, trust_env: bool = False,
                 resolver: CheckedResolver | None = None) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.trust_env = trust_env
        self.resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._fresh: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._urls: dict[str, URL] = {}
        self._timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=connect_timeout,
                                              sock_read=read_timeout)

    def _sessions(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            self._session, self._loop, self._fresh = self._new_session(force_close=False), loop, None
        return self._session

    def _new_session(self, force_close: bool) -> aiohttp.ClientSession:
        pooling = {"force_close": True} if force_close else {"keepalive_timeout": 60.0}
        connector = _CleanConnector(limit=0, limit_per_host=0, ttl_dns_cache=60, resolver=self.resolver, **pooling)
        return aiohttp.ClientSession(connector=connector, timeout=self._timeout, trust_env=self.trust_env,
                                     auto_decompress=False, skip_auto_headers=("User-Agent",),
                                     cookie_jar=aiohttp.DummyCookieJar(), raise_for_status=False,
                                     connector_owner=True)

    def _url(self, text: str) -> URL:
        """Parsing a URL costs more than the rest of a request's set-up; a gateway calls a handful of them."""
        url = self._urls.get(text)
        if url is None:
            if len(self._urls) > 1000:
                self._urls.clear()
            url = self._urls[text] = URL(text)
        return url

    def require_check(self, host: str, port: int) -> None:
        """From now on `host` connects only to checked addresses; forget any answer cached without a check."""
        if self.resolver is None:
            return
        known = host in self.resolver.checked_hosts
        self.resolver.require_check(host)  # named again: the last to be forgotten
        if known:
            return
        if self._session is not None and not self._session.closed:
            self._session.connector.clear_dns_cache(host, port)  # type: ignore[union-attr]

    async def start(self) -> None:
        """Create the session now (at start-up), so the first call pays for nothing but itself."""
        self._sessions()

    async def post(self, url: str | URL, headers: dict[str, str], body: bytes) -> UpstreamResponse:
        """POST `body`. A `yarl.URL(..., encoded=True)` goes out byte for byte (a signed path must not be
        re-encoded); a string is normalised as usual, once per distinct URL."""
        if isinstance(url, str):
            url = self._url(url)
        _REUSED.set(False)
        try:
            response = await self._send(self._sessions(), url, headers, body)
        except _Stale:
            if not _REUSED.get():
                raise ProtocolError("the server closed the connection before answering") from None
            return await self._retry_fresh(url, headers, body)  # it had closed the idle connection
        if response.status == 408 and _REUSED.get():
            response.close()  # an idle connection's unsolicited 408, not an answer to this request
            return await self._retry_fresh(url, headers, body)
        return UpstreamResponse(response)

    async def _retry_fresh(self, url: str | URL, headers: dict[str, str], body: bytes) -> UpstreamResponse:
        if self._fresh is None or self._fresh.closed:
            self._fresh = self._new_session(force_close=True)
        try:
            return UpstreamResponse(await self._send(self._fresh, url, headers, body))
        except _Stale:
            raise ProtocolError("the server closed the connection before answering") from None

    async def _send(self, session: aiohttp.ClientSession, url: str | URL, headers: dict[str, str],
                    body: bytes) -> aiohttp.ClientResponse:
        try:
            response = await session.request("POST", url, data=body, headers=headers, allow_redirects=False)
        except aiohttp.ServerDisconnectedError:
            raise _Stale() from None
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailed(_describe(exc)) from None
        except TimeoutError:
            raise Timeout("timed out waiting for the response") from None
        except aiohttp.ClientOSError as exc:
            raise ConnectFailed(_describe(exc)) from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise ProtocolError(_describe(exc)) from None
        if not 100 <= response.status <= 599:
            response.close()
            raise ProtocolError(f"invalid status {response.status}")
        return response

    async def __aenter__(self) -> UpstreamClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for session in (self._session, self._fresh):
            if session is not None and not session.closed:
                try:
                    await session.close()
                except RuntimeError:  # made on a loop that has ended (Mangum, tests)
                    pass
        self._session = self._fresh = None


class _Stale(Exception):
    """The server closed the connection before any response: retry once on a fresh one."""


def _describe(exc: BaseException) -> str:
    """A short reason without the URL or headers (they may carry a caller's key in a query string)."""
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"{type(exc).__name__}: {exc.message}"[:200]
    return type(exc).__name__
