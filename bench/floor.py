"""The floor: a relay that does nothing, to show what any HTTP hop in between costs at the least.

`python -m bench.floor --port P --upstream-port Q` serves HTTP/1.1 on 127.0.0.1:P. Each client connection
gets its own keep-alive connection to the upstream (opened on its first request, reopened when the upstream
closed it), and each request's bytes are forwarded as they were sent, then the response's bytes as they
arrive: one write to the client per read from the upstream, straight from asyncio's protocol callbacks (no
task switch per chunk, as uvicorn and aiohttp read sockets too). Parsing is what it takes to know where a
message ends: the request head and its Content-Length body; the response head and its chunked (or
Content-Length) body framing. No JSON, no headers rewritten, no TLS; plain asyncio, as the gateway's uvicorn
runs here (no uvloop installed).
"""

from __future__ import annotations

import argparse
import asyncio

HOST = "127.0.0.1"
HEAD_END = b"\r\n\r\n"
MAX_HEAD = 65536


class FramingError(ValueError):
    """The peer's bytes are not an HTTP/1.1 message this relay can delimit."""


def parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """(start line, lower-cased header names to their last value) of a message head, CRLF-terminated."""
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return lines[0].decode("latin-1"), headers


def wants_close(headers: dict[str, str]) -> bool:
    return "close" in headers.get("connection", "").lower()


class BodyFraming:
    """Where one message body ends, fed its bytes as they arrive, split anywhere.

    `feed` returns how many of the bytes belong to this body (the rest, if any, to a next message) and sets
    `done` once it has ended. Kinds: "chunked" (sizes, data, the zero chunk and trailers), "length"
    (Content-Length bytes), "none" (no body), "close" (until the peer closes).
    """

    def __init__(self, kind: str, length: int = 0) -> None:
        if kind not in ("chunked", "length", "none", "close"):
            raise ValueError(f"unknown framing {kind!r}")
        self.kind = kind
        self.done = kind == "none" or (kind == "length" and length == 0)
        self._left = length  # "length": bytes to go; "chunked": bytes to go in this chunk's data + CRLF
        self._state = "size"  # chunked: size -> data -> size ... -> trailer
        self._line = b""  # a chunk-size or trailer line cut by a read

    @classmethod
    def of_response(cls, status: int, headers: dict[str, str], request_method: str) -> BodyFraming:
        if request_method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return cls("none")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return cls("chunked")
        if "content-length" in headers:
            return cls("length", _length(headers["content-length"]))
        return cls("close")

    def feed(self, data: bytes) -> int:
        if self.done:
            return 0
        if self.kind == "close":
            return len(data)
        if self.kind == "length":
            taken = min(self._left, len(data))
            self._left -= taken
            self.done = self._left == 0
            return taken
        return self._feed_chunked(data)

    def _feed_chunked(self, data: bytes) -> int:
        position = 0
        while position < len(data) and not self.done:
            if self._state == "data":
                taken = min(self._left, len(data) - position)
                position += taken
                self._left -= taken
                if self._left == 0:
                    self._state = "size"
                continue
            newline = data.find(b"\n", position)
            if newline < 0:
                self._line += data[position:]
                if len(self._line) > MAX_HEAD:
                    raise FramingError("a chunk-size or trailer line without an end")
                return len(data)
            line, self._line = (self._line + data[position:newline]).rstrip(b"\r"), b""
            position = newline + 1
            if self._state == "trailer":
                self.done = not line
            else:
                size = _chunk_size(line)
                self._state, self._left = ("trailer", 0) if size == 0 else ("data", size + 2)
        return position


def _length(value: str) -> int:
    if not value.strip().isdigit():
        raise FramingError(f"Content-Length {value!r}")
    return int(value)


def _chunk_size(line: bytes) -> int:
    try:
        return int(line.split(b";", 1)[0].strip(), 16)
    except ValueError:
        raise FramingError(f"chunk size {line[:40]!r}") from None


