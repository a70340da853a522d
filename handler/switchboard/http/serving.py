"""uvicorn as switchboard runs it: a cap on request heads, and a background-thread server for the
simulator beside `serve`, tests and bench."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 64 * 1024  # request line plus headers; browsers and SDKs send a few KiB at most
LINGER_S = 2.0  # after a 431, how long what the client still sends is read and dropped before closing


def _head_too_large_response(limit: int) -> bytes:
    from switchboard.wire.errors import error_body
    from switchboard.wire.json import dumps

    body = dumps(error_body(f"The request's headers are larger than the gateway's limit of {limit} bytes.",
                            "invalid_request_error", code="request_headers_too_large"))
    return (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class HeaderLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on the request head (URL and headers).

    llhttp has no limit of its own and uvicorn sets none on this path (h11 has one), so a head that
    never ends would grow a connection's memory without bound. Past `max_head_bytes` the request is
    not dispatched: the client gets 431 and the connection closes. Two counts: bytes received while a
    head is incomplete (catches one endless header long before it ends), and the parsed head's size
    once it is complete (catches a large head that arrived whole). Body bytes never count.
    """

    max_head_bytes = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes_seen = 0  # received since the current head began (an under-count, never over)
        self._in_head = True
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # dropped: the 431 is out, the connection is closing
        self._head_bytes_seen += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes_seen > self.max_head_bytes and not self._answered():
            self._refuse()

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_head_bytes:
            self._refuse()
            return
        self._in_head, self._head_bytes_seen = False, 0
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = cast(asyncio.Transport, HeadWithFirstBytes(self.cycle.transport, self.loop))


    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._in_head, self._head_bytes_seen = True, 0
        super().on_message_complete()

    def _answered(self) -> bool:
        """Refused already, or closing (uvicorn answered a malformed request with its own 400)."""
        return self._refused or self.transport.is_closing()

    def _refuse(self) -> None:
        """431 and close; in the middle of another response (pipelining), only close."""
        self._refused = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        self.transport.write(_head_too_large_response(self.max_head_bytes))
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the client reads the 431 and EOF while we drop what it still sends
        self.loop.call_later(LINGER_S, self.transport.close)


class HeadWithFirstBytes:
    """The response's transport, as its cycle sees it: the response head goes out in the same write as the first
    body bytes (a stream's head is sent only with its first token), one send instead of two on the way to a
    first token. A head left alone is flushed at the end of the loop's turn, so nothing waits on it."""

    __slots__ = ("_transport", "_head", "_loop")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._head: bytes | None = None  # the held head; b"" once it has gone
        self._loop = loop

    def write(self, data: bytes) -> None:
        head = self._head
        if head is None:
            self._head = data
            self._loop.call_soon(self._flush)
            return
        if head:
            self._head = b""
            data = head + data
        self._transport.write(data)

    def _flush(self) -> None:
        head, self._head = self._head, b""
        if head and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def uvicorn_options(**overrides: Any) -> dict[str, Any]:
    """The uvicorn settings every switchboard server shares (`serve`, the simulator, tests, bench)."""
    # No proxy-headers middleware: nothing reads the client address, and it is one more layer per request.
    options: dict[str, Any] = {"http": HeaderLimitedProtocol, "log_level": "warning", "access_log": False,
                               "proxy_headers": False}
    options.update(overrides)
    return options


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    # IPPROTO_TCP, not 0: only then does asyncio switch Nagle off (TCP_NODELAY) on the accepted connections,
    # without which small writes wait ~40 ms for an ACK.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class BackgroundServer:
    """uvicorn serving `app` on its own thread and event loop until `stop()`."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, **config) -> None:
        self.app = app
        self.sock = bind(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        config = uvicorn_options(**{"lifespan": "on", **config})
        self.server = uvicorn.Server(uvicorn.Config(app, **config))
        # uvicorn < 0.29 installs signal handlers, which only the main thread may do
        self.server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self._run, name=f"uvicorn:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self, timeout: float = 15.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """`python -m switchboard.http.serving --host H --port P`: the gateway app as the function runs it (handler/run.sh).

    uvicorn as a library rather than its command line, so that the head cap (HeaderLimitedProtocol) holds on
    Lambda too, and nothing but uvicorn and the app is imported before /health answers. uvicorn picks uvloop.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m switchboard.http.serving")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    uvicorn.run("switchboard.asgi:app", **uvicorn_options(host=args.host, port=args.port, timeout_graceful_shutdown=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
