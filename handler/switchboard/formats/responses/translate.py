"""OpenAI's Responses API, translated to and from the internal Chat Completions shape.

ElevenLabs can speak either wire format; every provider adapter speaks chat. So a Responses request
becomes a chat body once, at the door (`chat_body_from_responses`), and the chat chunks coming back
become Responses events as they arrive (`ResponsesStream`), or one Response object when not streamed
(`response_from_completion`). Pure functions and one small state machine: no I/O, nothing stored.
switchboard keeps no conversation state, so anything that needs it (`previous_response_id`,
`conversation`, stored prompts, built-in tools) is a clear 400 rather than a silently wrong answer.
Shapes follow the official openai SDK's models (openai.types.responses) field for field.
"""

from __future__ import annotations

import json
import time
from typing import Any

from switchboard.wire.errors import GatewayError
from switchboard.wire.json import dumps

MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})
# Copied into the chat body untouched, so chat_request handles them exactly as on the chat route.
PASSED_THROUGH = ("elevenlabs_extra_body", "user_id", "simulator")
# Fields whose meaning is state held by OpenAI: ignoring them would answer a different question.
STATEFUL_FIELDS = {
    "previous_response_id": "switchboard keeps no conversation state: send the whole conversation in 'input' "
                            "instead of 'previous_response_id'.",
    "conversation": "switchboard keeps no conversation state: send the whole conversation in 'input' "
                    "instead of 'conversation'.",
    "prompt": "Stored prompt templates are not available through switchboard: send 'instructions' and 'input'.",
}
MAX_METADATA_ENTRIES = 16  # OpenAI's limits for `metadata`, which also lands on the call record
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
# ResponseError.code is a closed set in the SDK; anything else a typed client might refuse.
_RESPONSE_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})
_RATE_LIMIT_CODES = frozenset({"rate_limited", "rate_limit", "rate_limit_exceeded", "rate_limit_error"})
_INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


# --- request: Responses -> chat.completions ---------------------------------------------------------


def chat_body_from_responses(body: dict) -> tuple[dict, dict]:
    """(the chat body `request.chat_request` validates, the request's fields the Response object echoes).
    Raises GatewayError (400, with `param`) for anything it cannot translate faithfully."""
    _refuse_stateful(body)
    messages = _instructions(body.get("instructions")) + messages_from_input(body.get("input"))
    if not messages:
        raise GatewayError(400, "'input' produced no messages: send at least one message.", param="input",
                           code="invalid_input")
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    echoed_tools = _copy_tools(body, chat)
    _copy_sampling(body, chat)
    _copy_stream(body, chat)
    reasoning = _copy_formats(body, chat)
    for name in PASSED_THROUGH:
        if name in body:
            chat[name] = body[name]
    return chat, _echo(body, echoed_tools, reasoning)


def _copy_tools(body: dict, chat: dict) -> list[dict]:
    """Tools, tool_choice and parallel_tool_calls into `chat`; returns the tools as the Response echoes them."""
    chat_tools, echoed_tools = tools_from_responses(body.get("tools"))
    tool_choice = tool_choice_from_responses(body.get("tool_choice"))
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        raise GatewayError(400, "'parallel_tool_calls' must be true or false.", param="parallel_tool_calls",
                           code="invalid_type")
    if chat_tools:  # OpenAI refuses tool_choice and parallel_tool_calls without tools
        chat["tools"] = chat_tools
        if tool_choice is not None:
            chat["tool_choice"] = tool_choice
        if parallel is not None:
            chat["parallel_tool_calls"] = parallel
    return echoed_tools


