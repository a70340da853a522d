"""OpenAI Chat Completions, the internal shape: the client's request parsed once, validated and cleaned for
the upstream, and the upstream's chunks framed back (`ChatFramer`).

ElevenLabs sends OpenAI Chat Completions plus its own fields: `elevenlabs_extra_body` (kept as
metadata, never forwarded) and `user_id` (forwarded as OpenAI `user`). Unknown fields are
tolerated and forwarded: OpenAI-compatible hosts grow new ones faster than any gateway.
Every other format's request becomes this one's body before `chat_request` sees it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from switchboard.formats.base import BUFFER_WORDS, FrameContext, Observer
from switchboard.wire.chat import Batch
from switchboard.wire.errors import GatewayError, error_body
from switchboard.wire.json import dumps
from switchboard.wire.sse import SSE_DONE, sse_data

VALID_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
METADATA_PREFIX = "x-inference-metadata-"
MAX_HEADER_VALUE = 256
MAX_METADATA_ENTRIES = 32
MAX_DEPTH = 64  # JSON nesting: deeper bodies are refused before anything recurses into them


@dataclass
class ChatRequest:
    body: dict  # what the upstream adapter receives
    model: str
    stream: bool
    include_usage: bool  # the client asked for the usage chunk
    task_id: str = "default"
    environment: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    extra_body: dict | None = None  # elevenlabs_extra_body, for the ledger

    @property
    def conversation_id(self) -> str | None:
        return self.metadata.get("conversation-id") or self.metadata.get("conversation_id")

    @cached_property
    def prompt_version(self) -> str | None:
        """The prompt's version (see `prompt_version`), hashed on first read so a caller can read it after the
        first token has gone out: a long system prompt takes tens of microseconds to hash."""
        return prompt_version(self.body.get("messages"), self.body.get("tools"))


INSTRUCTION_ROLES = frozenset({"system", "developer"})
PROMPT_VERSION_CHARS = 12


def prompt_version(messages: Iterable[object] | None, tools: Iterable[object] | None) -> str | None:
    """A short, stable hash of the instructions (system and developer messages) and the tool definitions:
    the first 12 hex characters of the SHA-256 of their canonical JSON. None when there are neither.

    It tracks what the model is told, not how the client spelled it: system and developer are one kind,
    text parts count as their text (so Anthropic-style `cache_control` on a part changes nothing), and
    Responses `instructions` arrive here already as a system message, so both APIs agree on a version.
    """
    instructions = [_instruction_text(m.get("content")) for m in messages or ()
                    if isinstance(m, dict) and m.get("role") in INSTRUCTION_ROLES]
    definitions = [t.get("function") for t in tools or () if isinstance(t, dict)]
    if not instructions and not definitions:
        return None
    canonical = json.dumps({"instructions": instructions, "tools": definitions}, sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:PROMPT_VERSION_CHARS]


def _instruction_text(content: object) -> object:
    """A string for text, whether sent as one string or as text parts; any other part as it was sent."""
    if not isinstance(content, list):
        return content
    parts = [part.get("text") if part.get("type") == "text" else part for part in content if isinstance(part, dict)]
    texts = [part for part in parts if isinstance(part, str)]
    return "".join(texts) if len(texts) == len(parts) else parts


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> dict:
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)  # UTF-8 only, as JSON APIs require
    except UnicodeDecodeError:
        raise GatewayError(400, "The request body is not valid UTF-8.", code="invalid_json") from None
    except json.JSONDecodeError as exc:
        raise GatewayError(400, f"The request body is not valid JSON ({exc.msg} at position {exc.pos}).",
                           code="invalid_json") from None
    except ValueError as exc:
        raise GatewayError(400, f"The request body is not valid JSON ({exc}).", code="invalid_json") from None
    except RecursionError:
        raise GatewayError(400, "The request body is nested too deeply.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise GatewayError(400, "The request body must be a JSON object.", code="invalid_json")
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _too_deep(body):  # counting is cheap; walking is not
        raise GatewayError(400, f"The request body is nested deeper than {MAX_DEPTH} levels.", code="invalid_json")
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(body):
        raise GatewayError(400, "The request body contains a lone UTF-16 surrogate escape, which is not text.",
                           code="invalid_json")
    return body


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(body: dict) -> bool:
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _too_deep(value: object) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def chat_body_from_chat_completions(body: dict) -> tuple[dict, None]:
    """The format's parse step: a Chat Completions body is the internal shape already, and nothing is echoed."""
    return body, None

