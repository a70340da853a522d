"""Egress: where a caller may send the gateway. Caller-named hosts are allowlisted, resolved once (cached for a
minute, so a voice call does not wait on DNS twice), and never reach loopback, private or link-local addresses
unless the operator allowlisted them explicitly."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from urllib.parse import urlsplit

from switchboard.config.settings import Settings
from switchboard.providers.registry import OFFICIAL_HOSTS
from switchboard.wire.errors import GatewayError


def parse_provider_url(raw: str) -> tuple[str, str, int | None, str]:
    """'api.groq.com' | 'https://host:port/prefix' -> (scheme, host, port, path prefix)."""
    value = raw.strip()
    if len(value) > 512 or any(ch in value for ch in " \t\r\n\\@?#"):
        raise _bad_url("it contains characters a host name cannot")
    if "://" not in value:
        value = "https://" + value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise _bad_url("it is not a host name") from None
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise _bad_url("only https:// hosts are accepted")
    prefix = parts.path.rstrip("/")
    if prefix.endswith("/v1/chat/completions"):
        prefix = prefix[: -len("/v1/chat/completions")]
    elif prefix.endswith("/v1"):
        prefix = prefix[:-3]
    return parts.scheme, parts.hostname.lower().rstrip("."), port, prefix


def check_provider_host(host: str, port: int | None, scheme: str, settings: Settings) -> bool:
    """Refuse hosts off the allowlist; True when the host must still be resolved and checked."""
    explicitly_allowed = host in settings.allowed_provider_hosts or (
        port is not None and f"{host}:{port}" in settings.allowed_provider_hosts
    )
    if explicitly_allowed:
        return False
    if is_internal_address(host):
        raise GatewayError(400, f"x-inference-provider-url points at a loopback, private or link-local "
                           f"address ({host}); refused.", param="x-inference-provider-url",
                           code="provider_url_refused")
    if host not in OFFICIAL_HOSTS and not _wildcard_allowed(host, settings.allowed_provider_hosts):
        raise GatewayError(400, f"x-inference-provider-url host '{host}' is not on the gateway's allowlist "
                           "(the providers' official hosts plus SWITCHBOARD_ALLOWED_PROVIDER_HOSTS).",
                           param="x-inference-provider-url", code="provider_url_refused")
    if scheme != "https":
        raise _bad_url("only https:// is accepted for this host")
    return True


def _wildcard_allowed(host: str, allowed: frozenset[str]) -> bool:
    """`*.example.com` allows any subdomain of example.com (resolved and checked like official hosts)."""
    return any(entry.startswith("*.") and host.endswith(entry[1:]) for entry in allowed)


async def verify_resolved(host: str, resolve_addresses) -> None:
    """Refuse a host whose DNS answer includes a loopback, private, link-local or metadata address.

    Names on the allowlist are checked too, unless listed exactly: a public name can be pointed at
    169.254.169.254 by whoever controls its DNS.
    """
    try:
        addresses = await resolve_addresses(host)
    except OSError:
        raise GatewayError(502, f"x-inference-provider-url host '{host}' does not resolve.",
                           code="connect_error") from None
    for address in addresses:
        if is_internal_address(address):
            raise GatewayError(400, f"x-inference-provider-url host '{host}' resolves to an internal address; "
                               "refused.", param="x-inference-provider-url", code="provider_url_refused")


def is_internal_address(host: str) -> bool:
    """Loopback, private, link-local, metadata or any other non-global address (or a localhost name)."""
    if host in {"localhost", "localhost.localdomain"} or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_global


def _bad_url(why: str) -> GatewayError:
    return GatewayError(400, f"x-inference-provider-url is not usable: {why}.",
                        param="x-inference-provider-url", code="provider_url_refused")


async def resolve_addresses(host: str) -> list[str]:
    """Every address `host` resolves to (cached for a minute: a voice call should not wait on DNS twice)."""
    cached = _resolved.get(host)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    infos = await asyncio.get_running_loop().getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    addresses = sorted({str(info[4][0]) for info in infos})
    if len(_resolved) > 1000:
        _resolved.clear()
    _resolved[host] = (time.monotonic() + 60, addresses)
    return addresses


_resolved: dict[str, tuple[float, list[str]]] = {}
