"""The streaming engine: upstream chunks to the client the moment they arrive.

Per chunk the relay does the least it can: note the first chunk the client sees (reasoning included)
and the first content or tool-call delta (TTFT), the finish reason, tool names and usage, and frame
the bytes. The call record is written before the
final `data: [DONE]`, because on Lambda the process may be frozen once the response ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from switchboard.config.settings import Settings
from switchboard.core.admission import NOTHING_PENDING, Admission
from switchboard.core.attempts import Attempts, Committed
from switchboard.core.plan import CallPlan
from switchboard.formats.base import Framer
from switchboard.formats.chat_completions import ChatRequest
from switchboard.ledger.record import DISCONNECTED, CallClock, CallRecord
from switchboard.providers.adapters import Adapters
from switchboard.providers.transport.client import UpstreamClient
from switchboard.wire.asgi import Reply, error_reply, no_receive
from switchboard.wire.chat import UpstreamError
from switchboard.wire.errors import GatewayError
from switchboard.wire.json import dumps
from switchboard.wire.sse import SSE_HEADERS

Recorder = Callable[[CallRecord, CallClock], Awaitable[None]]
# The upstream's own latency figure (Bedrock's metrics.latencyMs), which an adapter puts on the parsed usage
# chunk or completion; it is recorded, never sent to the client.


class ChunkObserver:
    """What the ledger needs from the chunks, gathered without holding any of them back."""

    __slots__ = ("record", "clock", "text", "deltas")

    def __init__(self, record: CallRecord, clock: CallClock) -> None:
        self.record = record
        self.clock = clock
        self.deltas = 0  # content and tool-call deltas: the token estimate when no usage arrives
        self.text: list[str] | None = [] if record.trace is not None else None  # only when capturing

    def observe(self, chunk: dict) -> bool:
        """Note what `chunk` says; True when it is the usage-only chunk (choices empty, usage set)."""
        choices = chunk.get("choices")
        usage = chunk.get("usage")
        if usage:
            apply_usage(self.record, usage)
        if not choices:
            return bool(usage)
        choice = choices[0]
        delta = choice.get("delta")
        if delta:
            tool_calls = delta.get("tool_calls")
            if delta.get("content") or tool_calls:
                self.deltas += 1
                if self.clock.first_token is None:
                    self.clock.first_token = CallClock.now()
                    if self.clock.first_chunk is None:
                        self.clock.first_chunk = self.clock.first_token
            elif self.clock.first_chunk is None and (delta.get("reasoning_content") or delta.get("reasoning")
                                                     or delta.get("thinking") or delta.get("refusal")):
                self.deltas += 1
                self.clock.first_chunk = CallClock.now()
            if self.text is not None and delta.get("content"):
                self.text.append(delta["content"])
            if tool_calls:
                for call in tool_calls:
                    name = (call.get("function") or {}).get("name")
                    if name:
                        self.record.tool_calls.append(name)
        finish = choice.get("finish_reason")
        if finish:
            self.record.outcome = finish
        return False


    def finish_trace(self, limit: int) -> None:
        if self.text is not None and self.record.trace is not None:
            self.record.trace["response"] = cap("".join(self.text), limit)


def cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "...[truncated]"


def apply_usage(record: CallRecord, usage: dict) -> None:
    """The upstream's token counts, as OpenAI names them (every adapter speaks that shape)."""
    record.prompt_tokens = _int(usage.get("prompt_tokens"))
    record.completion_tokens = _int(usage.get("completion_tokens"))
    record.total_tokens = _int(usage.get("total_tokens"))
    prompt_details = _dict(usage.get("prompt_tokens_details"))
    record.cached_tokens = _int(prompt_details.get("cached_tokens"))
    record.cache_write_tokens = _int(prompt_details.get("cache_creation_tokens")
                                     if "cache_creation_tokens" in prompt_details
                                     else prompt_details.get("cache_write_tokens"))
    record.reasoning_tokens = _int(_dict(usage.get("completion_tokens_details")).get("reasoning_tokens"))


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


