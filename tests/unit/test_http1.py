"""The upstream HTTP/1.1 client against canned servers on loopback: bodies, pooling, failures."""

from __future__ import annotations

import asyncio

import pytest

from switchboard.providers import http1
from switchboard.serving import bind


async def serve(answers: list[bytes], close_after: bool = False):
    """A server that answers each request on a connection with the next canned response."""
    state = {"connections": 0, "requests": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state["connections"] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                await reader.readexactly(length)
                answer = answers[min(state["requests"], len(answers) - 1)]
                state["requests"] += 1
                if answer == b"HANG":
                    await asyncio.sleep(5)
                writer.write(answer)
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", state


def run(coroutine):
    return asyncio.run(coroutine)


def test_content_length_body_and_connection_reuse():
    async def main():
        server, url, state = await serve([b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: 1\r\n\r\nhello"])
        async with http1.Pool(2, 2) as pool:
            for _ in range(3):
                response = await pool.request("POST", url + "/v1/x", {"content-type": "application/json"}, b"{}")
                assert response.status_code == 200 and response.headers["x-a"] == "1"
                assert await response.aread() == b"hello"
                await response.aclose()
        server.close()
        return state

    state = run(main())
    assert state == {"connections": 1, "requests": 3}


def test_chunked_body_with_extensions_and_trailers():
    body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\ntrailer: x\r\n\r\n"

    async def main():
        server, url, state = await serve([b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body])
        async with http1.Pool(2, 2) as pool:
            response = await pool.request("POST", url, {}, b"")
            parts = [part async for part in response.aiter_bytes()]
            await response.aclose()
            again = await pool.request("POST", url, {}, b"")
            await again.aread()
            await again.aclose()
        server.close()
        return parts, state

    parts, state = run(main())
    assert parts == [b"hello", b" world"] and state["connections"] == 1


def test_close_delimited_body_is_read_to_eof_and_not_reused():
    async def main():
        server, url, state = await serve([b"HTTP/1.1 200 OK\r\n\r\nuntil close"], close_after=True)
        async with http1.Pool(2, 2) as pool:
            for _ in range(2):
                response = await pool.request("POST", url, {}, b"")
                assert await response.aread() == b"until close"
                await response.aclose()
        server.close()
        return state

    assert run(main())["connections"] == 2


def test_a_pooled_connection_the_host_closed_is_replaced_transparently():
    async def main():
        server, url, state = await serve([b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"], close_after=True)
        async with http1.Pool(2, 2) as pool:
            first = await pool.request("POST", url, {}, b"")
            await first.aread()
            await first.aclose()  # pooled, but the server closes its side
            await asyncio.sleep(0.05)
            second = await pool.request("POST", url, {}, b"")
            assert await second.aread() == b"ok"
            await second.aclose()
        server.close()
        return state

    assert run(main()) == {"connections": 2, "requests": 2}


def test_read_timeout_connect_error_and_broken_responses():
    async def main():
        errors = []
        server, url, _ = await serve([b"HANG"])
        async with http1.Pool(2, 0.2) as pool:
            with pytest.raises(http1.Timeout):
                await pool.request("POST", url, {}, b"")
        server.close()
        closed = bind()
        port = closed.getsockname()[1]
        closed.close()
        async with http1.Pool(1, 1) as pool:
            with pytest.raises(http1.ConnectError):
                await pool.request("POST", f"http://127.0.0.1:{port}", {}, b"")
        for canned in (b"SPDY/9 what\r\n\r\n", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhe"):
            server, url, _ = await serve([canned], close_after=True)
            async with http1.Pool(1, 1) as pool:
                try:
                    response = await pool.request("POST", url, {}, b"")
                    await response.aread()
                except http1.ProtocolError as exc:
                    errors.append(type(exc).__name__)
            server.close()
        return errors

    assert run(main()) == ["ProtocolError", "ProtocolError"]


def test_request_bytes_on_the_wire():
    seen = {}

    async def main():
        async def handle(reader, writer):
            seen["head"] = await reader.readuntil(b"\r\n\r\n")
            seen["body"] = await reader.readexactly(2)
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with http1.Pool(1, 1) as pool:
            response = await pool.request("POST", f"http://127.0.0.1:{port}/v1/chat/completions?x=1",
                                          {"authorization": "Bearer sk-test-fake"}, b"{}")
            assert response.status_code == 204 and await response.aread() == b""
            await response.aclose()
        server.close()

    run(main())
    lines = seen["head"].split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions?x=1 HTTP/1.1"
    assert b"host: 127.0.0.1:" in seen["head"] and b"content-length: 2" in seen["head"]
    assert seen["body"] == b"{}"
