"""The streaming engine: upstream chunks to the client the moment they arrive.

Per chunk the relay does the least it can: note the first chunk the client sees (reasoning included)
and the first content or tool-call delta (TTFT), the finish reason, tool names and usage, and frame
the bytes. The call record is written before the
final `data: [DONE]`, because on Lambda the process may be frozen once the response ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from starlette.responses import Response

from switchboard.attempts import BUFFER, Attempts, settle
from switchboard.framing import ChatFramer, Framer
from switchboard.ledger.record import DISCONNECTED, CallClock, CallRecord
from switchboard.policy import CallPlan
from switchboard.protocol import SSE_HEADERS, GatewayError, dumps
from switchboard.providers.base import UpstreamError
from switchboard.providers.transport import UpstreamClient
from switchboard.request import ChatRequest
from switchboard.settings import Settings

Recorder = Callable[[CallRecord, CallClock], Awaitable[None]]
# The upstream's own latency figure (Bedrock's metrics.latencyMs), which an adapter puts on the parsed usage
# chunk or completion; it is recorded, never sent to the client.
UPSTREAM_LATENCY_KEY = "x_bedrock_latency_ms"


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
            latency = chunk.get(UPSTREAM_LATENCY_KEY)
            if latency is not None:
                self.record.upstream_latency_ms = latency
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
    def __init__(self, client: UpstreamClient, settings: Settings, recorder: Recorder) -> None:
        self.client = client
        self.settings = settings
        self.recorder = recorder

    def stream(self, record: CallRecord, clock: CallClock, chat: ChatRequest, plan: CallPlan,
               admission: Awaitable[None] | None = None, framer: Framer | None = None,
               budget: asyncio.Future | None = None) -> Response:
        """The streamed response. Its status is decided by the first thing the call produces: an error
        before any byte (the upstream's 4xx, 502, 504, a refused admission or budget) is sent as a JSON
        error. `budget` is the budget verdict still on its way (see attempts.py)."""
        attempts = Attempts(self.client, self.settings, plan, chat.body, record, clock.start, budget)
        framer = framer or ChatFramer(record, chat.include_usage)
        return EventStreamResponse(self._events(record, clock, framer, attempts, admission, chat),
                                   headers={"x-request-id": record.request_id})

    async def _events(self, record: CallRecord, clock: CallClock, framer: Framer, attempts: Attempts,
                      admission: Awaitable[None] | None, chat: ChatRequest) -> AsyncIterator[bytes | GatewayError]:
        observer = ChunkObserver(record, clock)
        chunks = attempts.stream()
        sent = False
        opening: bytes | None = None
        clock.upstream_sent = CallClock.now()
        try:
            async for item in chunks:
                if not sent:
                    if admission is not None:
                        await admission  # decided long before the first token, normally
                        admission = None
                    clock.upstream_first = clock.client_first = CallClock.now()
                    if opening is None:
                        opening = framer.opening()  # numbered before anything it precedes
                # one write for everything this upstream read brought
                out = framer.buffer_words() if item is BUFFER else framer.frames(item, observer)  # type: ignore
                if out:
                    if not sent:
                        out = opening + out  # type: ignore[operator]
                        sent = True
                    yield out
        except (UpstreamError, GatewayError) as exc:
            settle(admission)
            if isinstance(exc, UpstreamError) and exc.usage:
                apply_usage(record, exc.usage)
            error = exc.to_gateway_error() if isinstance(exc, UpstreamError) else exc
            record.status, record.error = error.status, error.message
            record.outcome = exc.kind if isinstance(exc, UpstreamError) else (error.code or error.type)
            observer.finish_trace(self.settings.trace_max_chars)
            with anyio.CancelScope(shield=True):
                await chunks.aclose()
                await self._record(record, clock, observer, chat)
            if sent:
                yield framer.failed(error.message, error.code or record.outcome)
            else:
                error.headers["x-request-id"] = record.request_id
                yield error
            return
        except Exception as exc:  # a bug of ours: still one record, and a clean ending, never a cut stream
            from switchboard.observability import call_fields, logger

            logger.exception("unexpected error in a stream", extra=call_fields(record))
            settle(admission)
            error = GatewayError(500, "The gateway hit an unexpected error; it has been logged.",
                                 code="internal_error", headers={"x-request-id": record.request_id})
            record.status, record.outcome, record.error = 500, "internal_error", type(exc).__name__
            with anyio.CancelScope(shield=True):
                await chunks.aclose()
                await self._record(record, clock, observer, chat)
            yield framer.failed(error.message, error.code) if sent else error
            return
        except BaseException:  # cancelled (client gone) or closed by the server
            settle(admission)
            record.status, record.outcome = 499, DISCONNECTED
            observer.finish_trace(self.settings.trace_max_chars)
            with anyio.CancelScope(shield=True):
                await chunks.aclose()
                await self._record(record, clock, observer, chat)
            raise
        if record.outcome == "pending":
            record.outcome = "stop"
        observer.finish_trace(self.settings.trace_max_chars)
        with anyio.CancelScope(shield=True):  # a hang-up now must not cost the record
            await self._record(record, clock, observer, chat)
        yield framer.done() if sent else (framer.opening() if opening is None else opening) + framer.done()

    async def complete(self, record: CallRecord, clock: CallClock, chat: ChatRequest, plan: CallPlan,
                       admission: Awaitable[None] | None = None, framer: Framer | None = None) -> Response:
        if admission is not None:
            await admission  # not streamed, so nobody is waiting on a first token: check the limit first
        clock.upstream_sent = CallClock.now()
        attempts = Attempts(self.client, self.settings, plan, chat.body, record, clock.start)
        completion = await attempts.complete()
        clock.upstream_first = clock.client_first = clock.first_token = clock.first_chunk = CallClock.now()
        record.upstream_latency_ms = completion.pop(UPSTREAM_LATENCY_KEY, None)
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
        framer = framer or ChatFramer(record, False)
        body = dumps(framer.completion(completion))  # framed before the record: a failure here is still one record
        await self._record(record, clock, chat=chat)
        return Response(body, media_type="application/json", headers={"x-request-id": record.request_id})

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


class EventStreamResponse(Response):
    """A `text/event-stream` response that notices a client leaving while the upstream is silent.

    Starlette's StreamingResponse only notices on the next write under newer ASGI servers; a voice
    call that hangs up during a slow first token must cancel the upstream at once.
    """

    def __init__(self, body: AsyncIterator[bytes], status_code: int = 200,
                 headers: dict[str, str] | None = None) -> None:
        self.chunks = body
        self.status_code = status_code
        self.background = None
        self.extra_headers = headers or {}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(_cancel_on_disconnect, receive, group.cancel_scope)
                await self._send_all(send)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.chunks.aclose()  # type: ignore[attr-defined]

    async def _send_all(self, send: Callable) -> None:
        started = False
        async for chunk in self.chunks:
            if isinstance(chunk, GatewayError):  # failed before any byte: a plain JSON error instead
                await Response(dumps(chunk.body()), status_code=chunk.status, headers=chunk.headers,
                               media_type="application/json")({"type": "http"}, _no_receive, send)
                return
            if not started:
                await send({"type": "http.response.start", "status": self.status_code, "headers": self._headers()})
                started = True
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if not started:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self._headers()})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        return headers + [(k.encode(), v.encode()) for k, v in (SSE_HEADERS | self.extra_headers).items()]


async def _no_receive() -> dict:
    return {"type": "http.disconnect"}


async def _cancel_on_disconnect(receive: Callable, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return
