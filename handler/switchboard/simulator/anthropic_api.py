"""The simulator's Anthropic Messages answers, streamed (named SSE events) and not.

Usage follows Anthropic's accounting: `input_tokens` excludes cached input, which is reported as
`cache_read_input_tokens`, so the same script yields the same OpenAI-side totals on both APIs.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from switchboard.simulator.app import ConnectionCut, Send, json_response, start_event_stream
from switchboard.simulator.script import Script, estimate_prompt_tokens, pick_tool, tool_arguments

TOOL_OUTPUT_TOKENS = 8


async def respond(body: dict, script: Script, send: Send) -> None:
    problem = _invalid(body)
    if problem:
        await json_response(send, 400, {"type": "error", "error": {"type": "invalid_request_error",
                                                                   "message": problem}})
        return
    tool = pick_tool(script, body.get("tools"))
    words = script.words()
    stop_reason = "tool_use" if tool is not None else "end_turn"
    if tool is None and len(words) > body["max_tokens"]:
        words, stop_reason = words[: body["max_tokens"]], "max_tokens"
    output_tokens = TOOL_OUTPUT_TOKENS if tool is not None else len(words)
    usage = _usage(body, script, output_tokens)
    message_id = "msg_sim_" + uuid.uuid4().hex[:24]
    if not body.get("stream"):
        await asyncio.sleep((script.first_token_ms + script.gap_ms * max(len(words) - 1, 0)) / 1000)
        content = [_tool_block(tool)] if tool is not None else [{"type": "text", "text": "".join(words)}]
        await json_response(send, 200, _message(body, message_id, content, stop_reason, usage))
        return

    await start_event_stream(send)
    start_usage = dict(usage, output_tokens=1)  # as Anthropic does: the final count comes in message_delta
    await _event(send, "message_start", {"message": _message(body, message_id, [], None, start_usage)})
    if tool is not None:
        await _stream_tool(send, script, tool)
    elif not await _stream_text(send, script, words):
        return
    await _event(send, "message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                         "usage": {"output_tokens": output_tokens}})
    await _event(send, "message_stop", {}, more_body=False)


def _invalid(body: dict) -> str | None:
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        return "max_tokens: Field required"
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: Input should be a positive integer"
    if not isinstance(body.get("messages"), list):
        return "messages: Field required"
    return None


async def _stream_text(send: Send, script: Script, words: list[str]) -> bool:
    """The text block; False when the script ended the stream early with an error event."""
    await _event(send, "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    await _event(send, "ping", {})
    if script.first_token_ms:
        await asyncio.sleep(script.first_token_ms / 1000)
    for sent, word in enumerate(words):
        if script.cut_after is not None and sent >= script.cut_after:
            raise ConnectionCut("simulated connection cut")
        if script.error_after is not None and sent >= script.error_after:
            error = {"type": "overloaded_error", "message": "simulated mid-stream failure (Overloaded)"}
            await _event(send, "error", {"error": error}, more_body=False)
            return False
        if sent and script.gap_ms:
            await asyncio.sleep(script.gap_ms / 1000)
        await _event(send, "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": word}})
    await _event(send, "content_block_stop", {"index": 0})
    return True


async def _stream_tool(send: Send, script: Script, tool: dict) -> None:
    block = _tool_block(tool)
    arguments = json.dumps(block["input"])
    await _event(send, "content_block_start", {"index": 0, "content_block": dict(block, input={})})
    await _event(send, "ping", {})
    if script.first_token_ms:
        await asyncio.sleep(script.first_token_ms / 1000)
    for start in range(0, len(arguments), 8):
        delta = {"type": "input_json_delta", "partial_json": arguments[start:start + 8]}
        await _event(send, "content_block_delta", {"index": 0, "delta": delta})
    await _event(send, "content_block_stop", {"index": 0})


async def _event(send: Send, name: str, payload: dict, *, more_body: bool = True) -> None:
    data = json.dumps({"type": name, **payload}, separators=(",", ":"))
    frame = f"event: {name}\ndata: {data}\n\n".encode()
    await send({"type": "http.response.body", "body": frame, "more_body": more_body})


def _tool_block(tool: dict) -> dict:
    return {"type": "tool_use", "id": "toolu_sim_" + uuid.uuid4().hex[:20], "name": tool["name"],
            "input": tool_arguments(tool)}


def _usage(body: dict, script: Script, output_tokens: int) -> dict:
    prompt = script.prompt_tokens or estimate_prompt_tokens(body)
    cached = min(max(int(script.cached_tokens), 0), prompt)
    return {"input_tokens": prompt - cached, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached, "output_tokens": output_tokens}


def _message(body: dict, message_id: str, content: list[dict], stop_reason: str | None, usage: dict) -> dict:
    return {"id": message_id, "type": "message", "role": "assistant",
            "model": body.get("model", "claude-sim"), "content": content,
            "stop_reason": stop_reason, "stop_sequence": None, "usage": usage}
