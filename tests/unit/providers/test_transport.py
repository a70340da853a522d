"""The upstream client on its own, over real loopback sockets: what the gateway-level suites do not reach.

The hostile-upstream, guards and recorded-traffic suites drive `transport` through a whole gateway; these
check the client's own promises directly: a clean connection is pooled and an unclean one never is, the one
read-timeout timer counts silence (and is not rescheduled per packet), a body without a length ends at the
close, proxies (absolute form for http, a CONNECT tunnel and TLS for https), and what TLS is asked for.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import socket
import ssl
import time
from urllib.parse import urlsplit

import pytest

from switchboard.providers.transport.client import UpstreamClient
from switchboard.providers.transport.connection import Connection
from switchboard.providers.transport.errors import ConnectFailed, ProtocolError, Timeout
from switchboard.providers.transport.resolver import MAX_CHECKED_HOSTS, CheckedResolver
from switchboard.providers.transport.response import HIGH_WATER
from switchboard.providers.transport.target import Target
from tests.hostile_upstream import (
    LAST_CHUNK,
    HostileUpstream,
    Peer,
    ReceivedRequest,
    answer_each,
    chunk,
    http_response,
    send,
)

OK = http_response(200, b"ok", [("content-type", "text/plain")])
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


@pytest.fixture
def upstream():
    """Factory: a started HostileUpstream (its own thread and loop) running the given scripts."""
    started: list[HostileUpstream] = []

    def start(*scripts) -> HostileUpstream:
        server = HostileUpstream(*scripts).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def run(coroutine):
    return asyncio.run(coroutine)


async def call(client: UpstreamClient, url: str, body: bytes = b"{}", headers: dict | None = None) -> bytes:
    """One POST, its body read to the end, the response closed."""
    response = await client.post(url, headers or {"content-type": "application/json"}, body)
    try:
        return await response.read(1 << 20)
    finally:
        response.close()


# --- the pool ---------------------------------------------------------------------------------------------


def test_a_connection_read_to_its_end_is_reused(upstream):
    server = upstream(answer_each(send(OK)))

    async def scenario() -> list[bytes]:
        async with UpstreamClient(2, 5) as client:
            return [await call(client, server.url + "/v1/x") for _ in range(3)]

    assert run(scenario()) == [b"ok"] * 3
    assert server.connections == 1
    assert [(r.connection, r.position) for r in server.requests] == [(0, 0), (0, 1), (0, 2)]


def test_a_chunked_body_read_to_its_end_is_reused(upstream):
    server = upstream(answer_each(send(CHUNKED_HEAD + chunk(b"data: 1\n\n") + chunk(b"data: 2\n\n") + LAST_CHUNK)))

    async def scenario() -> list[bytes]:
        async with UpstreamClient(2, 5) as client:
            return [await call(client, server.url) for _ in range(2)]

    assert run(scenario()) == [b"data: 1\n\ndata: 2\n\n"] * 2
    assert server.connections == 1


@pytest.mark.parametrize("extra", [b"EXTRA", b"\r\n", http_response(200, b"poison")],
                         ids=["bytes", "padding", "a-whole-response"])
def test_bytes_past_the_content_length_keep_the_connection_out_of_the_pool(upstream, extra):
    server = upstream(answer_each(send(OK + extra), send(OK)), answer_each(send(OK)))

    async def scenario() -> list[bytes]:
        async with UpstreamClient(2, 5) as client:
            first = await call(client, server.url)
            await asyncio.sleep(0.05)  # whatever was sent after the answer has arrived
            return [first, await call(client, server.url)]

    assert run(scenario()) == [b"ok", b"ok"]
    assert server.connections == 2 and server.requests[-1].connection == 1


def test_bytes_arriving_while_the_connection_idles_close_it(upstream):
    async def answer_then_408(peer: Peer, request: ReceivedRequest) -> None:
        await peer.send(OK)
        await asyncio.sleep(0.05)
        await peer.send(http_response(408, b"", reason="Request Timeout"))

    server = upstream(answer_each(answer_then_408), answer_each(send(OK)))

    async def scenario() -> tuple[int, bytes]:
        async with UpstreamClient(2, 5) as client:
            await call(client, server.url)
            await asyncio.sleep(0.2)
            idle = sum(len(connections) for connections in client._idle.values())
            return idle, await call(client, server.url)

    idle, second = run(scenario())
    assert idle == 0 and second == b"ok"
    assert server.requests[-1].connection == 1


def test_a_body_left_unread_closes_the_connection(upstream):
    async def half_a_body(peer: Peer, request: ReceivedRequest) -> None:
        await peer.send(http_response(200, b"", [("content-length", "100000")], content_length=False) + b"x" * 5000)
        await peer.hold(10)

    server = upstream(answer_each(half_a_body), answer_each(send(OK)))

    async def scenario() -> bytes:
        async with UpstreamClient(2, 5) as client:
            response = await client.post(server.url, {}, b"")
            assert len(await response.read(10)) == 10
            response.close()
            response.close()  # twice is fine
            return await call(client, server.url)

    assert run(scenario()) == b"ok"
    assert server.connections == 2
    assert server.peers[0].client_gone.wait(5)


def test_a_new_event_loop_gets_a_new_pool(upstream):
    """Mangum and the tests run calls on loops that end: a connection made on one is never used on another."""
    server = upstream(answer_each(send(OK)))
    client = UpstreamClient(2, 5)
    assert run(call(client, server.url)) == b"ok"
    assert run(call(client, server.url)) == b"ok"
    run(client.aclose())
    assert server.connections == 2


# --- the request on the wire --------------------------------------------------------------------------------


def test_the_request_goes_out_as_given_in_one_write_with_nodelay(upstream, monkeypatch):
    server = upstream(answer_each(send(OK)))
    writes: list[bytes] = []
    sockets: list[socket.socket] = []
    made = Connection.connection_made

    def spying(self, transport_) -> None:
        made(self, transport_)
        original = transport_.write
        sockets.append(transport_.get_extra_info("socket"))

        def write(data: bytes) -> None:
            writes.append(bytes(data))
            original(data)

        transport_.write = write

    monkeypatch.setattr(Connection, "connection_made", spying)
    path = "/model/us.anthropic.claude-x%3A0/converse-stream?a=%2F&b=c%20d"

    async def scenario() -> None:
        async with UpstreamClient(2, 5) as client:
            nodelay = None

            async def check_nodelay() -> None:
                nonlocal nodelay
                while not sockets:
                    await asyncio.sleep(0)
                nodelay = sockets[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

            checker = asyncio.ensure_future(check_nodelay())
            await call(client, server.url + path, b'{"a": 1}', {"content-type": "application/json",
                                                                 "Content-Length": "999"})
            await checker
            assert nodelay

    run(scenario())
    request = server.requests[0]
    assert request.head.split(b"\r\n")[0] == f"POST {path} HTTP/1.1".encode()  # %3A, %2F and %20 untouched
    assert request.header("host") == f"127.0.0.1:{server.port}"
    assert request.header("content-length") == "8" and request.body == b'{"a": 1}'
    assert request.header("accept-encoding") is None and request.header("user-agent") is None
    assert len(writes) == 1 and writes[0].endswith(b'\r\n\r\n{"a": 1}')


def test_a_host_header_the_caller_passes_wins(upstream):
    server = upstream(answer_each(send(OK)))

    async def scenario() -> None:
        async with UpstreamClient(2, 5) as client:
            await call(client, server.url, headers={"Host": "signed.example.test"})

    run(scenario())
    assert [line for line in server.requests[0].head.split(b"\r\n") if line.lower().startswith(b"host:")] == [
        b"host: signed.example.test"]


def test_the_default_port_is_left_out_of_the_host_header():
    assert Target("https://api.example.test/v1", False).host_header == "api.example.test"
    assert Target("https://api.example.test:443/v1", False).host_header == "api.example.test"
    assert Target("http://api.example.test:8080/v1", False).host_header == "api.example.test:8080"
    assert Target("http://[::1]:8080/v1", False).host_header == "[::1]:8080"


def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(upstream):
    server = upstream(answer_each(send(OK)))

    async def scenario() -> None:
        async with UpstreamClient(2, 5) as client:
            await client.post(server.url, {"x-key": "a\r\nx-injected: 1"}, b"")

    with pytest.raises(ProtocolError):
        run(scenario())
    assert server.connections == 0


# --- the read timeout: one timer per connection, counting silence -------------------------------------------


def test_a_slow_but_steady_body_never_times_out_and_the_timer_is_not_rescheduled_per_packet(upstream):
    async def trickle(peer: Peer, request: ReceivedRequest) -> None:
        await peer.send(CHUNKED_HEAD)
        await peer.trickle([chunk(b"data: x\n\n") for _ in range(30)], gap_s=0.03)  # 0.9 s in all
        await peer.send(LAST_CHUNK)

    server = upstream(answer_each(trickle))
    ticks: list[float] = []

    async def scenario() -> tuple[int, bytes]:
        loop = asyncio.get_running_loop()
        call_at = loop.call_at

        def counting(when, callback, *args, **kwargs):
            if getattr(callback, "__name__", "") == "_tick":
                ticks.append(when)
            return call_at(when, callback, *args, **kwargs)

        loop.call_at = counting  # type: ignore[method-assign]
        async with UpstreamClient(2, 0.3) as client:
            response = await client.post(server.url, {}, b"")
            reads, body = 0, b""
            while data := await response.readany():
                reads += 1
                body += data
            response.close()
            return reads, body

    reads, body = run(scenario())
    assert body == b"data: x\n\n" * 30 and reads >= 20
    assert len(ticks) <= 8, f"the read timer was scheduled {len(ticks)} times for {reads} reads"


def test_silence_between_body_reads_past_the_read_timeout_fails_the_read(upstream):
    async def then_silence(peer: Peer, request: ReceivedRequest) -> None:
        await peer.send(CHUNKED_HEAD + chunk(b"data: first\n\n"))
        await peer.hold(10)

    server = upstream(answer_each(then_silence))

    async def scenario() -> tuple[bytes, float]:
        async with UpstreamClient(2, 0.3) as client:
            response = await client.post(server.url, {}, b"")
            first = await response.readany()
            started = time.perf_counter()
            with pytest.raises(Timeout):
                await response.readany()
            response.close()
            return first, time.perf_counter() - started

    first, waited = run(scenario())
    assert first == b"data: first\n\n" and 0.25 <= waited < 2
    assert server.peers[0].client_gone.wait(5)


def test_silence_before_the_head_past_the_read_timeout_fails_the_request(upstream):
    server = upstream(answer_each(lambda peer, request: peer.hold(10)))

    async def scenario() -> float:
        async with UpstreamClient(2, 0.3) as client:
            started = time.perf_counter()
            with pytest.raises(Timeout):
                await client.post(server.url, {}, b"")
            return time.perf_counter() - started

    assert 0.25 <= run(scenario()) < 2


def test_a_reader_busy_elsewhere_is_not_timed_out_for_it(upstream):
    """Silence is counted while someone waits: a caller that took its time between reads is not failed for it."""
    server = upstream(answer_each(send(CHUNKED_HEAD + chunk(b"one") + chunk(b"two") + LAST_CHUNK)))

    async def scenario() -> bytes:
        async with UpstreamClient(2, 0.2) as client:
            response = await client.post(server.url, {}, b"")
            await asyncio.sleep(0.5)
            body = await response.read(100)
            response.close()
            return body

    assert run(scenario()) == b"onetwo"


# --- bodies ------------------------------------------------------------------------------------------------


def test_a_body_without_length_or_chunking_ends_at_the_close(upstream):
    async def close_delimited(peer: Peer, request: ReceivedRequest) -> None:
        await peer.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nhello ")
        await asyncio.sleep(0.05)
        await peer.send(b"world")
        peer.close()

    server = upstream(answer_each(close_delimited), answer_each(send(OK)))

    async def scenario() -> list[bytes]:
        async with UpstreamClient(2, 5) as client:
            return [await call(client, server.url), await call(client, server.url)]

    assert run(scenario()) == [b"hello world", b"ok"]
    assert server.connections == 2  # a close-delimited body's connection is never pooled


@pytest.mark.parametrize("cut", [
    http_response(200, b"", [("content-length", "10")], content_length=False) + b"four",
    CHUNKED_HEAD + chunk(b"four"),
], ids=["content-length", "chunked"])
def test_a_close_before_the_end_of_the_body_is_a_protocol_error_at_once(upstream, cut):
    server = upstream(answer_each(send(cut, then_close=True)))

    async def scenario() -> float:
        async with UpstreamClient(2, 30) as client:
            response = await client.post(server.url, {}, b"")
            started = time.perf_counter()
            with pytest.raises(ProtocolError):
                await response.read(100)
            response.close()
            return time.perf_counter() - started

    assert run(scenario()) < 2  # not the 30 s read timeout


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
    b"HTTP/1.1 600 Nope\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"x-pad: " + b"a" * (70 * 1024) + b"\r\n\r\n",
], ids=["101", "status-600", "head-too-large"])
def test_a_response_head_the_gateway_refuses_is_a_protocol_error(upstream, head):
    server = upstream(answer_each(send(head)))

    async def scenario() -> None:
        async with UpstreamClient(2, 5) as client:
            await client.post(server.url, {}, b"")

    with pytest.raises(ProtocolError):
        run(scenario())


def test_a_flood_the_reader_does_not_take_is_not_buffered_without_bound(upstream):
    size = 16 * 1024 * 1024
    server = upstream(answer_each(send(http_response(200, b"z" * size))))

    async def scenario() -> tuple[int, int]:
        async with UpstreamClient(2, 5) as client:
            response = await client.post(server.url, {}, b"")
            await asyncio.sleep(0.3)  # the reader is busy; the socket is not read meanwhile
            buffered = response._buffered
            body = await response.read(size + 1)
            response.close()
            return buffered, len(body)

    buffered, length = run(scenario())
    assert buffered <= HIGH_WATER + 512 * 1024 and length == size


# --- addresses ---------------------------------------------------------------------------------------------


def test_a_checked_host_connects_only_to_its_checked_addresses(monkeypatch):
    connected: list[tuple] = []

    async def resolve_checked(host: str) -> list[str]:
        return ["10.1.2.3", "203.0.113.9"]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        async def sock_connect(sock, address):
            connected.append(address)
            raise ConnectionRefusedError()

        monkeypatch.setattr(loop, "sock_connect", sock_connect)
        resolver = CheckedResolver(resolve_checked, lambda address: address.startswith("10."))
        async with UpstreamClient(2, 5, resolver=resolver) as client:
            client.require_check("tenant.example.test", 443)
            with pytest.raises(ConnectFailed):
                await client.post("https://tenant.example.test/v1/chat/completions", {}, b"")

    run(scenario())
    assert connected == [("203.0.113.9", 443)]


def test_a_checked_host_with_only_internal_addresses_is_never_connected_to(monkeypatch):
    async def resolve_checked(host: str) -> list[str]:
        return ["169.254.169.254"]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        async def sock_connect(sock, address):
            raise AssertionError("connected to an internal address")

        monkeypatch.setattr(loop, "sock_connect", sock_connect)
        async with UpstreamClient(2, 5, resolver=CheckedResolver(resolve_checked, lambda a: True)) as client:
            client.require_check("tenant.example.test", 443)
            await client.post("https://tenant.example.test/v1", {}, b"")

    with pytest.raises(ConnectFailed):
        run(scenario())


def test_naming_a_host_for_checking_drops_connections_made_without_a_check(upstream):
    server = upstream(answer_each(send(OK)))
    resolved: list[str] = []

    async def resolve_checked(host: str) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    async def scenario() -> None:
        async with UpstreamClient(2, 5, resolver=CheckedResolver(resolve_checked, lambda a: False)) as client:
            await call(client, server.url)
            client.require_check("127.0.0.1", server.port)
            await call(client, server.url)

    run(scenario())
    assert server.connections == 2 and resolved == ["127.0.0.1"]


def test_the_checked_hosts_forget_the_one_named_longest_ago_first():
    resolver = CheckedResolver(lambda host: None, lambda address: False)  # type: ignore[arg-type,return-value]
    for number in range(MAX_CHECKED_HOSTS):
        resolver.require_check(f"h{number}.example.test")
    resolver.require_check("h0.example.test")  # named again: now the newest
    resolver.require_check("new.example.test")
    assert "h0.example.test" in resolver.checked_hosts and "h1.example.test" not in resolver.checked_hosts
    assert len(resolver.checked_hosts) == MAX_CHECKED_HOSTS
    assert next(iter(resolver.checked_hosts)) == "h2.example.test"


# --- TLS -----------------------------------------------------------------------------------------------------


def test_https_connects_with_the_systems_ca_store_and_sni(monkeypatch):
    seen: dict = {}

    async def resolve_checked(host: str) -> list[str]:
        return ["203.0.113.5"]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        async def sock_connect(sock, address):
            seen["address"] = address
            seen["nodelay"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

        async def create_connection(factory, **kwargs):
            seen.update(kwargs)
            raise ssl.SSLCertVerificationError("stop here")

        monkeypatch.setattr(loop, "sock_connect", sock_connect)
        monkeypatch.setattr(loop, "create_connection", create_connection)
        async with UpstreamClient(2, 5, resolver=CheckedResolver(resolve_checked, lambda a: False)) as client:
            client.require_check("api.example.test", 443)
            with pytest.raises(ConnectFailed):
                await client.post("https://api.example.test/v1/chat/completions", {}, b"")

    run(scenario())
    context = seen["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert seen["server_hostname"] == "api.example.test" and seen["address"] == ("203.0.113.5", 443)
    assert seen["nodelay"]


def test_plain_http_is_not_wrapped_in_tls(monkeypatch, upstream):
    server = upstream(answer_each(send(OK)))
    seen: dict = {}

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        create_connection = loop.create_connection

        async def spying(factory, **kwargs):
            seen.update(kwargs)
            return await create_connection(factory, **kwargs)

        monkeypatch.setattr(loop, "create_connection", spying)
        async with UpstreamClient(2, 5) as client:
            await call(client, server.url)

    run(scenario())
    assert seen["ssl"] is None and seen["server_hostname"] is None


# --- proxies (only with trust_env) ---------------------------------------------------------------------------


class Proxy:
    """A forward proxy on the test's loop: CONNECT tunnels to 127.0.0.1 at the named port; an absolute-form
    request is answered by the proxy itself. Every request head it reads is kept."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []

    async def start(self) -> Proxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        method, target, _ = head.split(b"\r\n")[0].decode().split(" ")
        if method != "CONNECT":
            length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n")
                              if line.startswith(b"content-length:")))
            await reader.readexactly(length)
            writer.write(http_response(200, b"via the proxy"))
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", int(target.rsplit(":", 1)[1]))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def close(self) -> None:
        self.server.close()


