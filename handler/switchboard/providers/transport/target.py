"""Where a URL's request goes and what it says: parsed once per URL, then written in one piece per request."""

from __future__ import annotations

import base64
import re
import urllib.request
from urllib.parse import quote, unquote, urlsplit

from switchboard.providers.transport.errors import ConnectFailed, ProtocolError


class Target:
    """A URL parsed once: where to connect, what to send as the request target and Host, through which proxy."""

    __slots__ = ("key", "scheme", "host", "port", "host_header", "request_target", "proxy", "proxy_auth")

    def __init__(self, url: str, trust_env: bool) -> None:
        try:
            parts = urlsplit(url)
            scheme, host, explicit_port = parts.scheme.lower(), parts.hostname, parts.port
        except ValueError:
            raise ProtocolError("the upstream URL is malformed") from None
        if scheme not in ("http", "https") or not host:
            raise ProtocolError("the upstream URL is not an http(s) URL with a host")
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise ProtocolError("the upstream URL's host is not a valid name") from None
        default_port = 443 if scheme == "https" else 80
        self.scheme, self.host, self.port = scheme, host, explicit_port or default_port
        self.key = (scheme, host, self.port)
        named = f"[{host}]" if ":" in host else host
        self.host_header = named if self.port == default_port else f"{named}:{self.port}"
        # Sent byte for byte: a signed path (Bedrock's %3A and %2F) must not be re-encoded. Only what cannot
        # go on a request line at all (spaces, controls, non-ASCII) is percent-encoded.
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if _UNSAFE_TARGET.search(target):
            target = quote(target, safe=_TARGET_SAFE)
        self.request_target = target
        self.proxy: tuple[str, int] | None = None
        self.proxy_auth: str | None = None
        if trust_env:
            self._use_proxy_from_environment()
        if self.proxy is not None and scheme == "http":  # through a forward proxy: the absolute form
            self.request_target = f"http://{self.host_header}{target}"

    def _use_proxy_from_environment(self) -> None:
        proxy = urllib.request.getproxies().get(self.scheme)
        if not proxy or urllib.request.proxy_bypass(f"{self.host}:{self.port}"):
            return
        parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parts.scheme != "http" or not parts.hostname:
            raise ConnectFailed("only http:// proxies are supported")
        self.proxy = (parts.hostname, parts.port or 80)
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self.proxy_auth = "Basic " + base64.b64encode(credentials).decode("ascii")


_UNSAFE_TARGET = re.compile(r"[^\x21-\x7e]")
_TARGET_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))


def request_bytes(target: Target, headers: dict[str, str], body: bytes) -> bytes:
    """The request's bytes, head and body, for one write. A caller's Host wins; the Content-Length is ours."""
    host = target.host_header
    lines = []
    for name, value in headers.items():
        lowered = name.lower()
        if lowered == "host":
            host = value
        elif lowered not in ("content-length", "transfer-encoding"):
            lines.append(f"{name}: {value}\r\n")
    if target.proxy_auth and target.proxy is not None and target.scheme == "http":
        lines.append(f"proxy-authorization: {target.proxy_auth}\r\n")
    fields = "".join(lines)
    if fields.count("\n") != len(lines) or fields.count("\r") != len(lines) or "\0" in fields or \
            "\r" in host or "\n" in host:
        raise ProtocolError("a request header has a line break in it")
    head = f"POST {target.request_target} HTTP/1.1\r\nhost: {host}\r\n{fields}content-length: {len(body)}\r\n\r\n"
    return head.encode("utf-8") + body
