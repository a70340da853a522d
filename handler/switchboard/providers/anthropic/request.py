"""An OpenAI Chat Completions request -> the Anthropic Messages payload. Pure: no I/O.

Anthropic's quirks: the top-level `system`, tool results as user content, `max_tokens` required, temperature
capped at 1. OpenAI-only fields are dropped.

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
ends with an assistant message). The rules are shared with Bedrock's Claude (`providers/_translate.py`).
"""

from __future__ import annotations

from switchboard.providers._translate import (
    EMPTY_SCHEMA,
    NO_THINKING,
    as_dict,
    base64_data_url,
    capped_temperature,
    claude_thinking,
    client_max_tokens,
    conversation,
    drop_sampling_thinking_refuses,
    function_tools,
    image_url_of,
    requested_effort,
    stop_sequences,
    text_of,
    thinking_allowed,
    tool_calls_of,
    user_parts,
)
from switchboard.providers.anthropic.config import AnthropicConfig
from switchboard.wire.chat import is_number
from switchboard.wire.errors import GatewayError

_TOOL_CHOICES = {"auto": "auto", "none": "none", "required": "any"}


def messages_request(body: dict, model: str, config: AnthropicConfig, stream: bool) -> dict:
    """The Anthropic Messages payload for an OpenAI request. OpenAI-only fields are dropped."""
    system, messages = translate_messages(body.get("messages") or [])
    # Anthropic requires a limit; OpenAI does not
    payload: dict = {"model": model, "max_tokens": client_max_tokens(body) or config.default_max_tokens,
                     "messages": messages}
    if system:
        payload["system"] = system
    tools = translate_tools(body.get("tools"))
    if tools:
        payload["tools"] = tools
        choice = translate_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice:
            payload["tool_choice"] = choice
    stop = stop_sequences(body.get("stop"))
    if stop:
        payload["stop_sequences"] = stop
    temperature = capped_temperature(body)
    if temperature is not None:
        payload["temperature"] = temperature
    if is_number(body.get("top_p")):
        payload["top_p"] = body["top_p"]
    if isinstance(body.get("user"), str) and body["user"]:
        payload["metadata"] = {"user_id": body["user"]}
    payload.update(thinking_fields(payload, reasoning_effort(body), client_max_tokens(body),
                                   config.default_max_tokens))
    if "thinking" in payload:
        drop_sampling_thinking_refuses(payload, "temperature", "top_p")
    if isinstance(body.get("simulator"), dict):
        payload["simulator"] = body["simulator"]  # pacing for the simulated upstream; real hosts never see it
    payload["stream"] = stream
    return payload


def translate_messages(messages: list) -> tuple[str, list[dict]]:
    """OpenAI messages -> (system text, Anthropic messages). System turns anywhere are hoisted."""
    system_parts: list[str] = []
    out: list[dict] = []
    for role, message in conversation(messages):
        if role == "system":
            text = text_of(message.get("content"))
            if text:
                system_parts.append(text)
        elif role == "user":
            out.append({"role": "user", "content": _user_content(message.get("content"))})
        elif role == "assistant":
            blocks = _assistant_blocks(message)
            if blocks:
                out.append({"role": "assistant", "content": blocks})
        else:
            _append_tool_result(out, message)
    return "\n\n".join(system_parts), out


def _user_content(content: object) -> str | list[dict]:
    if isinstance(content, str) or not isinstance(content, list):
        return content if isinstance(content, str) else ""
    return [{"type": "text", "text": value} if kind == "text" else image_block(value)
            for kind, value in user_parts(content, "Anthropic")]


def image_block(image_url: object) -> dict:
    """An OpenAI image_url part -> an Anthropic image block (data: URLs inline, http(s) by URL)."""
    url = image_url_of(image_url)
    if not isinstance(url, str):
        raise GatewayError(400, "An image_url content part has no URL.", param="messages",
                           code="invalid_image")
    if url.startswith("data:"):
        inline = base64_data_url(url)
        if inline is None:
            raise GatewayError(400, "An image data: URL must look like 'data:image/png;base64,...'.",
                               param="messages", code="invalid_image")
        media_type, data = inline
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise GatewayError(400, "An image URL must be a data: URL or an http(s) URL.", param="messages",
                       code="invalid_image")


def _assistant_blocks(message: dict) -> list[dict]:
    blocks: list[dict] = []
    text = text_of(message.get("content"))
    if text:  # Anthropic rejects empty text blocks
        blocks.append({"type": "text", "text": text})
    blocks += [{"type": "tool_use", "id": call_id, "name": name, "input": arguments}
               for call_id, name, arguments in tool_calls_of(message)]
    return blocks


def _append_tool_result(out: list[dict], message: dict) -> None:
    """Tool results are user content in Anthropic; consecutive ones share one user message."""
    block = {"type": "tool_result", "tool_use_id": str(message.get("tool_call_id") or ""),
             "content": text_of(message.get("content"))}
    previous = out[-1] if out else None
    if previous and previous["role"] == "user" and _is_tool_results(previous["content"]):
        previous["content"].append(block)
    else:
        out.append({"role": "user", "content": [block]})


def _is_tool_results(content: object) -> bool:
    if not isinstance(content, list) or not content:
        return False
    return all(block.get("type") == "tool_result" for block in content)


def translate_tools(tools: object) -> list[dict]:
    """OpenAI function tools -> Anthropic tools; other tool types have no Anthropic equivalent."""
    out = []
    for function in function_tools(tools):
        translated = {"name": function["name"]}
        if function.get("description"):
            translated["description"] = function["description"]
        translated["input_schema"] = function.get("parameters") or EMPTY_SCHEMA
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


# --- reasoning: OpenAI reasoning_effort -> extended thinking ----------------------------------------


def reasoning_effort(body: dict) -> str | None:
    """The effort the client asked for, None for no thinking (absent, none, minimal); an unknown value is a 400."""
    effort = requested_effort(body)
    return None if effort is None or effort in NO_THINKING else effort


def thinking_fields(payload: dict, effort: str | None, client_max: int | None, default_max_tokens: int) -> dict:
    """The fields that turn thinking on (`thinking`, maybe `output_config`, `max_tokens`), or {} for off."""
    forced_tool = as_dict(payload.get("tool_choice")).get("type") in ("any", "tool")
    if effort is None or not thinking_allowed(payload["messages"], forced_tool=forced_tool, calls_tool=_is_tool_use,
                                              answers_tool=_is_tool_result):
        return {}
    thinking = claude_thinking(payload["model"], effort, client_max, default_max_tokens)
    if thinking is None:
        return {}
    fields, max_tokens = thinking
    return {"max_tokens": max_tokens, **fields}


def _is_tool_use(block: dict) -> bool:
    return block.get("type") == "tool_use"


def _is_tool_result(block: dict) -> bool:
    return block.get("type") == "tool_result"