def _copy_formats(body: dict, chat: dict) -> dict:
    """text.format and reasoning.effort into `chat`; returns the reasoning settings to echo."""
    response_format = response_format_from_text(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    reasoning = _reasoning(body.get("reasoning"))
    if reasoning["effort"] is not None:
        chat["reasoning_effort"] = reasoning["effort"]
    return reasoning


def _echo(body: dict, tools: list[dict], reasoning: dict) -> dict:
    """The request's settings as the Response object reports them (OpenAI's defaults where absent)."""
    text = body.get("text") or {}
    parallel = body.get("parallel_tool_calls")
    return {
        "instructions": body.get("instructions") or None,
        "metadata": _metadata(body.get("metadata")),
        "tools": tools,
        "tool_choice": body.get("tool_choice") if body.get("tool_choice") is not None else "auto",
        "parallel_tool_calls": parallel if parallel is not None else True,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "max_output_tokens": body.get("max_output_tokens"),
        "text": {"format": text.get("format") or {"type": "text"}, "verbosity": text.get("verbosity")},
        "reasoning": reasoning,
        "user": body.get("user"),
        "store": False,  # accepted, but nothing is stored: the object says so
        "truncation": "disabled",
        "background": False,
        "previous_response_id": None,
    }


def _refuse_stateful(body: dict) -> None:
    for name, message in STATEFUL_FIELDS.items():
        if body.get(name) is not None:
            raise GatewayError(400, message, param=name, code="unsupported_parameter")
    if body.get("background"):
        raise GatewayError(400, "Background responses need stored state, which switchboard does not keep: "
                           "send 'background': false and stream instead.", param="background",
                           code="unsupported_parameter")


def _instructions(instructions: object) -> list[dict]:
    if instructions is None or instructions == "":
        return []
    if not isinstance(instructions, str):
        raise GatewayError(400, "'instructions' must be a string.", param="instructions", code="invalid_type")
    return [{"role": "system", "content": instructions}]


def messages_from_input(items: object) -> list[dict]:
    """Responses `input` -> chat messages. Consecutive function_call items join one assistant message
    (with the assistant text just before them, if any): that is how chat hosts expect a turn of calls."""
    if items is None:
        raise GatewayError(400, "'input' is required: a string or an array of input items.", param="input",
                           code="missing_input")
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise GatewayError(400, "'input' must be a string or an array of input items.", param="input",
                           code="invalid_type")
    messages: list[dict] = []
    for index, item in enumerate(items):
        where = f"input[{index}]"
        kind = _item_kind(item, where)
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            _add_tool_call(messages, _tool_call(item, where))
        elif kind == "function_call_output":
            messages.append(_tool_message(item, where))
        elif kind == "item_reference":
            raise GatewayError(400, f"{where} is an item_reference, but switchboard stores no items: send the item "
                               "itself.", param=where, code="unsupported_parameter")
        elif kind != "reasoning":  # reasoning items are the model's own notes: no chat equivalent, dropped
            raise GatewayError(400, f"{where} has type '{kind}', which switchboard cannot translate: input items "
                               "are messages, function_call, function_call_output and reasoning.",
                               param=f"{where}.type", code="unsupported_item")
    return messages


def _item_kind(item: object, where: str) -> str:
    if not isinstance(item, dict):
        raise GatewayError(400, f"{where} must be an object.", param=where, code="invalid_type")
    kind = item.get("type")
    if kind is None and "role" in item:
        return "message"
    if not isinstance(kind, str) or not kind:
        raise GatewayError(400, f"{where} needs a 'role' (a message) or a 'type'.", param=where,
                           code="invalid_item")
    return kind


def _message(item: dict, where: str) -> dict:
    role = item.get("role")
    if not isinstance(role, str) or role not in MESSAGE_ROLES:
        raise GatewayError(400, f"{where}.role must be one of {', '.join(sorted(MESSAGE_ROLES))}.",
                           param=f"{where}.role", code="invalid_role")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise GatewayError(400, f"{where}.content must be a string or an array of content parts.",
                           param=f"{where}.content", code="invalid_type")
    parts = [_content_part(part, role, f"{where}.content[{number}]") for number, part in enumerate(content)]
    if not parts:
        return {"role": role, "content": ""}
    if len(parts) == 1 and parts[0]["type"] == "text":
        return {"role": role, "content": parts[0]["text"]}  # a plain string is what every chat host accepts
    return {"role": role, "content": parts}


def _content_part(part: object, role: str, where: str) -> dict:
    kind = part.get("type") if isinstance(part, dict) else None
    if not isinstance(kind, str):
        raise GatewayError(400, f"{where} must be an object with a 'type'.", param=where, code="invalid_content")
    if kind in ("input_text", "output_text", "text", "refusal"):
        text = part.get("refusal" if kind == "refusal" else "text")
        if not isinstance(text, str):
            raise GatewayError(400, f"{where} needs a '{'refusal' if kind == 'refusal' else 'text'}' string.",
                               param=where, code="invalid_content")
        return {"type": "text", "text": text}
    if role != "user" and kind in ("input_image", "input_file"):
        raise GatewayError(400, f"{where}: only user messages may carry {kind} parts.", param=where,
                           code="invalid_content")
    if kind == "input_image":
        return _image_part(part, where)
    if kind == "input_file":
        return _file_part(part, where)
    raise GatewayError(400, f"{where} has type '{kind}', which switchboard cannot translate: parts are "
                       "input_text, output_text, input_image and input_file.", param=f"{where}.type",
                       code="invalid_content")


def _image_part(part: dict, where: str) -> dict:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        raise GatewayError(400, f"{where} needs an 'image_url' (an https URL or a data URL); uploaded files "
                           "('file_id') are not available through switchboard.", param=f"{where}.image_url",
                           code="invalid_content")
    image = {"url": url}
    if isinstance(part.get("detail"), str):
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _file_part(part: dict, where: str) -> dict:
    file = {name: part[name] for name in ("file_data", "file_id", "filename") if isinstance(part.get(name), str)}
    if "file_data" not in file and "file_id" not in file:
        raise GatewayError(400, f"{where} needs 'file_data' or 'file_id' ('file_url' is not supported).",
                           param=where, code="invalid_content")
    return {"type": "file", "file": file}


def _tool_call(item: dict, where: str) -> dict:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
    if not isinstance(call_id, str) or not call_id:
        raise GatewayError(400, f"{where} (function_call) needs a 'call_id' string.", param=f"{where}.call_id",
                           code="invalid_item")
    if not isinstance(name, str) or not name:
        raise GatewayError(400, f"{where} (function_call) needs a 'name' string.", param=f"{where}.name",
                           code="invalid_item")
    if arguments is not None and not isinstance(arguments, str):
        raise GatewayError(400, f"{where}.arguments must be a JSON string.", param=f"{where}.arguments",
                           code="invalid_item")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments or "{}"}}


