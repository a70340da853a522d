"""Bedrock's answers -> OpenAI's: ConverseStream events to chunks (`StreamTranslator`), a Converse response
to a chat.completion (`completion_from_converse`). Pure: no I/O.

ConverseStream's exceptions arrive inside a 200 stream, as event-stream messages of their own (`event`).
Usage counts cache reads and writes apart from the rest of the input (OpenAI's prompt_tokens includes them).
reasoningContent text becomes `reasoning_content`; its signatures and redacted content are dropped. Bedrock's
own latency figure (metrics.latencyMs) goes to the call's UpstreamStats, for the record, never to the client.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from switchboard.providers._translate import (
    CLAUDE_STOP_REASONS,
    Envelope,
    arguments_json,
    as_dict,
    chat_completion,
    counted_usage,
)
from switchboard.providers._translate import finish_reason as stop_finish_reason
from switchboard.providers.base import UpstreamStats
from switchboard.providers.bedrock.errors import Secrets, stream_exception
from switchboard.providers.errors import scrub_bytes
from switchboard.wire.chat import Batch, UpstreamError
from switchboard.wire.json import dumps

if TYPE_CHECKING:
    from botocore.eventstream import EventStreamMessage

_FINISH_REASONS = {
    **CLAUDE_STOP_REASONS,
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def finish_reason(stop_reason: object) -> str:
    return stop_finish_reason(stop_reason, _FINISH_REASONS)


def openai_usage(usage: dict) -> dict:
    """Bedrock counts cache reads and writes apart from `inputTokens`; OpenAI's prompt_tokens includes them."""
    return counted_usage(usage, "inputTokens", "outputTokens", "cacheReadInputTokens", "cacheWriteInputTokens")


def latency(metrics: object) -> int | float | None:
    """Bedrock's own latency figure, from a response's or a metadata event's `metrics`."""
    value = as_dict(metrics).get("latencyMs")
    # `not value >= 0` refuses NaN too (Python's json reads it)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return None
    return value


class StreamTranslator(Envelope):
    """ConverseStream events -> OpenAI chunks, one event at a time, no I/O.

    `feed` takes an event's type and payload; `stopped` turns true at messageStop (the answer is whole),
    `complete` at metadata (nothing follows), where Bedrock's latency figure goes to `stats`. `chunks` takes
    the event-stream message as it arrived (the loop in `providers.base` drives it): an exception or error
    message raises its UpstreamError, its text scrubbed of `secrets`.
    """

    def __init__(self, model: str, request_id: str | None = None, created: int | None = None, *,
                 provider: str = "bedrock", secrets: Secrets = (), stats: UpstreamStats | None = None) -> None:
        super().__init__(f"chatcmpl-{request_id}" if request_id else "chatcmpl-bedrock", model, created)
        self.provider = provider
        self.secrets = secrets
        self.stats = stats
        self.stopped = False
        self.complete = False
        self.latency_ms: int | float | None = None
        self._started = False
        self._tool_index: dict[int, int] = {}  # contentBlockIndex -> OpenAI tool_calls index
        self._awaiting_input: set[int] = set()  # tool blocks that have had no input fragment yet
        self._open_tools: set[int] = set()

    @property
    def whole(self) -> bool:
        return self.stopped

    @property
    def over(self) -> bool:
        return self.complete

    def chunks(self, message: EventStreamMessage) -> Batch:
        return [(dumps(chunk), chunk) for chunk in self.feed(*event(message, self.provider, self.secrets))]

    def feed(self, event_type: str, event: dict) -> list[dict]:
        handler = getattr(self, "_on_" + event_type, None)
        if handler is None:
            return []  # an event this version does not know: skipped, never fatal
        chunks = handler(event)
        if chunks and not self._started:  # every stream opens with the role, even one that skipped messageStart
            self._started = True
            chunks.insert(0, self._chunk({"role": "assistant", "content": ""}))
        return chunks

    def _on_messageStart(self, event: dict) -> list[dict]:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_contentBlockStart(self, event: dict) -> list[dict]:
        tool = as_dict(as_dict(event.get("start")).get("toolUse"))
        block = event.get("contentBlockIndex")
        if not tool or not isinstance(block, int) or block in self._tool_index:
            return []
        index = self._tool_index[block] = len(self._tool_index)
        self._awaiting_input.add(block)
        self._open_tools.add(block)
        return [self._tool_call_start(index, tool.get("toolUseId"), tool.get("name"))]

    def _on_contentBlockDelta(self, event: dict) -> list[dict]:
        delta = as_dict(event.get("delta"))
        text = delta.get("text")
        if isinstance(text, str):
            return [self._chunk({"content": text})] if text else []  # some models send an empty delta first
        fragment = as_dict(delta.get("toolUse")).get("input")
        block = event.get("contentBlockIndex")
        if isinstance(fragment, str):
            if not fragment or not isinstance(block, int) or block not in self._open_tools:
                return []  # nothing to add, or a late fragment for a block already stopped
            self._awaiting_input.discard(block)
            call = {"index": self._tool_index[block], "function": {"arguments": fragment}}
            return [self._chunk({"tool_calls": [call]})]
        reasoning = as_dict(delta.get("reasoningContent")).get("text")
        if isinstance(reasoning, str) and reasoning:
            return [self._chunk({"reasoning_content": reasoning})]
        return []  # reasoning signatures, redacted reasoning, citations

    def _on_contentBlockStop(self, event: dict) -> list[dict]:
        block = event.get("contentBlockIndex")
        if not isinstance(block, int) or block not in self._open_tools:
            return []
        self._open_tools.discard(block)
        return self._empty_input(block)

    def _empty_input(self, block: int) -> list[dict]:
        """A tool that takes no input streams no fragment; its arguments are still an object: "{}"."""
        if block not in self._awaiting_input:
            return []
        self._awaiting_input.discard(block)
        return [self._chunk({"tool_calls": [{"index": self._tool_index[block], "function": {"arguments": "{}"}}]})]

    def _on_messageStop(self, event: dict) -> list[dict]:
        if self.stopped:
            return []
        self.stopped = True
        chunks = [chunk for block in sorted(self._awaiting_input) for chunk in self._empty_input(block)]
        self._open_tools.clear()
        return chunks + [self._chunk({}, finish_reason(event.get("stopReason")))]

    def _on_metadata(self, event: dict) -> list[dict]:
        if self.complete:
            return []
        self.complete = True
        self.latency_ms = latency(event.get("metrics"))
        if self.stats is not None:
            self.stats.latency_ms = self.latency_ms
        return [self._usage_chunk(openai_usage(as_dict(event.get("usage"))))]


