"""A raw-socket upstream that replays one recorded HTTP response, cut wherever a test says.

Real networks deliver a stream in pieces that respect nothing: an SSE event, a chunk-size line, a
CRLF or a UTF-8 character can each arrive half in one read and half in the next. `ReplayServer`
writes the recorded bytes in exactly such pieces, on a plain asyncio socket (no HTTP library on this
side to tidy anything up), so a test can check that the gateway's output does not depend on where
the cuts fall.

A `Cuts` says where to cut: offsets into the body, which become HTTP chunk boundaries, and offsets
into the whole response on the wire, where one socket write ends and the next begins.
"""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass, field

MAX_REQUEST_BYTES = 8 * 1024 * 1024
WRITE_GAP_S = 0.002  # between writes, so that each piece reaches the gateway as a read of its own


@dataclass(frozen=True)
class RecordedResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    @property
    def chunked(self) -> bool:
        """Streams go out chunked, as the providers send them; whole JSON bodies with a length."""
        return self.headers.get("content-type", "").startswith("text/event-stream")


@dataclass(frozen=True)
class Cuts:
    name: str
    body: tuple[int, ...] = ()  # offsets into the body: HTTP chunk boundaries
    wire: tuple[int, ...] = ()  # offsets into the full response: socket write boundaries


@dataclass
class UpstreamRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def seeded_cuts(body: bytes, seed: int, count: int = 24) -> Cuts:
    """Cuts at random offsets (repeatable from `seed`), in the body and on the wire alike."""
    rng = random.Random(seed)
    body_cuts = _sample(rng, len(body), count)
    wire_length = len(body) + 200  # the head and chunk framing add a little; offsets past the end are dropped
    return Cuts(f"seed-{seed}", body_cuts, _sample(rng, wire_length, count))


def event_boundary_cuts(body: bytes) -> Cuts:
    """A cut on each side of every event's blank line, where an SSE parser is most easily fooled."""
    offsets = set()
    start = body.find(b"\n\n")
    while start >= 0:
        offsets.update((start, start + 1, start + 2))
        start = body.find(b"\n\n", start + 1)
    return Cuts("event-boundaries", _inside(offsets, len(body)))


def utf8_interior_cuts(body: bytes) -> Cuts:
    """A cut inside every multi-byte UTF-8 character (continuation bytes are 0b10xxxxxx)."""
    return Cuts("inside-utf8", _inside({i for i, byte in enumerate(body) if byte & 0xC0 == 0x80}, len(body)))


def _sample(rng: random.Random, length: int, count: int) -> tuple[int, ...]:
    if length < 2:
        return ()
    return tuple(sorted(rng.sample(range(1, length), min(count, length - 1))))


def _inside(offsets: set[int], length: int) -> tuple[int, ...]:
    return tuple(sorted(o for o in offsets if 0 < o < length))


def wire_pieces(response: RecordedResponse, cuts: Cuts) -> list[bytes]:
    """The response as it goes on the wire, as a list of separate socket writes."""
    body_pieces = _split(response.body, cuts.body)
    head = [f"HTTP/1.1 {response.status} {response.reason}"]
    head += [f"{name}: {value}" for name, value in response.headers.items()]
    if response.chunked:
        head.append("transfer-encoding: chunked")
        framed = [b"%x\r\n%s\r\n" % (len(piece), piece) for piece in body_pieces if piece] + [b"0\r\n\r\n"]
    else:
        head.append(f"content-length: {len(response.body)}")
        framed = body_pieces
    head_bytes = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
    writes = [head_bytes, *framed]
    if not cuts.wire:
        return [w for w in writes if w]
    return [piece for piece in _split(b"".join(writes), cuts.wire) if piece]


def _split(data: bytes, offsets: tuple[int, ...]) -> list[bytes]:
    bounds = [0, *(o for o in offsets if 0 < o < len(data)), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@dataclass
class ReplayServer:
    """Answers every request on 127.0.0.1 (a free port) with `response`, written as `cuts` says.

    Keep-alive works as with a real host: the gateway may send the next request on the same
    connection once a response is complete. Set `cuts` between calls to change where they fall.
    """

    response: RecordedResponse
    cuts: Cuts = field(default_factory=lambda: Cuts("whole"))
    requests: list[UpstreamRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="replay-upstream", daemon=True)

    def start(self) -> ReplayServer:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop).result(timeout=5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (request := await read_request(reader)) is not None:
                self.requests.append(request)
                for piece in wire_pieces(self.response, self.cuts):
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(WRITE_GAP_S)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> UpstreamRequest | None:
    """One request (head and Content-Length body); None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    request_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
    method, path, _version = request_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", ""):
        raise AssertionError("the replay server reads Content-Length request bodies only")
    length = int(headers.get("content-length", "0"))
    if length > MAX_REQUEST_BYTES:
        raise AssertionError(f"a {length}-byte request body")
    body = await reader.readexactly(length)
    return UpstreamRequest(method, path, headers, body)
