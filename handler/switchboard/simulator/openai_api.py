"""The simulator's OpenAI Chat Completions answers, streamed and not."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from switchboard.simulator.app import ConnectionCut, Send, json_response, start_event_stream
from switchboard.simulator.script import Script, estimate_prompt_tokens, pick_tool, tool_arguments


async def respond(body: dict, script: Script, send: Send) -> None:
    tool = pick_tool(script, body.get("tools"))
    words = script.words()
    usage = _usage(body, script, len(words) if tool is None else 8)
    if not body.get("stream"):
        await asyncio.sleep((script.first_token_ms + script.gap_ms * max(len(words) - 1, 0)) / 1000)
        await json_response(send, 200, _completion(body, words, tool, usage))
        return

    completion_id = "chatcmpl-sim-" + uuid.uuid4().hex[:24]
    created = int(time.time())
    model = body.get("model", "echo")
    with_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    async def emit(delta: dict, finish: str | None = None) -> None:
        chunk = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                 "system_fingerprint": "simulated",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if with_usage:
            chunk["usage"] = None
        await send({"type": "http.response.body", "body": _frame(chunk), "more_body": True})

    await start_event_stream(send)
    await emit({"role": "assistant", "content": ""})
    if script.first_token_ms:
        await asyncio.sleep(script.first_token_ms / 1000)
    if tool is not None:
        call_id = "call_sim_" + uuid.uuid4().hex[:16]
        arguments = json.dumps(tool_arguments(tool))
        await emit({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                    "function": {"name": tool["name"], "arguments": ""}}]})
        for start in range(0, len(arguments), 8):
            await emit({"tool_calls": [{"index": 0, "function": {"arguments": arguments[start:start + 8]}}]})
        await emit({}, "tool_calls")
    else:
        for sent, word in enumerate(words):
            if script.cut_after is not None and sent >= script.cut_after:
                raise ConnectionCut("simulated connection cut")
            if script.error_after is not None and sent >= script.error_after:
                error = {"error": {"message": "simulated mid-stream failure", "type": "server_error"}}
                await send({"type": "http.response.body", "body": _frame(error), "more_body": False})
                return
            if sent and script.gap_ms:
                await asyncio.sleep(script.gap_ms / 1000)
            await emit({"content": word})
        await emit({}, "stop")
    if with_usage:
        final = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                 "system_fingerprint": "simulated", "choices": [], "usage": usage}
        await send({"type": "http.response.body", "body": _frame(final), "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


def _frame(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _usage(body: dict, script: Script, completion_tokens: int) -> dict:
    prompt = script.prompt_tokens or estimate_prompt_tokens(body)
    return {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": script.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}


def _completion(body: dict, words: list[str], tool: dict | None, usage: dict) -> dict:
    message: dict = {"role": "assistant", "content": "".join(words), "refusal": None}
    finish = "stop"
    if tool is not None:
        message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [{
            "id": "call_sim_" + uuid.uuid4().hex[:16], "type": "function",
            "function": {"name": tool["name"], "arguments": json.dumps(tool_arguments(tool))}}]}
        finish = "tool_calls"
    return {"id": "chatcmpl-sim-" + uuid.uuid4().hex[:24], "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "echo"), "system_fingerprint": "simulated",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": usage}
