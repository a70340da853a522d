"""Every OpenAI-compatible host: a pass-through that forwards chunks byte for byte.

Provider quirks live here, keyed by provider name, not in the relay: Groq's usage under `x_groq`, error
events inside a 200 stream, and chunks whose shape is not the one OpenAI documents (refused as upstream
errors before anything downstream can trip over them). No config of its own: a host differs from another
only in base URL and key, which the registry and the route carry.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping

from switchboard.providers.base import Adapter, OpenedStream, UpstreamStats, stream_batches
from switchboard.providers.errors import in_stream_error
from switchboard.providers.transport.client import UpstreamClient
from switchboard.providers.upstream import SseEvent, UpstreamRequest, read_events, read_json, send
from switchboard.wire.chat import Batch, Route, UpstreamError
from switchboard.wire.json import dumps

MAX_COMPLETION_BYTES = 16 * 1024 * 1024


class OpenAICompatAdapter:
    def stream(self, client: UpstreamClient, route: Route, body: dict,
               stats: UpstreamStats | None = None) -> AsyncGenerator[Batch, None]:
        async def open_stream() -> OpenedStream[SseEvent]:
            request = _request(route, body, stream=True)
            response = await send(client, request, route.provider)
            return OpenedStream(response, read_events(response, route.provider),
                                PassThrough(route.provider, request.secrets))

        return stream_batches(open_stream, route.provider, "finishing")

    async def complete(self, client: UpstreamClient, route: Route, body: dict,
                       stats: UpstreamStats | None = None) -> dict:
        response = await send(client, _request(route, body, stream=False), route.provider)
        parsed = await read_json(response, route.provider, MAX_COMPLETION_BYTES)
        problem = completion_problem(parsed) if isinstance(parsed, dict) else "not a JSON object"
        if problem or not isinstance(parsed, dict):
            raise UpstreamError(502, f"Upstream provider '{route.provider}' answered with something that is not "
                                f"a chat completion ({problem}).", kind="http_error")
        return parsed

    def usable(self, route: Route | None = None) -> str | None:
        # A key, where the host wants one, is all it needs, and the router checks that.
        return None

    def warm(self) -> None:
        pass  # nothing to load: the first call pays for nothing the warm-up could have


ADAPTER: Adapter = OpenAICompatAdapter()


def read_config(env: Mapping[str, str]) -> None:
    """The family has no config of its own (the registry's contract for every family)."""
    return None


def create(config: None = None) -> Adapter:
    return ADAPTER


def _request(route: Route, body: dict, stream: bool) -> UpstreamRequest:
    payload = dict(body)
    payload["model"] = route.model
    payload["stream"] = stream
    if route.provider == "openai" and "max_tokens" in payload and "max_completion_tokens" not in payload:
        # OpenAI's reasoning models refuse max_tokens; max_completion_tokens means the same on every model.
        payload["max_completion_tokens"] = payload.pop("max_tokens")
    if stream:
        # Always ask for usage: the ledger needs token counts whether or not the client wants them.
        options = dict(payload.get("stream_options") or {})
        options["include_usage"] = True
        payload["stream_options"] = options
    else:
        payload.pop("stream_options", None)
    headers = {"content-type": "application/json", "accept-encoding": "identity"}
    if route.api_key:
        headers["authorization"] = f"Bearer {route.api_key}"
    if stream:
        headers["accept"] = "text/event-stream"
    return UpstreamRequest(f"{route.base_url}/chat/completions", headers, dumps(payload), (route.api_key or "",))


class PassThrough:
    """An OpenAI-compatible stream's events, checked and passed on byte for byte (rewritten only where a host
    strays from the shape OpenAI's clients parse). The answer is whole at a finish_reason or at [DONE]."""

    __slots__ = ("provider", "secrets", "finished", "over")

    def __init__(self, provider: str, secrets: tuple[str, ...]) -> None:
        self.provider = provider
        self.secrets = secrets
        self.finished = False  # a finish_reason was seen
        self.over = False  # [DONE] was seen

    @property
    def whole(self) -> bool:
        return self.finished or self.over

    def chunks(self, event: SseEvent) -> Batch:
        data = event[1]
        if data == b"[DONE]":
            self.over = True
            return []
        data, parsed = _parse(data, self.provider, self.secrets)
        if parsed is None:
            return []
        if not self.finished:
            choices = parsed.get("choices")
            self.finished = bool(choices and choices[0].get("finish_reason"))
        return [(data, parsed)]


def _parse(data: bytes, provider: str, secrets: tuple[str, ...]) -> tuple[bytes, dict | None]:
    """(the chunk's bytes for the client, its parsed form), or (data, None) for a chunk to skip."""
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        raise UpstreamError(502, f"Upstream provider '{provider}' sent a chunk that is not JSON.",
                            kind="stream_error") from None
    if not isinstance(parsed, dict):
        return data, None
    if parsed.get("error"):  # OpenRouter sends it beside choices and usage: still the end of the answer
        raise in_stream_error(provider, data, secrets)
    if _flatten_content_parts(parsed):
        data = dumps(parsed)  # rewritten to the shape OpenAI's clients parse
    problem = chunk_problem(parsed)
    if problem:
        raise UpstreamError(502, f"Upstream provider '{provider}' sent a malformed chunk ({problem}).",
                            kind="stream_error")
    if "usage" not in parsed or parsed["usage"] is None:
        groq = parsed.get("x_groq")
        if isinstance(groq, dict) and isinstance(groq.get("usage"), dict):
            parsed["usage"] = groq["usage"]  # Groq reports usage there; the bytes relayed stay as sent
    return data, parsed


def _flatten_content_parts(chunk: dict) -> bool:
    """Mistral's thinking models stream `content` as a list of text and thinking parts; OpenAI's clients
    want a string. Text parts become `content`, thinking parts `reasoning_content`. True if it rewrote any."""
    choices = chunk.get("choices")
    changed = False
    for choice in choices if isinstance(choices, list) else ():
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if isinstance(delta, dict) and isinstance(delta.get("content"), list):
            text, thinking = _split_parts(delta["content"])
            delta["content"] = text
            if thinking:
                delta["reasoning_content"] = thinking
            changed = True
    return changed


def _split_parts(parts: list) -> tuple[str, str]:
    text, thinking = [], []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            text.append(part["text"])
        elif part.get("type") == "thinking":
            inner = part.get("thinking")
            inner = inner if isinstance(inner, list) else [{"text": inner}]
            thinking += [str(p.get("text") or "") for p in inner if isinstance(p, dict)]
    return "".join(text), "".join(thinking)


def chunk_problem(chunk: dict) -> str | None:
    """What is wrong with a chat.completion.chunk's shape, or None. Cheap: a few type checks per chunk."""
    return _shape_problem(chunk, "delta")


def completion_problem(completion: dict) -> str | None:
    """What is wrong with a chat.completion's shape, or None: the checks `chunk_problem` makes of a chunk."""
    return _shape_problem(completion, "message")


def _shape_problem(answer: dict, part: str) -> str | None:
    """`part` is "delta" for a chunk (whose choices, and a choice's delta, may be absent) or "message" for a
    completion (which must have both)."""
    usage = answer.get("usage")
    if usage is not None and not isinstance(usage, dict):
        return "usage is not an object"
    choices = answer.get("choices")
    if choices is None and part == "delta":
        return None
    if not isinstance(choices, list):
        return "choices is not an array"
    for choice in choices:
        if not isinstance(choice, dict):
            return "a choice is not an object"
        finish = choice.get("finish_reason")
        if finish is not None and not isinstance(finish, str):
            return "finish_reason is not a string"
        content = choice.get(part)
        if content is None and part == "delta":
            continue
        if not isinstance(content, dict):
            return "delta is not an object" if part == "delta" else "a choice has no message object"
        problem = _delta_problem(content)
        if problem:
            return problem
    return None


def _delta_problem(delta: dict) -> str | None:
    for name in ("content", "reasoning", "reasoning_content", "refusal"):
        value = delta.get(name)
        if value is not None and not isinstance(value, str):
            return f"delta.{name} is not a string"
    tool_calls = delta.get("tool_calls")
    if tool_calls is None:
        return None
    if not isinstance(tool_calls, list):
        return "delta.tool_calls is not an array"
    for call in tool_calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or (function is not None and not isinstance(function, dict)):
            return "a tool call is not an object"
        if function and any(function.get(k) is not None and not isinstance(function[k], str)
                            for k in ("name", "arguments")):
            return "a tool call's name or arguments is not a string"
    return None
