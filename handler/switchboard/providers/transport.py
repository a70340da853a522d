"""The upstream hop: our own asyncio protocol over httptools (llhttp), one keep-alive pool per process.

llhttp parses every response (status line, headers, Content-Length, chunked framing); this module holds only
the connection management around it, and what the gateway promises on top:
  * redirects are never followed, no compression is asked for, no proxy unless SWITCHBOARD_TRUST_ENV;
  * a connection with anything unread or unsolicited on it (bytes past the end of a response, a second
    response nobody asked for, an unsolicited 408 while it idles) is closed, never reused, so a host cannot
    shift a connection one response behind and hand one caller another's answer;
  * a request that meets a close (before any byte of an answer) or an unsolicited 408 on a reused connection
    is retried once on a fresh connection (nothing reached the model, so that is safe);
  * caller-named hosts connect only to addresses that were checked (see CheckedResolver);
  * `read_timeout` seconds of silence, waiting for the head or between body reads, fail the read: one timer
    per connection looks at a stamp the socket's reads update, rather than a timer rescheduled per packet;
  * a body that cannot go on (a framing error, a close before its end) fails at once and closes the
    connection: never a read that waits forever;
  * error bodies are read to a cap, and every failure is one of three exceptions below.

Why our own: on loopback the client library this replaced took 1.1-1.3 ms from a POST to the first body bytes
where this takes about 0.5 ms, and that difference was most of what the gateway added to a voice agent's first
token.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
import urllib.request
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from urllib.parse import quote, unquote, urlsplit

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

MAX_ERROR_BODY = 64 * 1024
MAX_CHECKED_HOSTS = 10_000  # caller-named hosts remembered as "connect only where checked"
DRAIN_BYTES = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024  # a response head (interim 1xx heads included) longer than this is refused
HIGH_WATER = 256 * 1024  # body bytes buffered unread before the socket stops being read
KEEPALIVE_S = 60.0  # an idle pooled connection older than this is closed
MAX_IDLE_PER_HOST = 100
DNS_TTL_S = 60.0
MAX_DNS_ENTRIES = 1000
MAX_TARGETS = 1000  # parsed URLs kept: a gateway calls a handful of them


class TransportError(Exception):
    """Any failure of the upstream hop."""


class ConnectFailed(TransportError):
    pass


class Timeout(TransportError):
    pass


class ProtocolError(TransportError):
    """The peer broke HTTP/1.1: malformed framing, or the connection closed mid-body."""


READ_ERRORS: tuple[type[BaseException], ...] = (TransportError,)


def read_error(exc: BaseException) -> TransportError:
    """A failed body read (one of READ_ERRORS) as the transport's own error."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, TimeoutError):
        return Timeout("read timed out")
    return ProtocolError(_describe(exc))


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


