"""A hostile upstream on a real socket: raw HTTP/1.1 bytes, scripted per connection by the test.

A well-behaved test server cannot send more than its Content-Length, an unsolicited 408, an absurd
chunk size or a byte a second; this one writes exactly the bytes a test's script gives it, so every
byte on the wire is the test's choice. It records every request it was sent and every connection it
accepted, so a test can prove what the gateway's HTTP client did (reused a connection, retried on a
fresh one, stopped reading early).

It runs its own event loop on its own thread, like the gateways in tests/conftest.py, so the tests
themselves stay synchronous.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from switchboard.http.serving import bind

MAX_REQUEST_HEAD = 64 * 1024


@dataclass
class ReceivedRequest:
    """One request as the upstream read it off the wire."""

    connection: int  # which accepted connection it came on: 0 is the first
    position: int  # its place on that connection: 0 is the first, 1 means the connection was reused
    head: bytes
    body: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == wanted:
                return value.strip().decode("latin-1")
        return None

    @property
    def payload(self) -> dict:
        try:
            parsed = json.loads(self.body)
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    @property
    def last_message(self) -> str:
        """The last message's text: tests send a distinct one per caller and answer it back."""
        messages = self.payload.get("messages") or [{}]
        content = messages[-1].get("content")
        return content if isinstance(content, str) else ""