def chat_request(body: dict, headers: dict[str, str], metadata: dict[str, str] | None = None) -> ChatRequest:
    """Validate an OpenAI chat request and take the ledger's fields out of it. `headers` lower-case;
    `metadata`, when the caller already read it from them."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise GatewayError(400, "'model' is required and must be a non-empty string.", param="model",
                           code="invalid_model")
    _check_messages(body.get("messages"))
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise GatewayError(400, "'stream' must be true or false.", param="stream", code="invalid_type")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise GatewayError(400, "'stream_options' must be an object.", param="stream_options", code="invalid_type")
    tools = body.get("tools")
    if tools is not None:
        _check_tools(tools)
    _check_parameters(body)

    cleaned = dict(body)
    extra_body = cleaned.pop("elevenlabs_extra_body", None)
    if extra_body is not None and not isinstance(extra_body, dict):
        extra_body = {"value": extra_body}
    user_id = cleaned.pop("user_id", None)
    if user_id is not None and "user" not in cleaned:
        cleaned["user"] = str(user_id)

    return ChatRequest(
        body=cleaned,
        model=model.strip(),
        stream=stream,
        include_usage=bool(stream and options and options.get("include_usage")),
        task_id=_header(headers, "x-inference-task-id") or "default",
        environment=_header(headers, "x-inference-environment"),
        metadata=metadata if metadata is not None else metadata_from_headers(headers),
        extra_body=extra_body,
    )


def metadata_from_headers(headers: dict[str, str]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for name, value in headers.items():
        if name.startswith(METADATA_PREFIX) and len(name) > len(METADATA_PREFIX):
            if len(metadata) >= MAX_METADATA_ENTRIES:
                break
            metadata[name[len(METADATA_PREFIX):][:64]] = value[:MAX_HEADER_VALUE]
    return metadata


def _header(headers: dict[str, str], name: str) -> str | None:
    value = (headers.get(name) or "").strip()
    return value[:MAX_HEADER_VALUE] or None


def _check_messages(messages: object) -> None:
    if messages is None:
        raise GatewayError(400, "'messages' is required.", param="messages", code="missing_messages")
    if not isinstance(messages, list) or not messages:
        raise GatewayError(400, "'messages' must be a non-empty array.", param="messages", code="invalid_type")
    if len(messages) > MAX_MESSAGES:
        raise GatewayError(400, f"'messages' has more than {MAX_MESSAGES} entries.", param="messages",
                           code="too_many_messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise GatewayError(400, f"messages[{index}] must be an object.", param=f"messages[{index}]",
                               code="invalid_type")
        role = message.get("role")
        if not isinstance(role, str) or role not in VALID_ROLES:
            raise GatewayError(400, f"messages[{index}].role must be one of {', '.join(sorted(VALID_ROLES))}.",
                               param=f"messages[{index}].role", code="invalid_role")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise GatewayError(400, f"messages[{index}].content must be a string or an array of parts.",
                               param=f"messages[{index}].content", code="invalid_type")
        if isinstance(content, list) and not all(isinstance(part, dict) and isinstance(part.get("type"), str)
                                                 for part in content):
            raise GatewayError(400, f"messages[{index}].content parts must be objects with a 'type'.",
                               param=f"messages[{index}].content", code="invalid_type")
        _check_tool_calls(message.get("tool_calls"), index)
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise GatewayError(400, f"messages[{index}] has role 'tool' but no 'tool_call_id' string.",
                               param=f"messages[{index}].tool_call_id", code="invalid_tool_message")


MAX_MESSAGES = 10_000
MAX_TOOLS = 512
# name -> (types, lowest, highest): the sampling parameters every provider shares, checked here so a typo
# is a clear 400 from the gateway rather than whatever each upstream makes of it.
NUMERIC_PARAMETERS = {
    "max_tokens": (int, 1, 10_000_000), "max_completion_tokens": (int, 1, 10_000_000),
    "temperature": (int | float, 0, 2), "top_p": (int | float, 0, 1), "n": (int, 1, 16),
    "presence_penalty": (int | float, -2, 2), "frequency_penalty": (int | float, -2, 2),
}


def _check_parameters(body: dict) -> None:
    for name, (kinds, lowest, highest) in NUMERIC_PARAMETERS.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kinds) or not lowest <= value <= highest:
            raise GatewayError(400, f"'{name}' must be a number from {lowest} to {highest}.", param=name,
                               code="invalid_parameter")
    choice = body.get("tool_choice")
    if choice is not None and not (choice in ("auto", "none", "required") or (
            isinstance(choice, dict) and isinstance((choice.get("function") or {}).get("name"), str))):
        raise GatewayError(400, "'tool_choice' must be 'auto', 'none', 'required' or "
                           "{'type': 'function', 'function': {'name': ...}}.", param="tool_choice",
                           code="invalid_parameter")
    stop = body.get("stop")
    if stop is not None and not (isinstance(stop, str) or (
            isinstance(stop, list) and len(stop) <= 16 and all(isinstance(item, str) for item in stop))):
        raise GatewayError(400, "'stop' must be a string or a list of up to 16 strings.", param="stop",
                           code="invalid_parameter")


def _check_tool_calls(tool_calls: object, index: int) -> None:
    if tool_calls is None:
        return
    where = f"messages[{index}].tool_calls"
    if not isinstance(tool_calls, list):
        raise GatewayError(400, f"{where} must be an array.", param=where, code="invalid_type")
    for call in tool_calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or (
                function.get("arguments") is not None and not isinstance(function["arguments"], str)):
            raise GatewayError(400, f"{where} entries must be {{'id', 'type': 'function', 'function': {{'name', "
                               "'arguments' (a JSON string)}}}}.", param=where, code="invalid_tool_call")


def _check_tools(tools: object) -> None:
    if not isinstance(tools, list):
        raise GatewayError(400, "'tools' must be an array.", param="tools", code="invalid_type")
    if len(tools) > MAX_TOOLS:
        raise GatewayError(400, f"'tools' has more than {MAX_TOOLS} entries.", param="tools", code="too_many_tools")
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise GatewayError(400, f"tools[{index}] must be {{'type': 'function', 'function': {{'name': ...}}}}.",
                               param=f"tools[{index}]", code="invalid_tool")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise GatewayError(400, f"tools[{index}].function.parameters must be a JSON schema object.",
                               param=f"tools[{index}].function.parameters", code="invalid_tool")


class ChatFramer:
    """Chat Completions: the upstream's own chunk bytes, passed through; `data: [DONE]` at the end."""

    __slots__ = ("context", "include_usage")

    def __init__(self, context: FrameContext, include_usage: bool) -> None:
        self.context = context
        # the client asked for the usage chunk
        self.include_usage = include_usage

    @classmethod
    def for_call(cls, context: FrameContext, echo: dict | None, include_usage: bool) -> ChatFramer:
        """The format's framer factory (Chat Completions echoes nothing)."""
        return cls(context, include_usage)

    def opening(self) -> bytes:
        return b""

    def frames(self, batch: Batch, observer: Observer) -> bytes:
        frames = [b"data: " + payload + b"\n\n" for payload, parsed in batch
                  if not observer.observe(parsed) or self.include_usage]
        return frames[0] if len(frames) == 1 else b"".join(frames)

    def buffer_words(self) -> bytes:
        """An ellipsis and a space, as ElevenLabs asks, so speech keeps flowing."""
        context = self.context
        return sse_data(dumps({"id": "chatcmpl-" + context.request_id, "object": "chat.completion.chunk",
                               "created": int(context.started_at), "model": context.requested_model or "",
                               "choices": [{"index": 0, "delta": {"role": "assistant", "content": BUFFER_WORDS},
                                            "logprobs": None, "finish_reason": None}]}))

    def failed(self, message: str, code: str | None) -> bytes:
        """An error event, then the stream's end: a client waiting for [DONE] is not left waiting."""
        return sse_data(dumps(error_body(message, "upstream_error", code=code))) + SSE_DONE

    def done(self) -> bytes:
        return SSE_DONE

    def completion(self, completion: dict) -> dict:
        return completion
