"""Anthropic's native Messages API, translated to and from OpenAI Chat Completions.

The translation is pure (`messages_request`, `StreamTranslator`, `completion_from_message`) so it
can be tested without a socket; `stream` and `complete` only add the HTTP around it. Anthropic
quirks live here: the top-level `system`, tool results as user content, `max_tokens` being
required, temperature capped at 1, and usage that counts cached input apart from the rest.

Reasoning: OpenAI's `reasoning_effort` becomes extended thinking (`thinking_fields`).

  reasoning_effort   Claude 4.6 and later (ADAPTIVE_EFFORTS)     older Claude (THINKING_BUDGETS)
  none, minimal      no `thinking` (off)                          no `thinking` (off)
  low                adaptive, output_config.effort "low"         enabled, budget_tokens 1024
  medium             adaptive, "medium"                           enabled, 4096
  high               adaptive, "high"                             enabled, 16384
  xhigh, max         adaptive, "max"                              enabled, 32768

The version comes from the model name (claude-opus-4-7, claude-sonnet-5, claude-3-7-sonnet-20250219);
a name without one is treated as older. Claude 4.7 and later refuse `enabled`. OpenAI's max_tokens
bounds reasoning and answer together, as Anthropic's does: a client's max_tokens is kept and an older
model's budget capped at half of it (under 1024, the minimum, thinking stays off); with none,
max_tokens is SWITCHBOARD_ANTHROPIC_MAX_TOKENS plus the effort's budget, so the answer keeps its room.
With thinking on, Anthropic's rules hold: temperature only if exactly 1, top_p only from 0.95. Thinking
stays off when a tool is forced (tool_choice "required" or a named function: the forced tool wins), in
a tool-use turn in progress (the last assistant message called tools and their results follow:
Anthropic would want the signed thinking block we never kept), and after a prefill (the conversation
ends with an assistant message). Thinking comes back as `reasoning_content`; signatures and
redacted_thinking blocks are dropped.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator

from switchboard.config.settings import Settings
from switchboard.providers.base import (
    UpstreamRequest,
    as_dict,
    in_stream_error,
    read_body,
    read_events,
    send,
    tool_arguments,
)
from switchboard.providers.transport import UpstreamClient
from switchboard.wire.chat import Chunk, Route, UpstreamError, chat_usage, is_number, token_count
from switchboard.wire.errors import GatewayError
from switchboard.wire.json import dumps

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_TOOL_CHOICES = {"auto": "auto", "none": "none", "required": "any"}
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")  # OpenAI's values
NO_THINKING = frozenset({"none", "minimal"})
THINKING_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768, "max": 32768}
ADAPTIVE_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "max", "max": "max"}
ADAPTIVE_SINCE = (4, 6)  # Claude 4.6 thinks adaptively; 4.7 and later refuse budget_tokens
MIN_THINKING_BUDGET = 1024  # Anthropic's minimum budget_tokens
MIN_TOP_P_THINKING = 0.95  # with thinking on, Anthropic refuses a lower top_p (and any temperature but 1)
# claude-opus-4-7, claude-sonnet-4-5-20250929, claude-sonnet-5 (family first); claude-3-7-sonnet (version first).
_CLAUDE_VERSION = re.compile(r"claude-(?:(?:opus|sonnet|haiku)-(\d+)(?:-(\d{1,2})(?!\d))?|(\d+)(?:-(\d)(?!\d))?-)")
# Anthropic's error types inside a stream, as the HTTP statuses it uses for them outside one.
_ERROR_STATUS = {"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
                 "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
                 "overloaded_error": 529}
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_DEFAULT_INPUT_SCHEMA = {"type": "object", "properties": {}}


# --- request: OpenAI chat.completions -> Anthropic messages ---------------------------------------


def messages_request(body: dict, model: str, settings: Settings, stream: bool) -> dict:
    """The Anthropic Messages payload for an OpenAI request. OpenAI-only fields are dropped."""
    system, messages = translate_messages(body.get("messages") or [])
    payload: dict = {"model": model, "max_tokens": _max_tokens(body, settings), "messages": messages}
    if system:
        payload["system"] = system
    tools = translate_tools(body.get("tools"))
    if tools:
        payload["tools"] = tools
        choice = translate_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice:
            payload["tool_choice"] = choice
    stop = _stop_sequences(body.get("stop"))
    if stop:
        payload["stop_sequences"] = stop
    temperature = body.get("temperature")
    if is_number(temperature):
        payload["temperature"] = min(float(temperature), 1.0)  # Anthropic's range is 0..1, OpenAI's 0..2
    if is_number(body.get("top_p")):
        payload["top_p"] = body["top_p"]
    if isinstance(body.get("user"), str) and body["user"]:
        payload["metadata"] = {"user_id": body["user"]}
    payload.update(thinking_fields(payload, reasoning_effort(body), client_max_tokens(body),
                                   settings.anthropic_default_max_tokens))
    if "thinking" in payload:
        _drop_sampling_thinking_refuses(payload)
    if isinstance(body.get("simulator"), dict):
        payload["simulator"] = body["simulator"]  # pacing for the simulated upstream; real hosts never see it
    payload["stream"] = stream
    return payload


def translate_messages(messages: list) -> tuple[str, list[dict]]:
    """OpenAI messages -> (system text, Anthropic messages). System turns anywhere are hoisted."""
    system_parts: list[str] = []
    out: list[dict] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text_of(message.get("content"))
            if text:
                system_parts.append(text)
        elif role == "user":
            out.append({"role": "user", "content": _user_content(message.get("content"))})
        elif role == "assistant":
            blocks = _assistant_blocks(message)
            if blocks:
                out.append({"role": "assistant", "content": blocks})
        elif role == "tool":
            _append_tool_result(out, message)
    return "\n\n".join(system_parts), out


def _user_content(content: object) -> str | list[dict]:
    if isinstance(content, str) or not isinstance(content, list):
        return content if isinstance(content, str) else ""
    blocks = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": str(part.get("text") or "")})
        elif part.get("type") == "image_url":
            blocks.append(image_block(part.get("image_url")))
        else:
            raise GatewayError(400, f"Anthropic models do not accept '{part.get('type')}' content parts.",
                               param="messages", code="unsupported_content")
    return blocks


def image_block(image_url: object) -> dict:
    """An OpenAI image_url part -> an Anthropic image block (data: URLs inline, http(s) by URL)."""
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str):
        raise GatewayError(400, "An image_url content part has no URL.", param="messages",
                           code="invalid_image")
    if url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not comma or encoding != "base64" or not media_type:
            raise GatewayError(400, "An image data: URL must look like 'data:image/png;base64,...'.",
                               param="messages", code="invalid_image")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise GatewayError(400, "An image URL must be a data: URL or an http(s) URL.", param="messages",
                       code="invalid_image")


def _assistant_blocks(message: dict) -> list[dict]:
    blocks: list[dict] = []
    text = _text_of(message.get("content"))
    if text:  # Anthropic rejects empty text blocks
        blocks.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        blocks.append({"type": "tool_use", "id": str(call.get("id") or ""),
                       "name": str(function.get("name") or ""),
                       "input": tool_arguments(function.get("arguments"))})
    return blocks




def _append_tool_result(out: list[dict], message: dict) -> None:
    """Tool results are user content in Anthropic; consecutive ones share one user message."""
    block = {"type": "tool_result", "tool_use_id": str(message.get("tool_call_id") or ""),
             "content": _text_of(message.get("content"))}
    previous = out[-1] if out else None
    if previous and previous["role"] == "user" and _is_tool_results(previous["content"]):
        previous["content"].append(block)
    else:
        out.append({"role": "user", "content": [block]})


def _is_tool_results(content: object) -> bool:
    if not isinstance(content, list) or not content:
        return False
    return all(block.get("type") == "tool_result" for block in content)


def _text_of(content: object) -> str:
    """A message's text, whether a string or a list of text parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return "".join(texts)


