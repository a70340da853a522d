"""UpstreamClient: one keep-alive pool for every upstream call the process makes, and how it connects
(DNS cached a minute, checked addresses for caller-named hosts, http proxies, CONNECT tunnels, TLS)."""

from __future__ import annotations

import asyncio
import socket
import ssl

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from switchboard.providers.transport.connection import KEEPALIVE_S, Connection, Stale
from switchboard.providers.transport.errors import ConnectFailed, ProtocolError, Timeout, TransportError, describe
from switchboard.providers.transport.resolver import CheckedResolver
from switchboard.providers.transport.response import MAX_HEAD_BYTES, UpstreamResponse
from switchboard.providers.transport.target import Target, request_bytes

MAX_IDLE_PER_HOST = 100
DNS_TTL_S = 60.0
MAX_DNS_ENTRIES = 1000
MAX_TARGETS = 1000  # parsed URLs kept: a gateway calls a handful of them


class UpstreamClient:
    """One keep-alive pool for every upstream call this process makes (per scheme, host and port)."""

    def __init__(self, connect_timeout: float, read_timeout: float, *, trust_env: bool = False,
                 resolver: CheckedResolver | None = None) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.trust_env = trust_env
        self.resolver = resolver
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._connections: set[Connection] = set()
        self._targets: dict[str, Target] = {}
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
        payload = request_bytes(target, headers, body)
        connection = self._take(target.key)
        if connection is not None:
            try:
                response = await connection.send(payload)
            except Stale:
                pass  # it had closed the idle connection: nothing reached the model
            else:
                if response.status != 408:
                    return response
                connection.close()  # an idle connection's unsolicited 408, not an answer to this request
                response.close()
        connection = await self._connect(target)
        try:
            return await connection.send(payload)
        except Stale:
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

    def _take(self, key: tuple[str, str, int]) -> Connection | None:
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

    def _pool(self, connection: Connection) -> None:
        idle = self._idle.setdefault(connection.key, [])
        if len(idle) >= MAX_IDLE_PER_HOST:
            connection.close()
            return
        idle.append(connection)

    def _forget(self, connection: Connection) -> None:
        self._connections.discard(connection)
        idle = self._idle.get(connection.key)
        if idle and connection in idle:
            idle.remove(connection)

    def _target(self, url: str) -> Target:
        if len(self._targets) >= MAX_TARGETS:
            self._targets.clear()
        target = self._targets[url] = Target(url, self.trust_env)
        return target

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()  # the system's CA store, hostname checking on
            self._tls.set_alpn_protocols(["http/1.1"])
        return self._tls

    # --- connecting ----------------------------------------------------------------------------------------

    async def _connect(self, target: Target) -> Connection:
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
                failure = ConnectFailed(describe(exc))
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

    async def _open(self, target: Target, family: int, address: tuple) -> Connection:
        loop = self._loop
        assert loop is not None  # bound by post(), before anything connects
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_connect(sock, address)
            if target.proxy is not None and target.scheme == "https":
                await self._tunnel(sock, target)
            tls = self._tls_context() if target.scheme == "https" else None
            _, connection = await loop.create_connection(
                lambda: Connection(self, target.key, loop), sock=sock, ssl=tls,
                server_hostname=target.host if tls is not None else None)
        except BaseException:
            sock.close()
            raise
        return connection

    async def _tunnel(self, sock: socket.socket, target: Target) -> None:
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
