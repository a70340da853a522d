"""The Response object (openai.types.responses.Response) and its output items, built from chat shapes.

The stream's final event and a non-streamed answer carry the same object, so both are made here: from a
whole chat.completion (`response_from_completion`) or, item by item, by the stream (stream.py). Shapes
follow the official openai SDK's models field for field.
"""

from __future__ import annotations

import json
import time
from typing import TypeGuard

# ResponseError.code is a closed set in the SDK; anything else a typed client might refuse.
_RESPONSE_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})
_RATE_LIMIT_CODES = frozenset({"rate_limited", "rate_limit", "rate_limit_exceeded", "rate_limit_error"})
_INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


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
            # Anthropic's cache writes arrive as cache_creation_tokens (see providers/anthropic/stream.py)
            "cache_write_tokens": _count(prompt_details.get("cache_write_tokens",
                                                            prompt_details.get("cache_creation_tokens"))),
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": _count(completion_details.get("reasoning_tokens"))},
        "total_tokens": total if _is_count(total) else prompt + completion,
    }


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _count(value: object) -> int:
    return value if _is_count(value) else 0


def final_status(finish_reason: str | None) -> tuple[str, dict | None]:
    reason = _INCOMPLETE_REASONS.get(finish_reason or "")
    return ("incomplete", {"reason": reason}) if reason else ("completed", None)


def response_object(response_id: str, created_at: int, model: str, echo: dict, *, status: str,
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


def output_item_id(prefix: str, response_id: str, output_index: int) -> str:
    return f"{prefix}_{response_id.removeprefix('resp_')}_{output_index}"


def text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def refusal_part(text: str) -> dict:
    return {"type": "refusal", "refusal": text}


def message_item(item_id: str, status: str, content: list[dict]) -> dict:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def call_item(item_id: str, status: str, call_id: str, name: str, arguments: str) -> dict:
    return {"id": item_id, "type": "function_call", "status": status, "arguments": arguments,
            "call_id": call_id, "name": name}


def reasoning_item(item_id: str, status: str, content: list[dict]) -> dict:
    return {"id": item_id, "type": "reasoning", "status": status, "summary": [], "content": content}


def response_from_completion(completion: dict, response_id: str, created_at: int, model: str, echo: dict) -> dict:
    """A non-streamed chat.completion -> the Response object the client receives."""
    completion = completion if isinstance(completion, dict) else {}
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = found if isinstance(found := choice.get("message"), dict) else {}
    status, incomplete = final_status(choice.get("finish_reason"))
    return response_object(response_id, created_at, model, echo, status=status,
                            output=_completion_output(message, response_id, status),
                            usage=responses_usage(completion.get("usage")), incomplete_details=incomplete)


def _completion_output(message: dict, response_id: str, status: str) -> list[dict]:
    """A chat message's output items, in the order a model produces them: reasoning, words, calls."""
    output: list[dict] = []
    reasoning = reasoning_text(message)
    if reasoning:
        output.append(reasoning_item(output_item_id("rs", response_id, 0), status,
                                      [{"type": "reasoning_text", "text": reasoning}]))
    content = []
    if isinstance(message.get("content"), str) and message["content"]:
        content.append(text_part(message["content"]))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        content.append(refusal_part(message["refusal"]))
    if content:
        output.append(message_item(output_item_id("msg", response_id, len(output)), status, content))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        index = len(output)
        call_id = call["id"] if isinstance(call.get("id"), str) and call["id"] \
            else output_item_id("call", response_id, index)
        output.append(call_item(output_item_id("fc", response_id, index), status, call_id, function["name"],
                                 call_arguments(function.get("arguments"))))
    return output


def reasoning_text(delta_or_message: dict) -> str | None:
    """The reasoning some hosts send beside the content: `reasoning_content` (DeepSeek, xAI) or `reasoning`
    (Groq, OpenRouter, vLLM)."""
    text = delta_or_message.get("reasoning_content") or delta_or_message.get("reasoning")
    return text if isinstance(text, str) and text else None


def call_arguments(arguments: object) -> str:
    if isinstance(arguments, str) and arguments.strip():
        return arguments
    if isinstance(arguments, dict):
        return json.dumps(arguments, separators=(",", ":"))  # a host that sent an object, not a JSON string
    return "{}"  # a call without arguments still needs a JSON object for the SDK to parse


def response_error_code(code: str | None) -> str:
    if code in _RESPONSE_ERROR_CODES:
        return code
    if code in _RATE_LIMIT_CODES:
        return "rate_limit_exceeded"
    return "server_error"