def _add_tool_call(messages: list[dict], call: dict) -> None:
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _tool_message(item: dict, where: str) -> dict:
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str) or not call_id:
        raise GatewayError(400, f"{where} (function_call_output) needs the 'call_id' of its function_call.",
                           param=f"{where}.call_id", code="invalid_item")
    if isinstance(output, list):
        output = "".join(_output_text(part, f"{where}.output[{number}]") for number, part in enumerate(output))
    if not isinstance(output, str):
        raise GatewayError(400, f"{where}.output must be a string or an array of input_text parts.",
                           param=f"{where}.output", code="invalid_item")
    return {"role": "tool", "tool_call_id": call_id, "content": output}


def _output_text(part: object, where: str) -> str:
    if isinstance(part, dict) and part.get("type") in ("input_text", "output_text") and isinstance(
            part.get("text"), str):
        return part["text"]
    raise GatewayError(400, f"{where}: a function_call_output can only carry text through switchboard.",
                       param=where, code="invalid_item")


def tools_from_responses(tools: object) -> tuple[list[dict], list[dict]]:
    """(chat tools, the Responses-shaped tools the Response object echoes). Only function tools exist
    here: a built-in tool runs on OpenAI's servers, and switchboard is not one."""
    if tools is None:
        return [], []
    if not isinstance(tools, list):
        raise GatewayError(400, "'tools' must be an array.", param="tools", code="invalid_type")
    chat_tools, echoed = [], []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            if isinstance(kind, str) and kind:
                raise GatewayError(400, f"{where} is the built-in tool '{kind}', which is not available through "
                                   "switchboard: only function tools are.", param=f"{where}.type",
                                   code="unsupported_tool")
            raise GatewayError(400, f"{where} must be {{'type': 'function', 'name': ...}}.", param=where,
                               code="invalid_tool")
        function = _function_tool(tool, where)
        chat_tools.append({"type": "function", "function": function})
        echoed.append({"type": "function", "name": function["name"], "description": function.get("description"),
                       "parameters": function.get("parameters"), "strict": function.get("strict")})
    return chat_tools, echoed


def _function_tool(tool: dict, where: str) -> dict:
    source = tool["function"] if isinstance(tool.get("function"), dict) and "name" not in tool else tool  # chat shape
    name = source.get("name")
    if not isinstance(name, str) or not name:
        raise GatewayError(400, f"{where} needs a 'name' string.", param=f"{where}.name", code="invalid_tool")
    function: dict[str, Any] = {"name": name}
    for field, kinds in (("description", str), ("parameters", dict), ("strict", bool)):
        value = source.get(field)
        if value is None:
            continue
        if not isinstance(value, kinds):
            raise GatewayError(400, f"{where}.{field} has the wrong type.", param=f"{where}.{field}",
                               code="invalid_tool")
        function[field] = value
    return function