def translate_tools(tools: object) -> list[dict]:
    """OpenAI function tools -> Anthropic tools; other tool types have no Anthropic equivalent."""
    out = []
    for tool in tools if isinstance(tools, list) else []:
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(function, dict) or not function.get("name"):
            continue
        translated = {"name": function["name"]}
        if function.get("description"):
            translated["description"] = function["description"]
        translated["input_schema"] = function.get("parameters") or _DEFAULT_INPUT_SCHEMA
        out.append(translated)
    return out


def translate_tool_choice(tool_choice: object, parallel_tool_calls: object) -> dict | None:
    choice: dict | None = None
    if isinstance(tool_choice, str) and tool_choice in _TOOL_CHOICES:
        choice = {"type": _TOOL_CHOICES[tool_choice]}
    elif isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
        choice = {"type": "tool", "name": tool_choice["function"].get("name")}
    if parallel_tool_calls is False:
        if choice is None:
            choice = {"type": "auto"}
        if choice["type"] != "none":  # "none" takes no other field
            choice["disable_parallel_tool_use"] = True
    return choice


def _stop_sequences(stop: object) -> list[str]:
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list):
        return []
    return [s for s in stop if isinstance(s, str) and s]


def _max_tokens(body: dict, settings: Settings) -> int:
    # Anthropic requires a limit; OpenAI does not
    return client_max_tokens(body) or settings.anthropic_default_max_tokens


def client_max_tokens(body: dict) -> int | None:
    """The client's own limit (max_completion_tokens first), or None when it set none."""
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


# --- reasoning: OpenAI reasoning_effort -> extended thinking ----------------------------------------


