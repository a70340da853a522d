"""The simulator's Anthropic Messages answers, streamed (named SSE events) and not.

Usage follows Anthropic's accounting: `input_tokens` excludes cached input, which is reported as
`cache_read_input_tokens`, so the same script yields the same OpenAI-side totals on both APIs.

Extended thinking is checked as Anthropic checks it (`thinking_problem`): `enabled` needs 1024 <=
budget_tokens < max_tokens and is refused by Claude 4.7 and later, `adaptive` needs Claude 4.6 or later
and takes `output_config.effort`; with thinking on, temperature must be 1 (or unset), top_p at least
0.95, tool_choice must not force a tool, and a final assistant message (a prefill, or the tool-use turn
in progress) must start with a thinking block. A request that thinks gets a thinking block first
(thinking_delta, then signature_delta), counted in output_tokens as Anthropic counts it.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid

from switchboard.simulator.app import ConnectionCut, Send, json_response, start_event_stream
from switchboard.simulator.script import Script, estimate_prompt_tokens, pick_tool, tool_arguments

TOOL_OUTPUT_TOKENS = 8
DEFAULT_THINKING_WORDS = 3  # when the request thinks and the script sets no reasoning_tokens
SIGNATURE = "EqQBCkgIARABGAIiQL-simulated-signature"
EFFORTS = frozenset({"low", "medium", "high", "max"})
# claude-opus-4-7, claude-sonnet-4-5-20250929, claude-sonnet-5; and the older claude-3-7-sonnet-20250219.
_VERSION = re.compile(r"claude-(?:(?:opus|sonnet|haiku)-(\d+)(?:-(\d{1,2})(?!\d))?|(\d+)(?:-(\d)(?!\d))?-)")
_FINAL_ASSISTANT = ("messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. "
                    "When `thinking` is enabled, a final `assistant` message must start with a thinking block "
                    "(preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include "
                    "thinking blocks from previous turns.")


async def respond(body: dict, script: Script, send: Send) -> None:
    problem = _invalid(body)
    if problem:
        await json_response(send, 400, {"type": "error", "error": {"type": "invalid_request_error",
                                                                   "message": problem}})
        return
    thinking = _thinking_words(body, script)
    tool = pick_tool(script, body.get("tools"))
    words = script.words()
    stop_reason = "tool_use" if tool is not None else "end_turn"
    if tool is None and len(words) > body["max_tokens"]:
        words, stop_reason = words[: body["max_tokens"]], "max_tokens"
    output_tokens = (TOOL_OUTPUT_TOKENS if tool is not None else len(words)) + len(thinking)
    usage = _usage(body, script, output_tokens)
    message_id = "msg_sim_" + uuid.uuid4().hex[:24]
    if not body.get("stream"):
        await asyncio.sleep((script.first_token_ms + script.gap_ms * max(len(words) - 1, 0)) / 1000)
        content = [{"type": "thinking", "thinking": "".join(thinking), "signature": SIGNATURE}] if thinking else []
        content += [_tool_block(tool)] if tool is not None else [{"type": "text", "text": "".join(words)}]
        await json_response(send, 200, _message(body, message_id, content, stop_reason, usage))
        return

    await start_event_stream(send)
    start_usage = dict(usage, output_tokens=1)  # as Anthropic does: the final count comes in message_delta
    await _event(send, "message_start", {"message": _message(body, message_id, [], None, start_usage)})
    block = await _stream_thinking(send, thinking)
    if tool is not None:
        await _stream_tool(send, script, tool, block)
    elif not await _stream_text(send, script, words, block):
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
    return thinking_problem(body)


def claude_version(model: object) -> tuple[int, int] | None:
    """(major, minor) from a Claude model name, or None for a name that carries no version."""
    match = _VERSION.search(model) if isinstance(model, str) else None
    if match is None:
        return None
    major, minor, old_major, old_minor = match.groups()
    if major is not None:
        return int(major), int(minor or 0)
    return int(old_major), int(old_minor or 0)


def thinking_problem(body: dict) -> str | None:
    """What Anthropic refuses about `thinking` and what must go with it, or None."""
    thinking = body.get("thinking")
    if thinking is None:
        return None
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
        return "thinking: Input tag does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'"
    kind = thinking["type"]
    if kind == "disabled":
        return None
    version = claude_version(body.get("model"))
    problem = _enabled_problem(thinking, body, version) if kind == "enabled" else _adaptive_problem(body, version)
    if problem:
        return problem
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        return ("temperature may only be set to 1 when thinking is enabled or in adaptive mode. Please consult our "
                "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking")
    top_p = body.get("top_p")
    if isinstance(top_p, int | float) and top_p < 0.95:
        return "top_p must be greater than or equal to 0.95 or unset when thinking is enabled"
    tool_choice = body.get("tool_choice")
    if isinstance(tool_choice, dict) and tool_choice.get("type") in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    return _final_assistant_problem(body.get("messages") or [])


def _enabled_problem(thinking: dict, body: dict, version: tuple[int, int] | None) -> str | None:
    if version is not None and version >= (4, 7):
        return ("thinking.type.enabled is not supported for this model. Use thinking.type.adaptive and "
                "output_config.effort to control thinking behavior.")
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool):
        return "thinking.enabled.budget_tokens: Field required"
    if budget < 1024:
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if budget >= body["max_tokens"]:
        return ("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at "
                "https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size")
    return None


def _adaptive_problem(body: dict, version: tuple[int, int] | None) -> str | None:
    if version is None or version < (4, 6):
        return "adaptive thinking is not supported on this model"
    output_config = body.get("output_config")
    effort = output_config.get("effort") if isinstance(output_config, dict) else None
    if effort is not None and effort not in EFFORTS:
        return "output_config.effort: Input should be 'low', 'medium', 'high' or 'max'"
    return None


def _final_assistant_problem(messages: list) -> str | None:
    """With thinking on, the last assistant message, when it is still being answered (a prefill, or the tool
    results that follow it), must start with the thinking block Anthropic signed."""
    last = max((i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"),
               default=None)
    if last is None:
        return None
    after = messages[last + 1:]
    answering = not after or any(isinstance(block, dict) and block.get("type") == "tool_result"
                                 for message in after for block in _blocks(message))
    blocks = _blocks(messages[last])
    first = blocks[0].get("type") if blocks and isinstance(blocks[0], dict) else "text"
    if answering and first not in ("thinking", "redacted_thinking"):
        return _FINAL_ASSISTANT.format(index=last, found=first)
    return None


def _blocks(message: object) -> list:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content if isinstance(content, list) else []


def _thinking_words(body: dict, script: Script) -> list[str]:
    """The thinking to send first: none unless the request turned thinking on."""
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return []
    return script.with_overrides({"reasoning_tokens": script.reasoning_tokens or DEFAULT_THINKING_WORDS}
                                 ).reasoning_words()


async def _stream_thinking(send: Send, words: list[str]) -> int:
    """The thinking block, as block 0 (thinking_delta, then signature_delta); the index of the next block."""
    if not words:
        return 0
    await _event(send, "content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": "",
                                                                             "signature": ""}})
    for word in words:
        await _event(send, "content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": word}})
    await _event(send, "content_block_delta", {"index": 0, "delta": {"type": "signature_delta",
                                                                     "signature": SIGNATURE}})
    await _event(send, "content_block_stop", {"index": 0})
    return 1


async def _stream_text(send: Send, script: Script, words: list[str], index: int = 0) -> bool:
    """The text block; False when the script ended the stream early with an error event."""
    await _event(send, "content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
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
        delta = {"type": "text_delta", "text": word}
        await _event(send, "content_block_delta", {"index": index, "delta": delta})
    await _event(send, "content_block_stop", {"index": index})
    return True


async def _stream_tool(send: Send, script: Script, tool: dict, index: int = 0) -> None:
    block = _tool_block(tool)
    arguments = json.dumps(block["input"])
    await _event(send, "content_block_start", {"index": index, "content_block": dict(block, input={})})
    await _event(send, "ping", {})
    if script.first_token_ms:
        await asyncio.sleep(script.first_token_ms / 1000)
    for start in range(0, len(arguments), 8):
        delta = {"type": "input_json_delta", "partial_json": arguments[start:start + 8]}
        await _event(send, "content_block_delta", {"index": index, "delta": delta})
    await _event(send, "content_block_stop", {"index": index})


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
