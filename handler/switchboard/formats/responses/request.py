"""A Responses API request, translated once, at the door, into the internal Chat Completions body.

Every provider adapter speaks chat, so everything after `chat_body_from_responses` does too; what the
Response object must echo back (instructions, tools, sampling settings, metadata) is kept beside it.
switchboard keeps no conversation state, so anything that needs it (`previous_response_id`,
`conversation`, stored prompts, built-in tools) is a clear 400 rather than a silently wrong answer.
"""

from __future__ import annotations

from switchboard.wire.errors import GatewayError

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


def chat_body_from_responses(body: dict) -> tuple[dict, dict]:
    """(the chat body `chat_completions.chat_request` validates, the request's fields the Response object echoes).
    Raises GatewayError (400, with `param`) for anything it cannot translate faithfully."""
    _refuse_stateful(body)
    messages = _instructions(body.get("instructions")) + messages_from_input(body.get("input"))
    if not messages:
        raise GatewayError(400, "'input' produced no messages: send at least one message.", param="input",
                           code="invalid_input")
    chat: dict[str, object] = {"model": body.get("model"), "messages": messages}
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
    if not isinstance(part, dict) or not isinstance(kind, str):
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
    function: dict[str, object] = {"name": name}
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
        return choice
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