class _Headers(Mapping[str, str]):
    """A response's headers: read-only, keys lower-case, repeated headers joined with ", ". Decoded on first
    use: most responses are never asked for a header."""

    __slots__ = ("_raw", "_map")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._map: dict[str, str] | None = None

    def _mapping(self) -> dict[str, str]:
        if self._map is None:
            mapping: dict[str, str] = {}
            for name, value in self._raw:
                key, text = name.decode("latin-1").lower(), value.decode("latin-1")
                mapping[key] = f"{mapping[key]}, {text}" if key in mapping else text
            self._map = mapping
        return self._map

    def __getitem__(self, name: str) -> str:
        return self._mapping()[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    def __repr__(self) -> str:
        return f"_Headers({list(self._mapping())})"  # names only: values may carry keys


class _Refused(Exception):
    """Raised inside a parser callback to stop llhttp; the reason is already on the response."""


class UpstreamResponse:
    """A streamed response. Read it with `chunks()`, `readany` or `read()`, then `close()` (safe to call twice).

    It is also the parser's callback object for its one exchange: llhttp calls `on_body` with the body's bytes
    (chunked framing undone), which go into a buffer and wake the one waiting reader, nothing else.
    """

    __slots__ = ("_connection", "_loop", "_parser", "_raw_headers", "_header_bytes", "_head", "_buffer", "_buffered",
                 "_waiter", "_error", "_complete", "_interim", "_closed", "status", "headers")

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self._loop = connection.loop
        self._parser = HttpResponseParser(self)
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0  # of every head so far, interim ones included
        self._head: asyncio.Future[None] | None = self._loop.create_future()  # None once the head is in
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._complete = False  # the final response's body has ended
        self._interim = False  # the message being parsed is a 1xx
        self._closed = False
        self.status = 0
        self.headers: Mapping[str, str] = _Headers(self._raw_headers)

    # --- what llhttp calls ---------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:  # a second response nobody asked for
            raise _Refused()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))
        self._header_bytes += len(name) + len(value)

    def on_headers_complete(self) -> None:
        if self._header_bytes > MAX_HEAD_BYTES:
            self._fail(ProtocolError("the response head is too large"))
            raise _Refused()
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:  # interim (100 Continue, 103 Early Hints): skipped
            self._interim = True
            self._raw_headers.clear()
            return
        if status == 101:
            self._fail(ProtocolError("the server switched protocols (101)"))
            raise _Refused()
        if not 100 <= status <= 599:
            self._fail(ProtocolError(f"invalid status {status}"))
            raise _Refused()
        self.status = status
        head, self._head = self._head, None
        if head is not None and not head.done():
            head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._buffer.append(body)
        self._buffered += len(body)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if self._buffered > HIGH_WATER:
            self._connection.pause()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._complete = True
        self._connection.keep_alive = self._parser.should_keep_alive()
        self._wake()

    # --- what the connection calls -------------------------------------------------------------------------

    def _fail(self, error: BaseException, *, discard: bool = True) -> None:
        """End the exchange with `error`: the head's waiter, or the body's reader, gets it at once."""
        if self._error is not None or self._complete:
            return
        self._error = error
        if discard:  # bytes parsed before a framing error are not to be trusted
            self._buffer.clear()
            self._buffered = 0
        head, self._head = self._head, None
        if head is not None and not head.done():
            head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _chunked(self) -> bool:
        for name, value in self._raw_headers:
            if name.lower() == b"transfer-encoding":
                return value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
        return False

    def _padded(self, data: bytes) -> bool:
        """Whether line ends followed the response's last byte in `data`, the read that completed it. llhttp skips
        them silently between messages; nothing is to follow a response, so the connection is not pooled.

        A response ends in exactly as many line ends as its last bytes hold: 4 ("0\r\n\r\n", or a head without
        a body), or those of a Content-Length body's last piece. A read of nothing but line ends cannot be told
        from a split terminator, so it counts as padded too (a connection lost, never a wrong answer)."""
        run = _line_ends_at_end(data)
        if run == len(data):
            return True
        if not self._chunked() and self._buffer:
            return run != _line_ends_at_end(self._buffer[-1])
        return run != 4

    def _ended_by_close(self) -> bool:
        """Whether a close ends this body cleanly: it has neither a length nor chunked framing."""
        for name, value in self._raw_headers:
            lowered = name.lower()
            if lowered == b"content-length":
                return False
            if lowered == b"transfer-encoding" and value.lower().rsplit(b",", 1)[-1].strip() == b"chunked":
                return False
        return True

    # --- the reader's side ---------------------------------------------------------------------------------

    async def _readany(self) -> bytes:
        while True:
            buffer = self._buffer
            if buffer:
                data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
                buffer.clear()
                self._buffered = 0
                connection = self._connection
                if connection.paused:
                    connection.resume()
                return data
            if self._error is not None:  # a framing error discarded the buffer: it is raised at once
                raise self._error
            if self._complete or self._closed:
                return b""
            connection = self._connection
            connection.last_activity = self._loop.time()  # silence is counted from when someone waits
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    @property
    def readany(self) -> Callable[[], Awaitable[bytes]]:
        """The next bytes of the body as they arrive (b"" at its end), for a reader that loops itself: what it
        raises is one of READ_ERRORS, to be mapped with `read_error`. One layer fewer than `chunks()`."""
        return self._readany

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as the socket delivers it (chunked framing already undone)."""
        readany = self._readany
        while data := await readany():
            yield data

    async def read(self, limit: int = MAX_ERROR_BODY) -> bytes:
        """At most `limit` bytes of the body; the rest is never read (the connection is then dropped)."""
        parts, size = [], 0
        readany = self._readany
        while size < limit and (data := await readany()):
            parts.append(data[: limit - size])
            size += len(parts[-1])
        return b"".join(parts)

    async def drain(self, timeout_s: float = 0.25) -> None:
        """Read what follows the last event (the chunked terminator) so the connection can be pooled."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.read(DRAIN_BYTES)
        except (TimeoutError, TransportError):
            pass

    def close(self) -> None:
        """Back to the pool only when the body was read to its end and nothing else is pending; otherwise the
        connection is closed."""
        if self._closed:
            return
        self._closed = True
        connection = self._connection
        if self._complete and not self._buffer and self._error is None:
            connection.release(self)
        else:
            connection.close()
        self._wake()