def reasoning_effort(body: dict) -> str | None:
    """The effort the client asked for, None for no thinking (absent, none, minimal); an unknown value is a 400."""
    effort = body.get("reasoning_effort")
    if effort is None:
        return None
    if effort not in REASONING_EFFORTS:
        raise GatewayError(400, f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}.",
                           param="reasoning_effort", code="invalid_reasoning_effort")
    return None if effort in NO_THINKING else effort


def claude_version(model: str) -> tuple[int, int] | None:
    """(major, minor) from a Claude model name (any dated or Bedrock suffix after it), or None."""
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


def thinking_fields(payload: dict, effort: str | None, client_max: int | None, default_max_tokens: int) -> dict:
    """The fields that turn thinking on (`thinking`, maybe `output_config`, `max_tokens`), or {} for off."""
    if effort is None or not thinking_allowed(payload):
        return {}
    budget = THINKING_BUDGETS[effort]
    max_tokens = client_max if client_max is not None else default_max_tokens + budget
    if thinks_adaptively(payload["model"]):
        return {"max_tokens": max_tokens, "thinking": {"type": "adaptive"},
                "output_config": {"effort": ADAPTIVE_EFFORTS[effort]}}
    if client_max is not None:
        budget = min(budget, client_max // 2)
        if budget < MIN_THINKING_BUDGET:
            return {}
    return {"max_tokens": max_tokens, "thinking": {"type": "enabled", "budget_tokens": budget}}


def thinking_allowed(payload: dict) -> bool:
    """False where Anthropic refuses thinking, or would want thinking blocks the gateway never kept."""
    if as_dict(payload.get("tool_choice")).get("type") in ("any", "tool"):
        return False  # a forced tool: Anthropic refuses thinking with it, and the tool is what was asked for
    messages = payload["messages"]
    last_assistant = next((i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "assistant"), None)
    if last_assistant is None:
        return True
    if last_assistant == len(messages) - 1:
        return False  # a prefill: the answer continues an assistant message that has no thinking block
    calls_tools = any(block.get("type") == "tool_use" for block in _blocks(messages[last_assistant]))
    answered = any(block.get("type") == "tool_result" for message in messages[last_assistant + 1:]
                   for block in _blocks(message))
    return not (calls_tools and answered)  # a tool-use turn in progress: its signed thinking block is gone


def _drop_sampling_thinking_refuses(payload: dict) -> None:
    """With thinking on, Anthropic takes temperature only at exactly 1 and top_p only from 0.95 up."""
    if payload.get("temperature", 1) != 1:
        del payload["temperature"]
    if payload.get("top_p", 1) < MIN_TOP_P_THINKING:
        del payload["top_p"]


def _blocks(message: dict) -> list[dict]:
    content = message.get("content")
    return [block for block in content if isinstance(block, dict)] if isinstance(content, list) else []




# --- response: Anthropic -> OpenAI ---------------------------------------------------------------


def finish_reason(stop_reason: object) -> str:
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def openai_usage(usage: dict) -> dict:
    """Anthropic counts cached input apart from `input_tokens`; OpenAI's prompt_tokens includes it."""
    return chat_usage(token_count(usage, "input_tokens"), token_count(usage, "output_tokens"),
                      token_count(usage, "cache_read_input_tokens"), token_count(usage, "cache_creation_input_tokens"))





class StreamTranslator:
    """Anthropic stream events -> OpenAI chunks, one event at a time, no I/O.

    `feed` returns the chunks an event produces (often none); `done` turns true at message_stop.
    """

    def __init__(self, fallback_model: str, created: int | None = None) -> None:
        self.id = "chatcmpl-anthropic"
        self.model = fallback_model
        self.created = created if created is not None else int(time.time())
        self.usage: dict = {}
        self.done = False
        self._tool_index: dict[int, int] = {}  # Anthropic content block index -> OpenAI tool_calls index
        self._tool_input: dict[int, object] = {}  # block index -> input given at block start, until a fragment

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
        call = {"index": index, "id": block.get("id"), "type": "function",
                "function": {"name": block.get("name"), "arguments": ""}}
        return [self._chunk({"tool_calls": [call]})]

    def _on_content_block_stop(self, event: dict) -> list[dict]:
        """A tool call that got no argument fragments still gets arguments: its start input, or "{}"."""
        index = event.get("index")
        if not isinstance(index, int) or index not in self._tool_input:
            return []
        given = self._tool_input.pop(index)
        arguments = json.dumps(given) if isinstance(given, dict) and given else "{}"
        call = {"index": self._tool_index[index], "function": {"arguments": arguments}}
        return [self._chunk({"tool_calls": [call]})]

    def _on_content_block_delta(self, event: dict) -> list[dict]:
        delta = as_dict(event.get("delta"))
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str) and delta["text"]:
            return [self._chunk({"content": delta["text"]})]
        index = event.get("index")
        tool_index = self._tool_index.get(index) if isinstance(index, int) else None
        fragment = delta.get("partial_json")
        if kind == "input_json_delta" and isinstance(fragment, str) and fragment and tool_index is not None:
            self._tool_input.pop(index, None)  # arguments are streaming: nothing to fill in at the block's end
            call = {"index": tool_index, "function": {"arguments": fragment}}
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
        return [{**self._envelope(), "choices": [], "usage": openai_usage(self.usage)}]

    def _merge_usage(self, usage: object) -> None:
        # message_delta's counts are cumulative, so a later non-null value replaces an earlier one.
        self.usage.update({k: v for k, v in as_dict(usage).items() if isinstance(v, int)})

    def _chunk(self, delta: dict, finish: str | None = None) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**self._envelope(), "choices": [choice]}

    def _envelope(self) -> dict:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model}