def completion_from_converse(response: dict, model: str, request_id: str | None = None,
                             created: int | None = None) -> dict:
    """A Converse response -> an OpenAI chat.completion (its latency figure is `latency(response["metrics"])`)."""
    blocks = [b for b in as_dict(as_dict(as_dict(response.get("output")).get("message"))).get("content") or []
              if isinstance(b, dict)]
    text = "".join(b["text"] for b in blocks if isinstance(b.get("text"), str))
    reasoning = "".join(str(as_dict(as_dict(b.get("reasoningContent")).get("reasoningText")).get("text") or "")
                        for b in blocks)
    tool_calls = [_tool_call(as_dict(b.get("toolUse"))) for b in blocks if isinstance(b.get("toolUse"), dict)]
    return chat_completion(f"chatcmpl-{request_id}" if request_id else "chatcmpl-bedrock", model, text, reasoning,
                           tool_calls, finish_reason(response.get("stopReason")),
                           openai_usage(as_dict(response.get("usage"))), created)


def _tool_call(tool: dict) -> dict:
    return {"id": tool.get("toolUseId"), "type": "function",
            "function": {"name": tool.get("name"), "arguments": arguments_json(tool.get("input"))}}


def event(message: EventStreamMessage, provider: str, secrets: Secrets = ()) -> tuple[str, dict]:
    """(event type, payload) of one message; an exception or error message raises UpstreamError, its text
    scrubbed of `secrets` before it is parsed and as it is cut."""
    headers = message.headers
    kind = headers.get(":message-type")
    if kind == "exception":
        payload = json_object(scrub_bytes(message.payload, secrets))
        raise stream_exception(provider, str(headers.get(":exception-type") or ""),
                               str(payload.get("message") or ""), secrets)
    if kind == "error":
        raise stream_exception(provider, str(headers.get(":error-code") or ""),
                               str(headers.get(":error-message") or ""), secrets)
    try:
        decoded = json.loads(message.payload) if message.payload else {}
    except (ValueError, RecursionError):
        decoded = None
    if not isinstance(decoded, dict):
        raise UpstreamError(502, f"Upstream provider '{provider}' sent an event that is not a JSON object.",
                            kind="stream_error")
    return str(headers.get(":event-type") or ""), decoded


def json_object(raw: bytes) -> dict:
    try:
        parsed = json.loads(raw) if raw else {}
    except (ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}