def take_request(buffer: bytes) -> tuple[bytes, str, bool, bytes] | None:
    """(one whole request, its method, whether the client asked to close, the bytes after it) from the front
    of `buffer`; None while it is still incomplete."""
    end = buffer.find(HEAD_END)
    if end < 0:
        if len(buffer) > MAX_HEAD:
            raise FramingError("a request head without an end")
        return None
    start, headers = parse_head(buffer[:end + len(HEAD_END)])
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise FramingError("chunked request bodies are not relayed by the floor")
    size = end + len(HEAD_END) + _length(headers.get("content-length", "0"))
    if len(buffer) < size:
        return None
    return buffer[:size], start.split(" ", 1)[0], wants_close(headers), buffer[size:]


class ClientSide(asyncio.Protocol):
    """One client connection: requests are taken one at a time and written to this connection's own
    upstream connection (opened on the first request, reopened after the upstream closed it)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.transport: asyncio.Transport | None = None
        self.upstream: UpstreamSide | None = None
        self.buffer = b""
        self.request: tuple[bytes, str] | None = None  # the one being answered: bytes, method
        self.close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._next()

    def _next(self) -> None:
        if self.request is not None or self.transport is None or self.transport.is_closing():
            return
        try:
            found = take_request(self.buffer)
        except FramingError:
            self.transport.close()
            return
        if found is not None:
            raw, method, self.close_after, self.buffer = found
            self.request = (raw, method)
            self.send(may_retry=True)

    def send(self, may_retry: bool) -> None:
        """The current request to the upstream: on the kept connection (a retry allowed if it turns out the
        upstream had just closed it) or on a new one."""
        if self.upstream is not None and self.upstream.usable():
            self.upstream.start(*self.request, may_retry=may_retry)
        else:
            self.upstream = None
            asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(lambda: UpstreamSide(self), HOST, self.upstream_port)
        except OSError:
            self.transport.close()
            return
        if self.transport.is_closing():
            upstream.transport.close()
            return
        self.upstream = upstream
        upstream.start(*self.request, may_retry=False)

    def response_done(self, upstream_reusable: bool, ended_by_close: bool = False) -> None:
        self.request = None
        if not upstream_reusable and self.upstream is not None:
            self.upstream.transport.close()
            self.upstream = None
        if self.close_after or ended_by_close:
            self.transport.close()  # the client's request said so, or only a close tells it the body ended
        else:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upstream is not None:
            self.upstream.transport.close()

    def pause_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.resume_reading()


class UpstreamSide(asyncio.Protocol):
    """The upstream connection of one client connection: each read goes to the client in one write."""

    def __init__(self, client: ClientSide) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.busy = False
        self.may_retry = False
        self.method = "GET"
        self.head = b""
        self.framing: BodyFraming | None = None
        self.keep_alive = True
        self.received = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def start(self, request: bytes, method: str, *, may_retry: bool) -> None:
        self.busy, self.may_retry, self.method, self.received = True, may_retry, method, False
        self.head, self.framing, self.keep_alive = b"", None, True
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            self.transport.close()  # bytes nobody asked for
            return
        self.received = True
        try:
            out = self._body(data) if self.framing is not None else self._head(data)
        except FramingError:
            self.client.transport.close()
            self.transport.close()
            return
        if out:
            self.client.transport.write(out)
        if self.framing is not None and self.framing.done:
            self.busy = False
            self.client.response_done(self.keep_alive)

    def _head(self, data: bytes) -> bytes:
        self.head += data
        end = self.head.find(HEAD_END)
        if end < 0:
            if len(self.head) > MAX_HEAD:
                raise FramingError("a response head without an end")
            return b""
        head, body = self.head[:end + len(HEAD_END)], self.head[end + len(HEAD_END):]
        start, headers = parse_head(head)
        self.keep_alive = not wants_close(headers)
        self.framing = BodyFraming.of_response(int(start.split(" ", 2)[1]), headers, self.method)
        return head + self._body(body)

    def _body(self, data: bytes) -> bytes:
        return data[:self.framing.feed(data)]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.busy:
            return  # closed while idle: the next request opens a new connection
        self.busy = False
        if not self.received and self.may_retry:
            self.client.send(may_retry=False)  # it closed the kept connection as the request went out
        elif self.framing is not None and self.framing.kind == "close":
            self.client.response_done(upstream_reusable=False, ended_by_close=True)
        else:
            self.client.transport.close()


async def serve(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ClientSide(upstream_port), HOST, port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.port, args.upstream_port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