def completion_from_message(message: dict, created: int | None = None) -> dict:
    """A non-streamed Anthropic Message -> an OpenAI chat.completion; thinking -> `reasoning_content`."""
    content = message.get("content")
    blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    text = "".join(str(b.get("text") or "") for b in blocks if b.get("type") == "text")
    thinking = "".join(str(b.get("thinking") or "") for b in blocks if b.get("type") == "thinking")
    tool_calls = [{"id": b.get("id"), "type": "function",
                   "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input") or {})}}
                  for b in blocks if b.get("type") == "tool_use"]
    reply: dict = {"role": "assistant", "content": text or None, "refusal": None}
    if thinking:
        reply["reasoning_content"] = thinking
    if tool_calls:
        reply["tool_calls"] = tool_calls
    return {"id": f"chatcmpl-{message.get('id')}", "object": "chat.completion",
            "created": created if created is not None else int(time.time()), "model": message.get("model"),
            "choices": [{"index": 0, "message": reply, "logprobs": None,
                         "finish_reason": finish_reason(message.get("stop_reason"))}],
            "usage": openai_usage(as_dict(message.get("usage")))}


# --- I/O -----------------------------------------------------------------------------------------


def _request(route: Route, body: dict, settings: Settings, stream: bool) -> UpstreamRequest:
    payload = messages_request(body, route.model, settings, stream)
    headers = {"content-type": "application/json", "accept-encoding": "identity",
               "anthropic-version": settings.anthropic_version}
    if route.api_key:
        headers["x-api-key"] = route.api_key
    if stream:
        headers["accept"] = "text/event-stream"
    return UpstreamRequest(f"{route.base_url}/v1/messages", headers, dumps(payload), (route.api_key or "",))


async def stream(client: UpstreamClient, route: Route, body: dict, settings: Settings
                 ) -> AsyncIterator[list[Chunk]]:
    request = _request(route, body, settings, stream=True)
    response = await send(client, request, route.provider)
    translator = StreamTranslator(route.model)
    try:
        async for events in read_events(response, route.provider, _is_message_stop):
            batch: list[Chunk] = []
            failure = None
            for name, data in events:
                try:
                    event = _parse_event(data, route.provider)
                except UpstreamError as error:
                    failure = error
                    break
                if name == b"error" or event.get("type") == "error":
                    status = _ERROR_STATUS.get(as_dict(event.get("error")).get("type"))  # type: ignore[arg-type]
                    failure = in_stream_error(route.provider, data, request.secrets, status)
                    break
                batch += [(dumps(chunk), chunk) for chunk in translator.feed(event)]
            if batch:  # what came before a failure in the same read still reaches the client first
                yield batch
            if failure is not None:
                raise failure
    finally:
        response.close()
    if translator.done:
        return
    raise UpstreamError(502, f"Upstream provider '{route.provider}' ended the stream before message_stop.",
                        kind="stream_error")


def _is_message_stop(name: bytes, data: bytes) -> bool:
    return name == b"message_stop" or (not name and b'"message_stop"' in data)


async def complete(client: UpstreamClient, route: Route, body: dict, settings: Settings) -> dict:
    response = await send(client, _request(route, body, settings, stream=False), route.provider)
    raw = await read_body(response, route.provider, MAX_MESSAGE_BYTES)
    try:
        message = json.loads(raw)
    except ValueError:
        message = None
    if not isinstance(message, dict) or message.get("type") != "message":
        raise UpstreamError(502, f"Upstream provider '{route.provider}' answered with something that is not "
                            "a message.", kind="http_error")
    return completion_from_message(message)


def _parse_event(data: bytes, provider: str) -> dict:
    try:
        event = json.loads(data)
    except (ValueError, RecursionError):
        event = None
    if not isinstance(event, dict):
        raise UpstreamError(502, f"Upstream provider '{provider}' sent an event that is not a JSON object.",
                            kind="stream_error")
    return event

