"""What the translating families (Anthropic, Bedrock) share: an OpenAI request read the same way for both,
Claude's reasoning rules, and OpenAI's response shapes built the same way.

A family never imports another (import-linter holds them independent), so what both need lives here, once,
and a rule changed here changes on both. Pure: no I/O and no state, so each piece is tested without a socket.

  reading the request    conversation, text_of, user_parts, tool_calls_of, function_tools, image_url_of,
                         base64_data_url, stop_sequences, client_max_tokens, capped_temperature
  reasoning              REASONING_EFFORTS and Claude's tables, requested_effort, claude_version,
                         claude_thinking, thinking_allowed, drop_sampling_thinking_refuses
  building the response  finish_reason, counted_usage, arguments_json, Envelope (chunks), chat_completion
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping

from switchboard.wire.chat import chat_usage, token_count
from switchboard.wire.errors import GatewayError

EMPTY_SCHEMA = {"type": "object", "properties": {}}  # a tool's parameters when it declares none


def as_dict(value: object) -> dict:
    """A field that should be an object; anything else reads as empty."""
    return value if isinstance(value, dict) else {}


# --- reading an OpenAI request ----------------------------------------------------------------------------


def conversation(messages: list) -> Iterator[tuple[str, dict]]:
    """(role, message) for every message a translation reads: "system" (system and developer turns alike),
    "user", "assistant" or "tool"; anything else is skipped."""
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role in ("system", "developer"):
            yield "system", message
        elif role in ("user", "assistant", "tool"):
            yield role, message


def text_of(content: object) -> str:
    """A message's text, whether a string or a list of text parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def user_parts(content: list, family: str) -> Iterator[tuple[str, object]]:
    """A user message's parts in order, as ("text", its text) and ("image_url", its image_url); any other
    part is the caller's 400, naming the `family` that cannot take it."""
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            yield "text", str(part.get("text") or "")
        elif kind == "image_url":
            yield "image_url", part.get("image_url")
        else:
            raise GatewayError(400, f"{family} models do not accept '{kind}' content parts.", param="messages",
                               code="unsupported_content")


def image_url_of(image_url: object) -> object:
    """An image_url part's URL: OpenAI sends {"url": ...}; a bare string is taken too."""
    return image_url.get("url") if isinstance(image_url, dict) else image_url


def base64_data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a 'data:<media type>;base64,<data>' URL, or None for any other shape."""
    if not url.startswith("data:"):
        return None
    header, comma, data = url[len("data:"):].partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or encoding != "base64" or not media_type:
        return None
    return media_type, data


def tool_calls_of(message: dict) -> Iterator[tuple[str, str, dict]]:
    """An assistant message's tool calls as (id, name, input), the arguments decoded to the object that
    providers with native tool input want."""
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            yield str(call.get("id") or ""), str(function.get("name") or ""), tool_arguments(function.get("arguments"))


def tool_arguments(arguments: object) -> dict:
    """An OpenAI tool call's `arguments` (a JSON string) as an object; anything that is not one reads as {}."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else None
    except (ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def function_tools(tools: object) -> Iterator[dict]:
    """The `function` of every named OpenAI function tool; other tool types have no equivalent upstream."""
    for tool in tools if isinstance(tools, list) else []:
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if isinstance(function, dict) and function.get("name"):
            yield function


def stop_sequences(stop: object) -> list[str]:
    """OpenAI's `stop` (a string or a list) as a list of non-empty strings."""
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list):
        return []
    return [s for s in stop if isinstance(s, str) and s]


def client_max_tokens(body: dict) -> int | None:
    """The client's own limit (max_completion_tokens first), or None when it set none."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def capped_temperature(body: dict) -> float | None:
    """The client's temperature within Claude's (and Bedrock's models') 0..1; OpenAI's range is 0..2."""
    temperature = body.get("temperature")
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        return None
    return min(float(temperature), 1.0)


# --- reasoning: OpenAI's reasoning_effort -> Claude's extended thinking ---------------------------------------


REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")  # OpenAI's values
NO_THINKING = frozenset({"none", "minimal"})
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768, "max": 32768}
ADAPTIVE_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "max", "max": "max"}
ADAPTIVE_SINCE = (4, 6)  # Claude 4.6 thinks adaptively; 4.7 and later refuse budget_tokens
MIN_THINKING_BUDGET = 1024  # Anthropic's minimum budget_tokens
MIN_TOP_P_THINKING = 0.95  # with thinking on, Claude refuses a lower top_p (and any temperature but 1)
# claude-opus-4-7, claude-sonnet-4-5-20250929, claude-sonnet-5 (family first); claude-3-7-sonnet (version first).
_CLAUDE_VERSION = re.compile(r"claude-(?:(?:opus|sonnet|haiku)-(\d+)(?:-(\d{1,2})(?!\d))?|(\d+)(?:-(\d)(?!\d))?-)")


def requested_effort(body: dict) -> str | None:
    """The client's reasoning_effort (None when absent); a value OpenAI does not define is a 400."""
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in REASONING_EFFORTS:
        raise GatewayError(400, f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}.",
                           param="reasoning_effort", code="invalid_reasoning_effort")
    return effort