class Peer:
    """One accepted connection as a script sees it: read requests, write any bytes, hold, close."""

    def __init__(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 received: list[ReceivedRequest]) -> None:
        self.index = index
        self.reader, self.writer = reader, writer
        self.requests: list[ReceivedRequest] = []
        self.bytes_sent = 0  # bytes the kernel accepted from us: what the gateway could have read at most
        self.client_gone = threading.Event()  # a write failed or a read hit EOF: the gateway hung up
        self.finished = threading.Event()  # the script returned (or was stopped)
        self._received = received

    async def next_request(self) -> ReceivedRequest | None:
        """The next request on this connection, or None when the client closed it first."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            body = await self._read_body(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            self.client_gone.set()
            return None
        request = ReceivedRequest(self.index, len(self.requests), head, body)
        self.requests.append(request)
        self._received.append(request)
        return request

    async def _read_body(self, head: bytes) -> bytes:
        lines = [line.lower() for line in head.split(b"\r\n")[1:]]
        if any(line.startswith(b"transfer-encoding:") and b"chunked" in line for line in lines):
            return await self._read_chunked_body()
        lengths = [line.split(b":", 1)[1] for line in lines if line.startswith(b"content-length:")]
        return await self.reader.readexactly(int(lengths[0])) if lengths else b""

    async def _read_chunked_body(self) -> bytes:
        parts = []
        while size := int((await self.reader.readline()).split(b";")[0], 16):
            parts.append(await self.reader.readexactly(size + 2))
        while (await self.reader.readline()).strip():  # trailers, then the blank line
            pass
        return b"".join(part[:-2] for part in parts)

    async def send(self, data: bytes) -> bool:
        """Write `data` and wait until the kernel took it; False when the client had gone."""
        if self.writer.is_closing():
            return False
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, RuntimeError):
            self.client_gone.set()
            return False
        self.bytes_sent += len(data)
        return True

    async def trickle(self, pieces: Iterable[bytes], gap_s: float) -> bool:
        """Each piece, `gap_s` apart: a peer that is alive but barely moving."""
        for piece in pieces:
            if not await self.send(piece):
                return False
            await asyncio.sleep(gap_s)
        return True

    async def flood(self, piece: bytes, total_bytes: int) -> bool:
        """`piece` over and over until `total_bytes` went out or the client hung up."""
        while self.bytes_sent < total_bytes:
            if not await self.send(piece):
                return False
        return True

    async def hold(self, seconds: float = 30.0) -> None:
        """Keep the connection open without a word, until the client closes it (or `seconds` pass)."""
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(seconds):
                while await self.reader.read(65536):
                    pass
                self.client_gone.set()

    def close(self) -> None:
        self.writer.close()


Script = Callable[[Peer], Awaitable[None]]
Responder = Callable[[Peer, ReceivedRequest], Awaitable[None]]


class HostileUpstream:
    """A loopback server whose nth connection runs the nth script (the last one for any beyond).

    `requests` holds every request received, in order, across connections; `connections` counts the
    connections accepted. Start it with `start()` (or `with`), stop it with `stop()`.
    """

    def __init__(self, *scripts: Script) -> None:
        if not scripts:
            raise ValueError("a hostile upstream needs at least one script")
        self.scripts = scripts
        self.requests: list[ReceivedRequest] = []
        self.peers: list[Peer] = []
        self.sock = bind()
        self.port = self.sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"hostile-upstream:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What OPENAI_BASE_URL points at (the gateway appends /chat/completions)."""
        return self.url + "/v1"

    @property
    def connections(self) -> int:
        return len(self.peers)

    def start(self) -> HostileUpstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"hostile upstream on port {self.port} did not start")
        return self

    def stop(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self.sock.close()

    def __enter__(self) -> HostileUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, sock=self.sock, limit=MAX_REQUEST_HEAD))
        self._loop.call_soon(self._ready.set)
        self._loop.run_forever()
        self._loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer(len(self.peers), reader, writer, self.requests)
        self.peers.append(peer)
        script = self.scripts[min(peer.index, len(self.scripts) - 1)]
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await script(peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            peer.client_gone.set()
        except asyncio.CancelledError:
            pass  # stopped: end quietly (asyncio 3.11 logs a cancelled connection handler as an error)
        finally:
            self._tasks.discard(task)
            peer.finished.set()
            writer.close()

    async def _shutdown(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for peer in self.peers:
            peer.writer.transport.abort()


# --- scripts ------------------------------------------------------------------------------------


def answer_each(*responders: Responder) -> Script:
    """A script answering the kth request on its connection with the kth responder (the last repeats),
    until the client closes the connection or a responder closes it."""

    async def script(peer: Peer) -> None:
        while not peer.writer.is_closing():
            request = await peer.next_request()
            if request is None:
                return
            await responders[min(request.position, len(responders) - 1)](peer, request)

    return script


def send(data: bytes | Callable[[ReceivedRequest], bytes], *, then_close: bool = False) -> Responder:
    """A responder writing fixed bytes, or bytes made from the request; optionally closing afterwards."""

    async def respond(peer: Peer, request: ReceivedRequest) -> None:
        await peer.send(data(request) if callable(data) else data)
        if then_close:
            peer.close()

    return respond


async def close_without_answer(peer: Peer, request: ReceivedRequest) -> None:
    """Read the request, then close: what a host that timed the idle connection out looks like."""
    peer.close()


# --- wire shapes ------------------------------------------------------------------------------------


def http_response(status: int | str, body: bytes = b"", headers: Iterable[tuple[str, str]] = (), *,
                  reason: str = "X", content_length: bool = True) -> bytes:
    """A response exactly as given: `status` may be any text ("000"), headers go out in order and as is."""
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{name}: {value}" for name, value in headers]
    if content_length:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def json_response(obj: object, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    return http_response(status, json.dumps(obj).encode(), [("content-type", "application/json"), *headers])


SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"


def sse(obj: object) -> bytes:
    """One SSE event carrying `obj` as JSON (or raw bytes as they are)."""
    return b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"


def chat_chunk(content: str | None = None, *, role: str | None = None, finish: str | None = None,
               usage: dict | None = None) -> dict:
    """A chat.completion.chunk as OpenAI sends it."""
    delta = {k: v for k, v in (("role", role), ("content", content)) if v is not None}
    choices = [] if usage is not None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body = {"id": "chatcmpl-hostile", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x",
            "choices": choices}
    if usage is not None:
        body["usage"] = usage
    return body


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def completion(content: str) -> dict:
    return {"id": "chatcmpl-hostile", "object": "chat.completion", "created": 1, "model": "gpt-x",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}], "usage": USAGE}


def stream_events(content: str) -> list[bytes]:
    """The events of a complete, well-formed streamed answer saying `content`."""
    return [sse(chat_chunk(role="assistant", content="")), sse(chat_chunk(content)),
            sse(chat_chunk(finish="stop")), sse(chat_chunk(usage=USAGE)), b"data: [DONE]\n\n"]


def streamed_answer(content: str) -> bytes:
    """A whole, well-formed streamed response (chunked SSE) saying `content`."""
    return SSE_HEAD + b"".join(chunk(event) for event in stream_events(content)) + LAST_CHUNK


def answer_to(request: ReceivedRequest) -> str:
    """What an honest upstream says to a request: tied to the caller's own message."""
    return f"answer to {request.last_message}"


def honest(request: ReceivedRequest) -> bytes:
    """The right answer for this request, streamed or not as it asked."""
    if request.payload.get("stream"):
        return streamed_answer(answer_to(request))
    return json_response(completion(answer_to(request)))


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll `condition` from the test thread; True as soon as it holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@dataclass
class Stopwatch:
    """Elapsed seconds since it was made."""

    started: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started