class Relay:
    def __init__(self, client: UpstreamClient, adapters: Adapters, settings: Settings, recorder: Recorder) -> None:
        self.client = client
        self.adapters = adapters
        self.settings = settings
        self.recorder = recorder
        self.after_first_byte: Callable[[], None] | None = None  # once, after the process's first answer starts

    def first_byte_sent(self) -> None:
        hook, self.after_first_byte = self.after_first_byte, None
        if hook is not None:
            hook()

    def stream(self, record: CallRecord, clock: CallClock, chat: ChatRequest, plan: CallPlan, framer: Framer,
               admission: Admission = NOTHING_PENDING) -> EventStreamResponse:
        """The streamed response. Its status is decided by the first thing the call produces: an error
        before any byte (the upstream's 4xx, 502, 504, a refused admission or budget) is sent as a JSON
        error. The admission's budget verdict may still be on its way (see admission.py)."""
        attempts = Attempts(self.client, self.adapters, self.settings, plan, chat.body, record, clock.start,
                            admission.reroute)
        call = StreamedCall(self, record, clock, framer, attempts, admission, chat)
        return EventStreamResponse(call.run, headers={"x-request-id": record.request_id})

    async def complete(self, record: CallRecord, clock: CallClock, chat: ChatRequest, plan: CallPlan, framer: Framer,
                       admission: Admission = NOTHING_PENDING) -> Reply:
        await admission.before_first_byte()  # not streamed: nobody waits on a first token, so the limit goes first
        clock.upstream_sent = CallClock.now()
        attempts = Attempts(self.client, self.adapters, self.settings, plan, chat.body, record, clock.start)
        completion = await attempts.complete()
        clock.upstream_first = clock.client_first = clock.first_token = clock.first_chunk = CallClock.now()
        usage = completion.get("usage")
        if isinstance(usage, dict):
            apply_usage(record, usage)
        choices = completion.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message") or {}
            if record.trace is not None:
                record.trace["response"] = cap(str(message.get("content") or ""), self.settings.trace_max_chars)
            for call in message.get("tool_calls") or ():
                name = (call.get("function") or {}).get("name") if isinstance(call, dict) else None
                if name:
                    record.tool_calls.append(name)
            record.outcome = choices[0].get("finish_reason") or "stop"
        body = dumps(framer.completion(completion))  # framed before the record: a failure here is still one record
        await self._record(record, clock, chat=chat)
        if self.after_first_byte is not None:
            self.first_byte_sent()
        return Reply(body, headers={"x-request-id": record.request_id})

    async def _record(self, record: CallRecord, clock: CallClock, observer: ChunkObserver | None = None,
                      chat: ChatRequest | None = None) -> None:
        note_prompt_version(record, chat)
        if observer is not None and record.completion_tokens is None and observer.deltas:
            # The usage chunk never came (a disconnect or a cut): count what was produced, marked as estimated.
            record.completion_tokens = observer.deltas
            record.usage_estimated = True
        await self.recorder(record, clock)


def note_prompt_version(record: CallRecord, chat: ChatRequest | None) -> None:
    """The prompt's version, hashed as the call ends (off the first token's path: a long prompt takes a while)."""
    if chat is not None and record.prompt_version is None:
        record.prompt_version = getattr(chat, "prompt_version", None)


class Hangup:
    """Whether the client left, and whether the call may be cancelled for it right now (not while recording)."""

    __slots__ = ("done", "shielded", "left")

    def __init__(self) -> None:
        self.done = False
        self.shielded = False
        self.left = False


Send = Callable[[dict], Awaitable[None]]