class _Connection(asyncio.Protocol):
    """One upstream socket: one exchange at a time, its bytes fed to that exchange's parser."""

    def __init__(self, client: UpstreamClient, key: tuple[str, str, int]) -> None:
        self.client = client
        self.key = key
        self.loop = client._loop
        self.transport: asyncio.Transport | None = None
        self.exchange: UpstreamResponse | None = None
        self.head_bytes = 0  # what arrived for the current exchange before its head was complete
        self.last_activity = 0.0
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.keep_alive = False
        self.paused = False
        self.closed = False

    # --- asyncio's side ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.client._connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        exchange = self.exchange
        if exchange is None or exchange._complete:  # nobody asked: an idle 408, a stray response, padding
            self.close()
            return
        if exchange._head is not None:
            self.head_bytes += len(data)
        try:
            exchange._parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade, _Refused) as exc:
            exchange._fail(ProtocolError(_parser_reason(exc)))
            self.close()
            return
        if exchange._complete:
            if self.keep_alive and exchange._padded(data):
                self.keep_alive = False
        elif exchange._head is not None and self.head_bytes > MAX_HEAD_BYTES:  # a head that never ends
            exchange._fail(ProtocolError("the response head is too large"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        self.client._forget(self)
        exchange = self.exchange
        if exchange is None or exchange._complete or exchange._error is not None:
            return
        if exchange._head is not None:
            if self.head_bytes == 0:
                exchange._fail(_Stale())
            else:
                exchange._fail(ProtocolError("the connection closed mid-head"))
        elif exchange._ended_by_close():
            exchange._complete = True  # a close-delimited body: its end is the close
            exchange._wake()
        else:
            exchange._fail(ProtocolError("the connection closed mid-body"), discard=False)

    # --- the client's side ---------------------------------------------------------------------------------

    async def send(self, payload: bytes) -> UpstreamResponse:
        """Write one request (head and body in one write) and wait for its response's head."""
        exchange = self.exchange = UpstreamResponse(self)
        self.head_bytes = 0
        self.keep_alive = False
        now = self.last_activity = self.loop.time()
        deadline = now + self.client.read_timeout
        if self.timer is None or self.timer.when() > deadline:
            self._stop_timer()
            self.timer = self.loop.call_at(deadline, self._tick)
        head = exchange._head
        self.transport.write(payload)  # type: ignore[union-attr]
        try:
            await head  # type: ignore[misc]
        except BaseException:
            self.close()  # a cancelled or failed exchange leaves the socket in an unknown state
            raise
        return exchange

    def release(self, exchange: UpstreamResponse) -> None:
        """The exchange's body was read to its end: back to the pool, unless anything says otherwise."""
        if exchange is not self.exchange:
            return
        self.exchange = None
        if self.closed or not self.keep_alive or self.transport is None or self.transport.is_closing():
            self.close()
            return
        self.idle_since = self.loop.time()
        self.client._pool(self)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.closed = True
        self.client._forget(self)

    def abort(self) -> None:
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.abort()

    def pause(self) -> None:
        if not self.paused and self.transport is not None and not self.transport.is_closing():
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    # --- the one timer ---------------------------------------------------------------------------------------

    def _tick(self) -> None:
        """The read timeout and the idle expiry, both from stamps: rescheduled only when it fires."""
        self.timer = None
        if self.closed:
            return
        now = self.loop.time()
        exchange = self.exchange
        if exchange is None:
            expiry = self.idle_since + KEEPALIVE_S
            if now >= expiry:
                self.close()
                return
            self.timer = self.loop.call_at(expiry, self._tick)
            return
        waiting = exchange._head is not None or exchange._waiter is not None
        silent_until = self.last_activity + self.client.read_timeout
        if waiting and now >= silent_until - 0.001:
            if exchange._head is not None:
                exchange._fail(Timeout("timed out waiting for the response"))
            else:
                exchange._fail(Timeout("read timed out"), discard=False)
            self.close()
            return
        self.timer = self.loop.call_at(silent_until if waiting else now + self.client.read_timeout, self._tick)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class _Target:
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


class UpstreamClient:
    """One keep-alive pool for every upstream call this process makes (per scheme, host and port)."""

    def __init__(self, connect_timeout: float, read_timeout: float, *, trust_env: bool = False,
                 resolver: CheckedResolver | None = None) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.trust_env = trust_env
        self.resolver = resolver
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._connections: set[_Connection] = set()
        self._targets: dict[str, _Target] = {}
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[int, tuple]]]] = {}
        self._tls: ssl.SSLContext | None = None

    async def start(self) -> None:
        """Bind to the running loop and load the CA store now (at start-up): the first call pays for nothing
        but itself."""
        self._bind(asyncio.get_running_loop())
        self._tls_context()

    async def __aenter__(self) -> UpstreamClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        running = self._loop is asyncio.get_running_loop()
        self._drop_connections()
        if running:
            await asyncio.sleep(0)  # their sockets close now, not when the loop is gone

    def require_check(self, host: str, port: int) -> None:
        """From now on `host` connects only to checked addresses; forget what was resolved, or connected to,
        without a check."""
        if self.resolver is None:
            return
        known = host in self.resolver.checked_hosts
        self.resolver.require_check(host)  # named again: the last to be forgotten
        if known:
            return
        for cached in [entry for entry in self._dns if entry[0] == host]:
            del self._dns[cached]
        for key in [key for key in self._idle if key[1] == host]:
            for connection in self._idle.pop(key):
                connection.close()

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> UpstreamResponse:
        """POST `body` to `url` (a str, sent as given) and return once the response's head is in. Any status is
        returned, 3xx included: redirects are never followed."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind(loop)
        target = self._targets.get(url)
        if target is None:
            target = self._target(url)
        payload = _request(target, headers, body)
        connection = self._take(target.key)
        if connection is not None:
            try:
                response = await connection.send(payload)
            except _Stale:
                pass  # it had closed the idle connection: nothing reached the model
            else:
                if response.status != 408:
                    return response
                connection.close()  # an idle connection's unsolicited 408, not an answer to this request
                response.close()
        connection = await self._connect(target)
        try:
            return await connection.send(payload)
        except _Stale:
            raise ProtocolError("the server closed the connection before answering") from None

    # --- the pool ------------------------------------------------------------------------------------------

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Connections belong to the loop they were made on; a new loop starts a new pool."""
        if self._loop is not None and self._loop is not loop:
            self._drop_connections()
        self._loop = loop

    def _drop_connections(self) -> None:
        for connection in list(self._connections):
            try:
                connection.abort()
            except RuntimeError:  # made on a loop that has ended (Mangum, tests)
                pass
        self._connections.clear()
        self._idle.clear()

    def _take(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = self._loop.time()  # type: ignore[union-attr]
        while idle:
            connection = idle.pop()
            transport = connection.transport
            if connection.closed or transport is None or transport.is_closing():
                continue
            if now - connection.idle_since >= KEEPALIVE_S:
                connection.close()
                continue
            return connection
        return None

    def _pool(self, connection: _Connection) -> None:
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= MAX_IDLE_PER_HOST:
            connection.close()
            return
        idle.append(connection)

    def _forget(self, connection: _Connection) -> None:
        self._connections.discard(connection)
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def _target(self, url: str) -> _Target:
        if len(self._targets) >= MAX_TARGETS:
            self._targets.clear()
        target = self._targets[url] = _Target(url, self.trust_env)
        return target

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()  # the system's CA store, hostname checking on
            self._tls.set_alpn_protocols(["http/1.1"])
        return self._tls

    # --- connecting ----------------------------------------------------------------------------------------

    async def _connect(self, target: _Target) -> _Connection:
        host, port = target.proxy or (target.host, target.port)
        checked = target.proxy is None and self.resolver is not None and host in self.resolver.checked_hosts
        try:
            async with asyncio.timeout(self.connect_timeout):
                addresses = await (self._checked(host, port) if checked else self._resolve(host, port))
        except TimeoutError:
            raise Timeout("timed out resolving the host") from None
        failure: TransportError = ConnectFailed("no address to connect to")
        for family, address in addresses:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    return await self._open(target, family, address)
            except TimeoutError:
                failure = Timeout("timed out connecting")
            except TransportError as exc:
                failure = exc
            except (OSError, ssl.SSLError) as exc:
                failure = ConnectFailed(_describe(exc))
        raise failure

    async def _checked(self, host: str, port: int) -> list[tuple[int, tuple]]:
        addresses = await self.resolver.resolve(host)  # type: ignore[union-attr]
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, (a, port)) for a in addresses]

    async def _resolve(self, host: str, port: int) -> list[tuple[int, tuple]]:
        """Plain DNS for hosts nobody named (configured providers, proxies), answers cached for a minute."""
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                socket.inet_pton(family, host)
            except OSError:
                continue
            return [(family, (host, port))]
        now = self._loop.time()  # type: ignore[union-attr]
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            infos = await self._loop.getaddrinfo(host, port, type=socket.SOCK_STREAM,  # type: ignore[union-attr]
                                                 proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise ConnectFailed(f"the host does not resolve ({type(exc).__name__})") from None
        addresses = [(info[0], info[4]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
        if len(self._dns) >= MAX_DNS_ENTRIES:
            self._dns.clear()
        self._dns[(host, port)] = (now + DNS_TTL_S, addresses)
        return addresses

    async def _open(self, target: _Target, family: int, address: tuple) -> _Connection:
        loop = self._loop
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, address)  # type: ignore[union-attr]
            if target.proxy is not None and target.scheme == "https":
                await self._tunnel(sock, target)
            tls = self._tls_context() if target.scheme == "https" else None
            _, connection = await loop.create_connection(  # type: ignore[union-attr]
                lambda: _Connection(self, target.key), sock=sock, ssl=tls,
                server_hostname=target.host if tls is not None else None)
        except BaseException:
            sock.close()
            raise
        return connection

    async def _tunnel(self, sock: socket.socket, target: _Target) -> None:
        """CONNECT through the proxy; TLS to the target then runs inside the tunnel."""
        loop = self._loop
        authority = f"[{target.host}]:{target.port}" if ":" in target.host else f"{target.host}:{target.port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if target.proxy_auth:
            lines.append(f"Proxy-Authorization: {target.proxy_auth}")
        await loop.sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))  # type: ignore[union-attr]
        answer = _ProxyAnswer()
        parser = answer.parser = HttpResponseParser(answer)
        received = 0
        while answer.status is None:
            data = await loop.sock_recv(sock, 65536)  # type: ignore[union-attr]
            received += len(data)
            if not data:
                raise ConnectFailed("the proxy closed the connection")
            if received > MAX_HEAD_BYTES:
                raise ConnectFailed("the proxy's answer is too large")
            try:
                parser.feed_data(data)
            except (HttpParserError, HttpParserUpgrade):
                raise ConnectFailed("the proxy sent a malformed answer") from None
        if answer.status != 200:
            raise ConnectFailed(f"the proxy refused the tunnel ({answer.status})")
        if answer.extra:
            raise ConnectFailed("the proxy sent bytes before the tunnel was used")