def claude_version(model: str) -> tuple[int, int] | None:
    """(major, minor) from a Claude model name (any dated or Bedrock prefix and suffix around it), or None."""
    match = _CLAUDE_VERSION.search(model)
    if match is None:
        return None
    major, minor, old_major, old_minor = match.groups()
    if major is not None:
        return int(major), int(minor or 0)
    return int(old_major), int(old_minor or 0)


def thinks_adaptively(model: str) -> bool:
    version = claude_version(model)
    return version is not None and version >= ADAPTIVE_SINCE


def claude_thinking(model: str, effort: str, client_max: int | None, default_max_tokens: int
                    ) -> tuple[dict, int] | None:
    """Claude's thinking fields for an `effort` that thinks, and the max tokens to send with them; None when
    thinking stays off (an older model whose budget, capped at half the client's max, falls under 1024).
    OpenAI's max_tokens bounds reasoning and answer together, as Claude's does: the client's is kept; with
    none, the answer gets `default_max_tokens` on top of the effort's budget."""
    budget = THINKING_BUDGETS[effort]
    max_tokens = client_max if client_max is not None else default_max_tokens + budget
    if thinks_adaptively(model):
        return {"thinking": {"type": "adaptive"}, "output_config": {"effort": ADAPTIVE_EFFORTS[effort]}}, max_tokens
    if client_max is not None:
        budget = min(budget, client_max // 2)
        if budget < MIN_THINKING_BUDGET:
            return None
    return {"thinking": {"type": "enabled", "budget_tokens": budget}}, max_tokens


def thinking_allowed(messages: list[dict], *, forced_tool: bool, calls_tool: Callable[[dict], bool],
                     answers_tool: Callable[[dict], bool]) -> bool:
    """False where Claude refuses thinking, or would want thinking blocks the gateway never kept. `messages`
    are the family's own turns; `calls_tool` and `answers_tool` recognise its tool-use and tool-result blocks."""
    if forced_tool:
        return False  # Claude refuses thinking with a forced tool, and the tool is what was asked for
    last_assistant = next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "assistant"), None)
    if last_assistant is None:
        return True
    if last_assistant == len(messages) - 1:
        return False  # a prefill: the answer continues an assistant message that has no thinking block
    calls_tools = any(calls_tool(block) for block in _blocks(messages[last_assistant]))
    answered = any(answers_tool(block) for message in messages[last_assistant + 1:] for block in _blocks(message))
    return not (calls_tools and answered)  # a tool-use turn in progress: its signed thinking block is gone


def drop_sampling_thinking_refuses(config: dict, temperature: str, top_p: str) -> None:
    """With thinking on, Claude takes temperature only at exactly 1 and top_p only from 0.95 up; `temperature`
    and `top_p` are the family's names for them in `config`."""
    if config.get(temperature, 1) != 1:
        del config[temperature]
    if config.get(top_p, 1) < MIN_TOP_P_THINKING:
        del config[top_p]


def _blocks(message: dict) -> list[dict]:
    content = message.get("content")
    return [block for block in content if isinstance(block, dict)] if isinstance(content, list) else []


# --- building OpenAI's response ---------------------------------------------------------------------------------


CLAUDE_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def finish_reason(stop_reason: object, reasons: Mapping[str, str]) -> str:
    """OpenAI's finish_reason for an upstream's stop reason; one `reasons` does not know reads as "stop"."""
    return reasons.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def counted_usage(usage: dict, uncached_input: str, output: str, cache_read: str, cache_write: str) -> dict:
    """OpenAI's usage from an upstream that counts cached input apart (its names for the four counts)."""
    return chat_usage(token_count(usage, uncached_input), token_count(usage, output), token_count(usage, cache_read),
                      token_count(usage, cache_write))


def arguments_json(given: object) -> str:
    """A tool call's arguments from the input an upstream gave whole: an object always, "{}" for none."""
    return json.dumps(given) if isinstance(given, dict) and given else "{}"


class Envelope:
    """The chunks of one stream, all under one id, model and created (OpenAI's clients key on them)."""

    def __init__(self, chunk_id: str, model: object, created: int | None = None) -> None:
        self.id = chunk_id
        self.model = model
        self.created = created if created is not None else int(time.time())

    def _chunk(self, delta: dict, finish: str | None = None) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**self._envelope(), "choices": [choice]}

    def _usage_chunk(self, usage: dict) -> dict:
        """The last chunk, as OpenAI sends it with include_usage: no choices, the usage."""
        return {**self._envelope(), "choices": [], "usage": usage}

    def _tool_call_start(self, index: int, call_id: object, name: object) -> dict:
        call = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        return self._chunk({"tool_calls": [call]})

    def _envelope(self) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}


def chat_completion(completion_id: str, model: object, text: str, reasoning: str, tool_calls: list[dict],
                    finish: str, usage: dict, created: int | None = None) -> dict:
    """A non-streamed answer as an OpenAI chat.completion; reasoning goes in `reasoning_content`."""
    reply: dict = {"role": "assistant", "content": text or None, "refusal": None}
    if reasoning:
        reply["reasoning_content"] = reasoning
    if tool_calls:
        reply["tool_calls"] = tool_calls
    return {"id": completion_id, "object": "chat.completion",
            "created": created if created is not None else int(time.time()), "model": model,
            "choices": [{"index": 0, "message": reply, "logprobs": None, "finish_reason": finish}],
            "usage": usage}