class StreamedCall:
    """One streamed call, relayed: the first attempt's first token to the client, then every batch as it comes.

    It writes to the server itself (one `send` per upstream read, the response head with the first bytes),
    with one timer for the call's total deadline once a route is committed, so a token passes through as few
    layers as it can on its way out.
    """

    def __init__(self, relay: Relay, record: CallRecord, clock: CallClock, framer: Framer, attempts: Attempts,
                 admission: Admission, chat: ChatRequest) -> None:
        self.relay, self.record, self.clock, self.framer = relay, record, clock, framer
        self.attempts, self.admission, self.chat = attempts, admission, chat
        self.observer = ChunkObserver(record, clock)
        self.send: Send = _no_send
        self.headers: list[tuple[bytes, bytes]] = []
        self.opening: bytes | None = None
        self.sent = False

    async def run(self, send: Send, headers: list[tuple[bytes, bytes]], hangup: Hangup) -> None:
        self.send, self.headers = send, headers
        record, clock = self.record, self.clock
        committed: Committed | None = None
        self._opening()  # numbered before anything it precedes (Responses events carry sequence numbers)
        clock.upstream_sent = CallClock.now()
        try:
            committed = await self.attempts.start(self._buffer_words)
            await self._relay(committed)
        except (UpstreamError, GatewayError) as exc:
            self.admission.settle()
            if isinstance(exc, UpstreamError) and exc.usage:
                apply_usage(record, exc.usage)
            error = exc.to_gateway_error() if isinstance(exc, UpstreamError) else exc
            record.status, record.error = error.status, error.message
            record.outcome = exc.kind if isinstance(exc, UpstreamError) else (error.code or error.type)
            await self._end(committed, hangup)
            await self._fail(error, error.code or record.outcome)
            return
        except Exception as exc:  # a bug of ours: still one record, and a clean ending, never a cut stream
            from switchboard.observability import call_fields, logger

            logger.exception("unexpected error in a stream", extra=call_fields(record))
            self.admission.settle()
            record.status, record.outcome, record.error = 500, "internal_error", type(exc).__name__
            await self._end(committed, hangup)
            await self._fail(GatewayError(500, "The gateway hit an unexpected error; it has been logged.",
                                          code="internal_error"), "internal_error")
            return
        except BaseException:  # cancelled (client gone) or closed by the server
            self.admission.settle()
            record.status, record.outcome = 499, DISCONNECTED
            await self._end(committed, hangup)
            raise
        if record.outcome == "pending":
            record.outcome = "stop"
        await self._end(committed, hangup)
        done = self.framer.done()
        await self._write(done if self.sent else self._opening() + done, more=False)

    async def _relay(self, committed: Committed) -> None:
        """The committed route's batches, as they come, until its stream ends or the call's deadline passes."""
        frames, observer = self.framer.frames, self.observer
        if committed.held:
            await self._emit(frames(committed.held, observer))
        if committed.ended:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(self.attempts.total_deadline - time.perf_counter(), 0.0)
        try:
            async with asyncio.timeout_at(deadline):
                pending = committed.upstream.take_pending()
                if pending is not None:
                    try:
                        await self._emit(frames(await pending, observer))
                    except StopAsyncIteration:
                        return
                async for batch in committed.upstream.iterator:
                    await self._emit(frames(batch, observer))
        except TimeoutError:
            raise UpstreamError(504, "The call's total deadline passed mid-stream.", kind="timeout") from None

    async def _buffer_words(self) -> None:
        await self._emit(self.framer.buffer_words())

    async def _emit(self, out: bytes) -> None:
        """Bytes for the client; the first ones wait for the rate limit's verdict and carry the stream's opening."""
        if not out:
            return
        if self.sent:
            await self.send({"type": "http.response.body", "body": out, "more_body": True})
            return
        await self.admission.before_first_byte()  # decided long before the first token, normally
        self.clock.upstream_first = self.clock.client_first = CallClock.now()
        await self._write(self._opening() + out)
        if self.relay.after_first_byte is not None:
            self.relay.first_byte_sent()

    def _opening(self) -> bytes:
        if self.opening is None:
            self.opening = self.framer.opening()  # numbered before anything it precedes
        return self.opening

    async def _write(self, body: bytes, *, more: bool = True) -> None:
        if not self.sent:
            self.sent = True
            await self.send({"type": "http.response.start", "status": 200, "headers": self.headers})
        await self.send({"type": "http.response.body", "body": body, "more_body": more})

    async def _fail(self, error: GatewayError, code: str | None) -> None:
        """After the first byte: the format's failure event and the end. Before it: a plain JSON error."""
        if self.sent:
            await self._write(self.framer.failed(error.message, code), more=False)
            return
        error.headers["x-request-id"] = self.record.request_id
        await error_reply(error)({"type": "http"}, no_receive, self.send)

    async def _end(self, committed: Committed | None, hangup: Hangup) -> None:
        """Close the upstream and write the record, a hang-up meanwhile notwithstanding (it must not cost it)."""
        hangup.shielded = True
        try:
            if committed is not None:  # (a route that never committed was closed by the attempts already)
                await committed.upstream.aclose()
                self.record.upstream_latency_ms = committed.stats.latency_ms
            self.observer.finish_trace(self.relay.settings.trace_max_chars)
            await self.relay._record(self.record, self.clock, self.observer, self.chat)
        finally:
            hangup.shielded = False


class EventStreamResponse:
    """A `text/event-stream` response written by its body function, which notices a client leaving while the
    upstream is silent (Starlette's StreamingResponse notices only on its next write, and uvicorn drops writes
    to a closed connection silently: a voice call that hangs up during a slow first token must cancel the
    upstream at once)."""

    def __init__(self, body: Callable[[Send, list[tuple[bytes, bytes]], Hangup], Awaitable[None]],
                 status_code: int = 200, headers: dict[str, str] | None = None) -> None:
        self.body_function = body
        self.status_code = status_code
        self.background = None
        self.extra_headers = headers or {}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        hangup = Hangup()
        watcher = asyncio.get_running_loop().create_task(_cancel_on_disconnect(receive, asyncio.current_task(),
                                                                               hangup))
        try:
            await self.body_function(send, self._headers(), hangup)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not hangup.left or task is None or task.cancelling() != 1:
                raise  # the server is stopping, or someone else cancelled us: theirs to handle
            # Cancelled by the watcher because the client left: the call ended (recorded) as it should.
            task.uncancel()
        finally:
            hangup.done = True
            watcher.cancel()

    def _headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        return headers + [(k.encode(), v.encode()) for k, v in (SSE_HEADERS | self.extra_headers).items()]


async def _no_send(message: dict) -> None:
    raise RuntimeError("a stream's body function ran without a server to send to")


async def _cancel_on_disconnect(receive: Callable, task: asyncio.Task | None, hangup: Hangup) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.disconnect":
            continue
        if hangup.done:
            return
        hangup.left = True
        while hangup.shielded:  # the record is being written: it goes first, then the call ends
            await asyncio.sleep(0.01)
        if not hangup.done and task is not None:
            task.cancel()
        return