class _ProxyAnswer:
    """The head of a proxy's answer to CONNECT (llhttp parses it as well)."""

    def __init__(self) -> None:
        self.status: int | None = None
        self.extra = False
        self.parser: HttpResponseParser | None = None

    def on_message_begin(self) -> None:
        self.extra = self.status is not None

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()  # type: ignore[union-attr]

    def on_body(self, body: bytes) -> None:
        self.extra = True


def _request(target: _Target, headers: dict[str, str], body: bytes) -> bytes:
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


def _line_ends_at_end(data: bytes) -> int:
    """How many CR and LF bytes `data` ends with."""
    end = len(data)
    while end and data[end - 1] in (10, 13):
        end -= 1
    return len(data) - end


class _Stale(Exception):
    """The server closed the connection before any response: retry once on a fresh one."""


def _parser_reason(exc: BaseException) -> str:
    """llhttp's reason (a fixed phrase, never the bytes it refused), or why a callback stopped it."""
    context = exc.__context__
    if isinstance(exc, _Refused) or isinstance(context, _Refused):
        return "a response nobody asked for, or a status the gateway refuses"
    if isinstance(exc, HttpParserUpgrade):
        return "the server switched protocols"
    return f"malformed response: {str(exc)[:100]}"


def _describe(exc: BaseException) -> str:
    """A short reason without the URL, the address or headers (a URL may carry a caller's key in its query)."""
    reason = getattr(exc, "reason", None) if isinstance(exc, ssl.SSLError) else None
    if isinstance(reason, str) and reason:
        return f"{type(exc).__name__}: {reason}"[:200]
    return type(exc).__name__