def use_proxy(monkeypatch, port: int, *, no_proxy: str = "") -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("http_proxy", f"http://user:pa%40ss@127.0.0.1:{port}")
    monkeypatch.setenv("https_proxy", f"http://user:pa%40ss@127.0.0.1:{port}")
    if no_proxy:
        monkeypatch.setenv("no_proxy", no_proxy)


PROXY_AUTH = b"proxy-authorization: Basic " + base64.b64encode(b"user:pa@ss")


def test_without_trust_env_the_proxy_variables_are_ignored(monkeypatch, upstream):
    server = upstream(answer_each(send(OK)))

    async def scenario() -> tuple[bytes, list[bytes]]:
        proxy = await Proxy().start()
        use_proxy(monkeypatch, proxy.port)
        try:
            async with UpstreamClient(2, 5) as client:
                return await call(client, server.url + "/v1"), proxy.heads
        finally:
            proxy.close()

    body, heads = run(scenario())
    assert body == b"ok" and heads == []


def test_an_http_target_goes_through_the_proxy_in_absolute_form(monkeypatch):
    async def scenario() -> tuple[bytes, list[bytes]]:
        proxy = await Proxy().start()
        use_proxy(monkeypatch, proxy.port)
        try:
            async with UpstreamClient(2, 5, trust_env=True) as client:
                return await call(client, "http://upstream.example.test:8080/v1/chat?x=%3A"), proxy.heads
        finally:
            proxy.close()

    body, heads = run(scenario())
    assert body == b"via the proxy"
    lines = heads[0].split(b"\r\n")
    assert lines[0] == b"POST http://upstream.example.test:8080/v1/chat?x=%3A HTTP/1.1"
    assert b"host: upstream.example.test:8080" in lines and PROXY_AUTH in lines