def tool_choice_from_responses(choice: object) -> str | dict | None:
    if choice is None or choice in ("auto", "none", "required"):
        return choice  # type: ignore[return-value]
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise GatewayError(400, "'tool_choice' must be 'auto', 'none', 'required' or {'type': 'function', 'name': ...}.",
                       param="tool_choice", code="invalid_parameter")


def _copy_sampling(body: dict, chat: dict) -> None:
    for name in ("temperature", "top_p", "user"):
        if body.get(name) is not None:
            chat[name] = body[name]  # chat_request checks the ranges, under the same names
    limit = body.get("max_output_tokens")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000_000:
            raise GatewayError(400, "'max_output_tokens' must be an integer from 1 to 10000000.",
                               param="max_output_tokens", code="invalid_parameter")
        chat["max_tokens"] = limit


def _copy_stream(body: dict, chat: dict) -> None:
    if "stream" not in body:
        return
    chat["stream"] = body["stream"]  # chat_request refuses a non-boolean
    if body["stream"] is True:
        chat["stream_options"] = {"include_usage": True}  # the usage goes into response.completed


def response_format_from_text(text: object) -> dict | None:
    """`text.format` -> chat's `response_format` (None for plain text)."""
    if text is None:
        return None
    if not isinstance(text, dict):
        raise GatewayError(400, "'text' must be an object.", param="text", code="invalid_type")
    fmt = text.get("format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
            raise GatewayError(400, "'text.format' of type json_schema needs a 'name' string and a 'schema' object.",
                               param="text.format", code="invalid_parameter")
        schema = {key: fmt[key] for key in ("name", "schema", "description", "strict") if fmt.get(key) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise GatewayError(400, "'text.format.type' must be text, json_object or json_schema.", param="text.format",
                       code="invalid_parameter")


def _reasoning(reasoning: object) -> dict:
    if reasoning is None:
        return {"effort": None, "summary": None}
    if not isinstance(reasoning, dict):
        raise GatewayError(400, "'reasoning' must be an object.", param="reasoning", code="invalid_type")
    effort = reasoning.get("effort")
    if effort is not None and not isinstance(effort, str):
        raise GatewayError(400, "'reasoning.effort' must be a string.", param="reasoning.effort",
                           code="invalid_parameter")
    return {"effort": effort, "summary": reasoning.get("summary")}


def _metadata(metadata: object) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_ENTRIES or not all(
            isinstance(key, str) and len(key) <= MAX_METADATA_KEY and isinstance(value, str)
            and len(value) <= MAX_METADATA_VALUE for key, value in metadata.items()):
        raise GatewayError(400, f"'metadata' must be an object of up to {MAX_METADATA_ENTRIES} string values "
                           f"(keys up to {MAX_METADATA_KEY} characters, values up to {MAX_METADATA_VALUE}).",
                           param="metadata", code="invalid_parameter")
    return metadata


# --- usage and the Response object ------------------------------------------------------------------


def responses_usage(chat_usage: dict | None) -> dict | None:
    """Chat usage -> the Responses usage shape (ResponseUsage), or None when there is none."""
    if not isinstance(chat_usage, dict):
        return None
    prompt = _count(chat_usage.get("prompt_tokens"))
    completion = _count(chat_usage.get("completion_tokens"))
    prompt_details = chat_usage.get("prompt_tokens_details")
    prompt_details = prompt_details if isinstance(prompt_details, dict) else {}
    completion_details = chat_usage.get("completion_tokens_details")
    completion_details = completion_details if isinstance(completion_details, dict) else {}
    total = chat_usage.get("total_tokens")
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": _count(prompt_details.get("cached_tokens")),
            # Anthropic's cache writes arrive as cache_creation_tokens (see providers/anthropic.py)
            "cache_write_tokens": _count(prompt_details.get("cache_write_tokens",
                                                            prompt_details.get("cache_creation_tokens"))),
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": _count(completion_details.get("reasoning_tokens"))},
        "total_tokens": total if _is_count(total) else prompt + completion,
    }


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _count(value: object) -> int:
    return value if _is_count(value) else 0  # type: ignore[return-value]


def _final_status(finish_reason: str | None) -> tuple[str, dict | None]:
    reason = _INCOMPLETE_REASONS.get(finish_reason or "")
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def _response_object(response_id: str, created_at: int, model: str, echo: dict, *, status: str,
                     output: list[dict], usage: dict | None, error: dict | None = None,
                     incomplete_details: dict | None = None) -> dict:
    """The Response object (openai.types.responses.Response), with the request's fields echoed."""
    return {
        "id": response_id, "object": "response", "created_at": created_at, "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "error": error, "incomplete_details": incomplete_details,
        "instructions": echo.get("instructions"), "max_output_tokens": echo.get("max_output_tokens"),
        "model": model, "output": output,
        "parallel_tool_calls": echo.get("parallel_tool_calls", True),
        "previous_response_id": None, "reasoning": echo.get("reasoning") or {"effort": None, "summary": None},
        "store": echo.get("store", False), "temperature": echo.get("temperature"),
        "text": echo.get("text") or {"format": {"type": "text"}},
        "tool_choice": echo.get("tool_choice", "auto"), "tools": echo.get("tools") or [],
        "top_p": echo.get("top_p"), "truncation": echo.get("truncation", "disabled"),
        "background": echo.get("background", False),
        "usage": usage, "user": echo.get("user"), "metadata": echo.get("metadata") or {},
    }


def _item_id(prefix: str, response_id: str, output_index: int) -> str:
    return f"{prefix}_{response_id.removeprefix('resp_')}_{output_index}"


def _text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _refusal_part(text: str) -> dict:
    return {"type": "refusal", "refusal": text}


def _message_item(item_id: str, status: str, content: list[dict]) -> dict:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def _call_item(item_id: str, status: str, call_id: str, name: str, arguments: str) -> dict:
    return {"id": item_id, "type": "function_call", "status": status, "arguments": arguments,
            "call_id": call_id, "name": name}


def _reasoning_item(item_id: str, status: str, content: list[dict]) -> dict:
    return {"id": item_id, "type": "reasoning", "status": status, "summary": [], "content": content}


def response_from_completion(completion: dict, response_id: str, created_at: int, model: str, echo: dict) -> dict:
    """A non-streamed chat.completion -> the Response object the client receives."""
    completion = completion if isinstance(completion, dict) else {}
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    status, incomplete = _final_status(choice.get("finish_reason"))
    return _response_object(response_id, created_at, model, echo, status=status,
                            output=_completion_output(message, response_id, status),
                            usage=responses_usage(completion.get("usage")), incomplete_details=incomplete)


def _completion_output(message: dict, response_id: str, status: str) -> list[dict]:
    """A chat message's output items, in the order a model produces them: reasoning, words, calls."""
    output: list[dict] = []
    reasoning = _reasoning_text(message)
    if reasoning:
        output.append(_reasoning_item(_item_id("rs", response_id, 0), status,
                                      [{"type": "reasoning_text", "text": reasoning}]))
    content = []
    if isinstance(message.get("content"), str) and message["content"]:
        content.append(_text_part(message["content"]))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        content.append(_refusal_part(message["refusal"]))
    if content:
        output.append(_message_item(_item_id("msg", response_id, len(output)), status, content))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        index = len(output)
        call_id = call["id"] if isinstance(call.get("id"), str) and call["id"] else _item_id("call", response_id, index)
        output.append(_call_item(_item_id("fc", response_id, index), status, call_id, function["name"],
                                 _arguments(function.get("arguments"))))
    return output


def _reasoning_text(delta_or_message: dict) -> str | None:
    """The reasoning some hosts send beside the content: `reasoning_content` (DeepSeek, xAI) or `reasoning`
    (Groq, OpenRouter, vLLM)."""
    text = delta_or_message.get("reasoning_content") or delta_or_message.get("reasoning")
    return text if isinstance(text, str) and text else None


def _arguments(arguments: object) -> str:
    if isinstance(arguments, str) and arguments.strip():
        return arguments
    if isinstance(arguments, dict):
        return json.dumps(arguments, separators=(",", ":"))  # a host that sent an object, not a JSON string
    return "{}"  # a call without arguments still needs a JSON object for the SDK to parse


# --- streaming: chat chunks -> Responses events -----------------------------------------------------


def _frame(event_type: str, payload: bytes) -> bytes:
    return b"event: " + event_type.encode() + b"\ndata: " + payload + b"\n\n"


class _DeltaFramer:
    """Frames one kind of delta event for one item: everything but the delta text and the sequence number
    is serialised once, when the item opens, so a token costs one small string encode."""

    __slots__ = ("_head",)

    def __init__(self, event_type: str, **fields: Any) -> None:
        head = dumps({"type": event_type, **fields})
        self._head = b"event: " + event_type.encode() + b"\ndata: " + head[:-1] + b',"delta":'

    def frame(self, delta: str, sequence_number: int) -> bytes:
        return self._head + dumps(delta) + b',"sequence_number":' + str(sequence_number).encode() + b"}\n\n"


class _Part:
    """One content part being streamed: a message's output_text or refusal, or a reasoning item's text."""

    __slots__ = ("kind", "content_index", "pieces", "framer")

    def __init__(self, kind: str, content_index: int, framer: _DeltaFramer) -> None:
        self.kind = kind
        self.content_index = content_index
        self.pieces: list[str] = []
        self.framer = framer

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def as_dict(self) -> dict:
        if self.kind == "refusal":
            return _refusal_part(self.text)
        if self.kind == "reasoning_text":
            return {"type": "reasoning_text", "text": self.text}
        return _text_part(self.text)


class _Item:
    """An output item: a message (output_text and refusal parts), a reasoning item (one reasoning_text
    part) or a function call (argument fragments)."""

    __slots__ = ("type", "id", "output_index", "parts", "call_id", "name", "arguments", "framer", "done")

    def __init__(self, type_: str, item_id: str, output_index: int) -> None:
        self.type = type_
        self.id = item_id
        self.output_index = output_index
        self.parts: dict[str, _Part] = {}
        self.call_id = ""
        self.name: str | None = None
        self.arguments: list[str] = []
        self.framer: _DeltaFramer | None = None  # function calls: the arguments delta framer
        self.done = False

    def as_dict(self, status: str) -> dict:
        if self.type == "function_call":
            return _call_item(self.id, status, self.call_id, self.name or "", _arguments("".join(self.arguments)))
        content = [part.as_dict() for part in self.parts.values()]
        if self.type == "reasoning":
            return _reasoning_item(self.id, status, content)
        return _message_item(self.id, status, content)


_PART_EVENTS = {  # part kind -> (delta event, done event, the done event's text field)
    "output_text": ("response.output_text.delta", "response.output_text.done", "text"),
    "refusal": ("response.refusal.delta", "response.refusal.done", "refusal"),
    "reasoning_text": ("response.reasoning_text.delta", "response.reasoning_text.done", "text"),
}


class ResponsesStream:
    """Chat chunks in, Responses server-sent events out, one call at a time and as they arrive.

    Every item stays open until `complete()`, which closes them in output order and sends the whole
    Response once; per delta only the new text is encoded. After `complete()` or `fail()` nothing more
    is sent.
    """

    def __init__(self, response_id: str, model: str, created_at: int, echo: dict) -> None:
        self.response_id = response_id
        self.model = model
        self.created_at = created_at
        self.echo = echo
        self.finish_reason: str | None = None
        self.usage: dict | None = None  # the last chat usage fed
        self._sequence = 0
        self._items: list[_Item] = []
        self._message: _Item | None = None
        self._reasoning: _Item | None = None
        self._calls: dict[int, _Item] = {}  # chat tool-call index -> its item
        self._finished = False

    # -- public surface --

    def start(self) -> bytes:
        """response.created and response.in_progress: an empty response, before the first token."""
        snapshot = dumps(self._response("in_progress", [], None))  # encoded once for both events
        return self._raw_event("response.created", b'"response":' + snapshot) + self._raw_event(
            "response.in_progress", b'"response":' + snapshot)

    def feed(self, chunk: dict) -> bytes:
        """The events one chat.completion.chunk produces (b"" when none)."""
        if self._finished:
            return b""
        usage = chunk.get("usage")
        if isinstance(usage, dict) and usage:
            self.usage = usage
        choices = chunk.get("choices")
        if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
            return b""
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta")
        if not isinstance(delta, dict) or not delta:
            return b""
        content = delta.get("content")
        if content and isinstance(content, str) and (len(delta) == 1 or (len(delta) == 2 and "role" in delta)):
            return self._text_delta("output_text", content)  # the hot path: one token of speech
        return self._delta_frames(delta, content)

    def buffer_words(self, text: str = "... ") -> bytes:
        """Speech filler while the model is slow: an output_text delta like any other."""
        if self._finished:
            return b""
        return self._text_delta("output_text", text)

    def complete(self, usage: dict | None = None) -> bytes:
        """Close every open item in output order, then response.completed (or response.incomplete when the
        output was cut at max_output_tokens or by a content filter, as OpenAI does) with the whole Response."""
        if self._finished:
            return b""
        self._finished = True
        status, incomplete = _final_status(self.finish_reason)
        frames = [self._close(item, status) for item in self._items if not item.done]
        final = self._response(status, [item.as_dict(status) for item in self._items],
                               responses_usage(usage if usage is not None else self.usage),
                               incomplete_details=incomplete)
        event = "response.completed" if status == "completed" else "response.incomplete"
        frames.append(self._event(event, response=final))
        return b"".join(frames)

    def fail(self, message: str, code: str | None = None) -> bytes:
        """response.failed: the stream ends here, with what was produced so far marked incomplete."""
        if self._finished:
            return b""
        self._finished = True
        error = {"code": _response_error_code(code), "message": message}
        failed = self._response("failed", [item.as_dict("incomplete") for item in self._items],
                                responses_usage(self.usage), error=error)
        return self._event("response.failed", response=failed)

    @property
    def output_text(self) -> str:
        """The text spoken so far (buffer words included), for the call record."""
        return "".join(part.text for item in self._items if item.type == "message"
                       for part in item.parts.values() if part.kind == "output_text")

    @property
    def function_calls(self) -> list[str]:
        """The names of the functions called so far, in order, for the call record."""
        return [item.name for item in self._items if item.type == "function_call" and item.name]

    # -- deltas --

    def _delta_frames(self, delta: dict, content: object) -> bytes:
        frames = []
        reasoning = _reasoning_text(delta)
        if reasoning:
            frames.append(self._reasoning_delta(reasoning))
        if content and isinstance(content, str):
            frames.append(self._text_delta("output_text", content))
        refusal = delta.get("refusal")
        if refusal and isinstance(refusal, str):
            frames.append(self._text_delta("refusal", refusal))
        tool_calls = delta.get("tool_calls")
        if isinstance(tool_calls, list):
            frames.extend(self._call_delta(call) for call in tool_calls if isinstance(call, dict))
        return b"".join(frames)

    def _text_delta(self, kind: str, text: str) -> bytes:
        opening = b""
        if self._message is None:
            self._message, opening = self._open("message", "msg")
        part = self._message.parts.get(kind)
        if part is None:
            part, added = self._open_part(self._message, kind)
            opening += added
        part.pieces.append(text)
        return opening + part.framer.frame(text, self._next())

    def _reasoning_delta(self, text: str) -> bytes:
        opening = b""
        if self._reasoning is None:
            self._reasoning, opening = self._open("reasoning", "rs")
            part, added = self._open_part(self._reasoning, "reasoning_text")
            opening += added
        part = self._reasoning.parts["reasoning_text"]
        part.pieces.append(text)
        return opening + part.framer.frame(text, self._next())

    def _call_delta(self, call: dict) -> bytes:
        item = self._call_for(call)
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        if item.name is None and isinstance(function.get("name"), str) and function["name"]:
            item.name = function["name"]
        fragment = function.get("arguments")
        if isinstance(fragment, dict):
            fragment = json.dumps(fragment, separators=(",", ":"))
        frames = b""
        if item.framer is None and item.name is not None:  # opened once its name is known: the SDK needs one
            frames = self._open_call(item)
        if isinstance(fragment, str) and fragment:
            item.arguments.append(fragment)
            if item.framer is not None:
                frames += item.framer.frame(fragment, self._next())
        return frames

    def _call_for(self, call: dict) -> _Item:
        index = call.get("index")
        call_id = call.get("id") if isinstance(call.get("id"), str) and call["id"] else None
        if not isinstance(index, int) or isinstance(index, bool):
            index = self._index_without_one(call_id)
        item = self._calls.get(index)
        if item is None:
            output_index = len(self._items)
            item = _Item("function_call", _item_id("fc", self.response_id, output_index), output_index)
            item.call_id = call_id or _item_id("call", self.response_id, output_index)
            self._items.append(item)
            self._calls[index] = item
        return item

    def _index_without_one(self, call_id: str | None) -> int:
        """For hosts that omit `index`: a known id is that call, a new id a new call, no id the latest."""
        for index, item in self._calls.items():
            if call_id and item.call_id == call_id:
                return index
        latest = max(self._calls, default=-1)
        return latest + 1 if call_id or latest < 0 else latest

    # -- opening and closing items --

    def _open(self, type_: str, prefix: str) -> tuple[_Item, bytes]:
        output_index = len(self._items)
        item = _Item(type_, _item_id(prefix, self.response_id, output_index), output_index)
        self._items.append(item)
        return item, self._event("response.output_item.added", output_index=output_index,
                                 item=item.as_dict("in_progress"))

    def _open_part(self, item: _Item, kind: str) -> tuple[_Part, bytes]:
        content_index = len(item.parts)
        fields: dict[str, Any] = {"item_id": item.id, "output_index": item.output_index,
                                  "content_index": content_index}
        if kind == "output_text":
            fields["logprobs"] = []
        part = _Part(kind, content_index, _DeltaFramer(_PART_EVENTS[kind][0], **fields))
        item.parts[kind] = part
        return part, self._event("response.content_part.added", item_id=item.id, output_index=item.output_index,
                                 content_index=content_index, part=part.as_dict())

    def _open_call(self, item: _Item) -> bytes:
        item.framer = _DeltaFramer("response.function_call_arguments.delta", item_id=item.id,
                                   output_index=item.output_index)
        added = _call_item(item.id, "in_progress", item.call_id, item.name or "", "")
        frames = self._event("response.output_item.added", output_index=item.output_index, item=added)
        buffered = "".join(item.arguments)  # fragments that came before the name
        if buffered:
            frames += item.framer.frame(buffered, self._next())
        return frames

    def _close(self, item: _Item, status: str) -> bytes:
        item.done = True
        frames = []
        if item.type == "function_call":
            if item.framer is None:  # never named: still a call the client must see
                frames.append(self._open_call(item))
            frames.append(self._event("response.function_call_arguments.done", item_id=item.id,
                                      output_index=item.output_index, name=item.name or "",
                                      arguments=_arguments("".join(item.arguments))))
        for part in item.parts.values():
            _, done_event, field = _PART_EVENTS[part.kind]
            fields: dict[str, Any] = {field: part.text}
            if part.kind == "output_text":
                fields["logprobs"] = []
            frames.append(self._event(done_event, item_id=item.id, output_index=item.output_index,
                                      content_index=part.content_index, **fields))
            frames.append(self._event("response.content_part.done", item_id=item.id, output_index=item.output_index,
                                      content_index=part.content_index, part=part.as_dict()))
        frames.append(self._event("response.output_item.done", output_index=item.output_index,
                                  item=item.as_dict(status)))
        return b"".join(frames)

    # -- framing --

    def _next(self) -> int:
        number = self._sequence
        self._sequence += 1
        return number

    def _raw_event(self, event_type: str, encoded_fields: bytes) -> bytes:
        """An event whose fields are already JSON (`"name":value` pairs): no second encoding of big objects."""
        head = b'{"type":"' + event_type.encode() + b'",'
        tail = b',"sequence_number":' + str(self._next()).encode() + b"}"
        return _frame(event_type, head + encoded_fields + tail)

    def _event(self, event_type: str, **fields: Any) -> bytes:
        payload = {"type": event_type, **fields, "sequence_number": self._next()}
        return _frame(event_type, dumps(payload))

    def _response(self, status: str, output: list[dict], usage: dict | None, *, error: dict | None = None,
                  incomplete_details: dict | None = None) -> dict:
        return _response_object(self.response_id, self.created_at, self.model, self.echo, status=status,
                                output=output, usage=usage, error=error, incomplete_details=incomplete_details)


def _response_error_code(code: str | None) -> str:
    if code in _RESPONSE_ERROR_CODES:
        return code  # type: ignore[return-value]
    if code in _RATE_LIMIT_CODES:
        return "rate_limit_exceeded"
    return "server_error"
