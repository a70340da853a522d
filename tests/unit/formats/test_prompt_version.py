"""Prompt versions: the same instructions and tools always give the same short hash, any change to them a new
one, and nothing else (the conversation, the client's spelling of the same prompt) moves it."""

from __future__ import annotations

import hashlib
import json

from switchboard.formats.chat_completions import chat_request, prompt_version
from switchboard.formats.responses.request import chat_body_from_responses

SYSTEM = "You are the support line of Acme Energy. Answer in one short sentence."
TOOL = {"type": "function", "function": {
    "name": "book_slot", "description": "Book an appointment slot.",
    "parameters": {"type": "object", "properties": {"date": {"type": "string"}}, "required": ["date"]}}}


def version(*messages: dict, tools: list | None = None) -> str | None:
    return prompt_version(list(messages), tools)


def system(text: str = SYSTEM, role: str = "system") -> dict:
    return {"role": role, "content": text}


def test_a_version_is_twelve_hex_characters_of_the_sha256_of_canonical_json():
    canonical = json.dumps({"instructions": [SYSTEM], "tools": [TOOL["function"]]}, sort_keys=True,
                           separators=(",", ":"))
    assert version(system(), tools=[TOOL]) == hashlib.sha256(canonical.encode()).hexdigest()[:12]
    # Pinned: a version must not change when the gateway is upgraded, or every chart of it would break in two.
    assert version(system(), tools=[TOOL]) == "78eb83748c31"
    assert version(system()) == "d7e80e049d7f"


def test_the_conversation_moving_on_keeps_the_version():
    first = version(system(), {"role": "user", "content": "My bill is high."}, tools=[TOOL])
    later = version(system(), {"role": "user", "content": "My bill is high."},
                    {"role": "assistant", "content": "Let me check.", "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "book_slot", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "ok"},
                    {"role": "user", "content": "Thanks."}, tools=[TOOL])
    assert first == later


def test_any_change_to_the_instructions_or_the_tools_is_a_new_version():
    base = version(system(), tools=[TOOL])
    renamed = {"type": "function", "function": {**TOOL["function"], "name": "book"}}
    described = {"type": "function", "function": {**TOOL["function"], "description": "Book a slot."}}
    stricter = {"type": "function", "function": {**TOOL["function"], "strict": True}}
    other = {"type": "function", "function": {"name": "end_call", "parameters": {"type": "object"}}}
    changed = [version(system(SYSTEM + " Be kind."), tools=[TOOL]), version(system()),
               version(system(), tools=[renamed]), version(system(), tools=[described]),
               version(system(), tools=[stricter]), version(system(), tools=[TOOL, other]),
               version(system(), tools=[other, TOOL]), version(system(), system("Speak French."), tools=[TOOL])]
    assert base not in changed and len(set(changed)) == len(changed)


def test_how_a_client_spells_the_same_prompt_does_not_matter():
    base = version(system(), tools=[TOOL])
    reordered = {"function": {"parameters": {"required": ["date"], "type": "object",
                                             "properties": {"date": {"type": "string"}}},
                              "description": "Book an appointment slot.", "name": "book_slot"}, "type": "function"}
    assert version(system(), tools=[reordered]) == base  # key order is not content
    assert version(system(role="developer"), tools=[TOOL]) == base  # o-series clients say developer
    cached = {"type": "text", "text": SYSTEM[20:], "cache_control": {"type": "ephemeral"}}
    parts = {"role": "system", "content": [{"type": "text", "text": SYSTEM[:20]}, cached]}
    assert version(parts, tools=[TOOL]) == base  # text parts are their text; a cache marker is not content


def test_no_instructions_and_no_tools_have_no_version():
    assert version({"role": "user", "content": "Hi"}) is None
    assert version({"role": "user", "content": "Hi"}, tools=[]) is None
    assert version({"role": "user", "content": "Hi"}, tools=[TOOL]) is not None


def test_chat_requests_and_responses_requests_agree_on_a_version():
    chat = chat_request({"model": "openai/gpt-4.1-mini", "tools": [TOOL],
                         "messages": [system(), {"role": "user", "content": "Hi"}]}, {})
    body, _ = chat_body_from_responses({"model": "openai/gpt-4.1-mini", "instructions": SYSTEM, "input": "Hi",
                                        "tools": [{"type": "function", **TOOL["function"]}]})
    responses = chat_request(body, {})
    assert chat.prompt_version == responses.prompt_version == version(system(), tools=[TOOL])


def test_the_version_is_hashed_once_and_not_while_the_request_is_parsed():
    chat = chat_request({"model": "m", "messages": [system(), {"role": "user", "content": "Hi"}]}, {})
    assert "prompt_version" not in vars(chat)  # parsing stays off the hash: it runs as the call ends
    assert chat.prompt_version == version(system())
    chat.body["messages"][0]["content"] = "changed later"
    assert chat.prompt_version == version(system())  # read once, then kept