def test_no_proxy_names_a_host_reached_directly(monkeypatch, upstream):
    server = upstream(answer_each(send(OK)))

    async def scenario() -> tuple[bytes, list[bytes]]:
        proxy = await Proxy().start()
        use_proxy(monkeypatch, proxy.port, no_proxy="127.0.0.1")
        try:
            async with UpstreamClient(2, 5, trust_env=True) as client:
                return await call(client, server.url), proxy.heads
        finally:
            proxy.close()

    body, heads = run(scenario())
    assert body == b"ok" and heads == []


def _self_signed(host: str) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) for `host`, made now: nothing offline can vouch for a test server otherwise."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def test_an_https_target_goes_through_a_connect_tunnel_with_tls_inside(monkeypatch, tmp_path):
    host = "tls.example.test"
    certificate, key = _self_signed(host)
    (tmp_path / "cert.pem").write_bytes(certificate)
    (tmp_path / "key.pem").write_bytes(key)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    seen_sni: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, context: seen_sni.append(name)
    requests: list[bytes] = []

    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        requests.append(head)
        await reader.readexactly(2)
        writer.write(OK)
        await writer.drain()
        await reader.read()  # until the client hangs up

    async def scenario() -> bytes:
        server = await asyncio.start_server(origin, "127.0.0.1", 0, ssl=server_tls)
        port = server.sockets[0].getsockname()[1]
        proxy = await Proxy().start()
        use_proxy(monkeypatch, proxy.port)
        try:
            client = UpstreamClient(2, 5, trust_env=True)
            client._tls = ssl.create_default_context(cadata=certificate.decode())  # trusts the test's own CA
            async with client:
                return await call(client, f"https://{host}:{port}/v1/chat/completions", b"{}")
        finally:
            proxy.close()
            server.close()

    assert run(scenario()) == b"ok"
    assert seen_sni == [host]
    assert requests[0].split(b"\r\n")[0] == b"POST /v1/chat/completions HTTP/1.1"  # origin form inside the tunnel


def test_a_proxy_that_refuses_the_tunnel_is_a_connect_failure(monkeypatch):
    async def refusing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        proxy = await asyncio.start_server(refusing, "127.0.0.1", 0)
        use_proxy(monkeypatch, proxy.sockets[0].getsockname()[1])
        try:
            async with UpstreamClient(2, 5, trust_env=True) as client:
                await client.post("https://api.example.test/v1", {}, b"")
        finally:
            proxy.close()

    with pytest.raises(ConnectFailed, match="403"):
        run(scenario())


def test_error_texts_name_neither_the_url_nor_the_address(upstream):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]

    async def scenario() -> str:
        async with UpstreamClient(2, 5) as client:
            try:
                await client.post(f"http://127.0.0.1:{port}/v1?key=sk-secret", {}, b"")
            except ConnectFailed as exc:
                return str(exc)
        return ""

    try:
        text = run(scenario())
    finally:
        closed.close()
    assert text and "sk-secret" not in text and str(port) not in text and "127.0.0.1" not in text
    assert urlsplit(text).scheme == ""
