"""Anthropic's answers -> OpenAI's: stream events to chunks (`StreamTranslator`), a Message to a
chat.completion (`completion_from_message`). Pure: no I/O.

Usage counts cached input apart from the rest (OpenAI's prompt_tokens includes it). Thinking comes back as
`reasoning_content`; signatures and redacted_thinking blocks are dropped.
"""

from __future__ import annotations

import json

from switchboard.providers._translate import (
    CLAUDE_STOP_REASONS,
    Envelope,
    arguments_json,
    as_dict,
    chat_completion,
    counted_usage,
)
from switchboard.providers._translate import finish_reason as stop_finish_reason
from switchboard.providers.errors import in_stream_error
from switchboard.providers.upstream import SseEvent
from switchboard.wire.chat import Batch, UpstreamError
from switchboard.wire.json import dumps

_FINISH_REASONS = {**CLAUDE_STOP_REASONS, "refusal": "content_filter"}
# Anthropic's error types inside a stream, as the HTTP statuses it uses for them outside one.
_ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
                 "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
                 "overloaded_error": 529}


def finish_reason(stop_reason: object) -> str:
    return stop_finish_reason(stop_reason, _FINISH_REASONS)


def openai_usage(usage: dict) -> dict:
    """Anthropic counts cached input apart from `input_tokens`; OpenAI's prompt_tokens includes it."""
    return counted_usage(usage, "input_tokens", "output_tokens", "cache_read_input_tokens",
                         "cache_creation_input_tokens")


class StreamTranslator(Envelope):
    """Anthropic stream events -> OpenAI chunks, one event at a time, no I/O.

    `feed` returns the chunks a parsed event produces (often none); `done` turns true at message_stop.
    `chunks` takes the event as the stream delivered it (the loop in `providers.base` drives it): it parses
    it, and raises the UpstreamError an error event stands for, its text scrubbed of `secrets`.
    """

    def __init__(self, fallback_model: str, created: int | None = None, *, provider: str = "anthropic",
                 secrets: tuple[str, ...] = ()) -> None:
        super().__init__("chatcmpl-anthropic", fallback_model, created)
        self.provider = provider
        self.secrets = secrets
        self.usage: dict = {}
        self.done = False
        self._tool_index: dict[int, int] = {}  # Anthropic content block index -> OpenAI tool_calls index
        self._tool_input: dict[int, object] = {}  # block index -> input given at block start, until a fragment

    @property
    def whole(self) -> bool:
        return self.done

    over = whole  # message_stop is the last event

    def chunks(self, event: SseEvent) -> Batch:
        name, data = event
        parsed = _parse_event(data, self.provider)
        if name == b"error" or parsed.get("type") == "error":
            error_type = as_dict(parsed.get("error")).get("type")
            status = _ERROR_STATUS.get(error_type) if isinstance(error_type, str) else None
            raise in_stream_error(self.provider, data, self.secrets, status)
        return [(dumps(chunk), chunk) for chunk in self.feed(parsed)]

    def feed(self, event: dict) -> list[dict]:
        handler = getattr(self, "_on_" + str(event.get("type")), None)
        return handler(event) if handler is not None else []  # ping, unknown types

    def _on_message_start(self, event: dict) -> list[dict]:
        message = as_dict(event.get("message"))
        if isinstance(message.get("id"), str):
            self.id = f"chatcmpl-{message['id']}"
        if isinstance(message.get("model"), str):
            self.model = message["model"]
        self._merge_usage(message.get("usage"))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_content_block_start(self, event: dict) -> list[dict]:
        block = as_dict(event.get("content_block"))
        if block.get("type") != "tool_use" or not isinstance(event.get("index"), int):
            return []  # text and thinking arrive in deltas
        index = self._tool_index[event["index"]] = len(self._tool_index)
        self._tool_input[event["index"]] = block.get("input")
        return [self._tool_call_start(index, block.get("id"), block.get("name"))]

    def _on_content_block_stop(self, event: dict) -> list[dict]:
        """A tool call that got no argument fragments still gets arguments: its start input, or "{}"."""
        index = event.get("index")
        if not isinstance(index, int) or index not in self._tool_input:
            return []
        arguments = arguments_json(self._tool_input.pop(index))
        call = {"index": self._tool_index[index], "function": {"arguments": arguments}}
        return [self._chunk({"tool_calls": [call]})]

    def _on_content_block_delta(self, event: dict) -> list[dict]:
        delta = as_dict(event.get("delta"))
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
            return [self._chunk({"content": delta["text"]})]
        index = event.get("index")
        fragment = delta.get("partial_json")
        if (kind == "input_json_delta" and isinstance(fragment, str) and fragment and isinstance(index, int)
                and index in self._tool_index):
            self._tool_input.pop(index, None)  # arguments are streaming: nothing to fill in at the block's end
            call = {"index": self._tool_index[index], "function": {"arguments": fragment}}
            return [self._chunk({"tool_calls": [call]})]
        if kind == "thinking_delta" and isinstance(delta.get("thinking"), str) and delta["thinking"]:
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        return []  # signature, citations

    def _on_message_delta(self, event: dict) -> list[dict]:
        self._merge_usage(event.get("usage"))
        stop_reason = as_dict(event.get("delta")).get("stop_reason")
        if stop_reason is None:
            return []
        return [self._chunk({}, finish_reason(stop_reason))]

    def _on_message_stop(self, event: dict) -> list[dict]:
        self.done = True
        return [self._usage_chunk(openai_usage(self.usage))]

    def _merge_usage(self, usage: object) -> None:
        # message_delta's counts are cumulative, so a later non-null value replaces an earlier one.
        self.usage.update({k: v for k, v in as_dict(usage).items() if isinstance(v, int)})


def completion_from_message(message: dict, created: int | None = None) -> dict:
    """A non-streamed Anthropic Message -> an OpenAI chat.completion; thinking -> `reasoning_content`."""
    content = message.get("content")
    blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    text = "".join(str(b.get("text") or "") for b in blocks if b.get("type") == "text")
    thinking = "".join(str(b.get("thinking") or "") for b in blocks if b.get("type") == "thinking")
    tool_calls = [{"id": b.get("id"), "type": "function",
                   "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input") or {})}}
                  for b in blocks if b.get("type") == "tool_use"]
    return chat_completion(f"chatcmpl-{message.get('id')}", message.get("model"), text, thinking, tool_calls,
                           finish_reason(message.get("stop_reason")), openai_usage(as_dict(message.get("usage"))),
                           created)


def _parse_event(data: bytes, provider: str) -> dict:
    try:
        event = json.loads(data)
    except (ValueError, RecursionError):
        event = None
    if not isinstance(event, dict):
        raise UpstreamError(502, f"Upstream provider '{provider}' sent an event that is not a JSON object.",
                            kind="stream_error")
    return event
