"""The Responses API end to end: the official SDK as the client, the gateway in between, every provider."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import GATEWAY_KEY

SYSTEM_TOOLS = ["end_call", "language_detection", "transfer_to_agent", "transfer_to_number", "skip_turn",
                "play_keypad_touch_tone", "voicemail_detection"]


def responses_tools() -> list[dict]:
    return [{"type": "function", "name": name, "description": f"ElevenLabs system tool {name}",
             "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]},
             "strict": False} for name in SYSTEM_TOOLS]


MODELS = ["simulator/echo", "openai/gpt-sim", "anthropic/claude-sim"]


@pytest.mark.parametrize("model", MODELS)
def test_streamed_text_through_every_adapter(gateway, model):
    stream = gateway.client().responses.create(model=model, input="hello", stream=True)
    events = list(stream)
    types = [event.type for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    for expected in ("response.output_item.added", "response.content_part.added", "response.output_text.delta",
                     "response.output_text.done", "response.content_part.done", "response.output_item.done"):
        assert expected in types
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text.startswith("(simulated) This is a simulated reply")
    completed = events[-1].response
    assert completed.status == "completed" and completed.output_text == text
    usage = completed.usage
    assert usage.output_tokens > 0 and usage.input_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens is not None
    assert usage.output_tokens_details.reasoning_tokens is not None
    [record] = gateway.records
    assert record.api == "responses" and record.status == 200 and record.outcome == "stop" and record.stream
    assert record.completion_tokens == usage.output_tokens and record.ttft_ms is not None


@pytest.mark.parametrize("model", MODELS)
def test_stream_helper_and_system_tool_function_call(gateway, model):
    with gateway.client().responses.stream(model=model, input="bye", tools=responses_tools(),
                                           extra_body={"simulator": {"tool_call": "end_call"}}) as stream:
        final = stream.get_final_response()
    [call] = [item for item in final.output if item.type == "function_call"]
    assert call.name == "end_call" and call.call_id and json.loads(call.arguments) == {"reason": "simulated"}
    [record] = gateway.records
    assert record.tool_calls == ["end_call"] and record.outcome == "tool_calls"


@pytest.mark.parametrize("model", MODELS)
def test_not_streamed_response_object(gateway, model):
    response = gateway.client().responses.create(model=model, input=[
        {"role": "developer", "content": "be brief"},
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]}])
    assert response.object == "response" and response.status == "completed"
    assert response.output_text.startswith("(simulated)")
    assert response.usage.output_tokens > 0
    [record] = gateway.records
    assert record.api == "responses" and not record.stream


def test_function_call_output_history_reaches_the_upstream_as_chat(gateway, sim_app):
    gateway.client().responses.create(model="openai/gpt-sim", tools=responses_tools(), input=[
        {"role": "user", "content": "transfer me"},
        {"type": "function_call", "call_id": "call_1", "name": "transfer_to_number", "arguments": '{"reason":"x"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "transferred"},
    ])
    messages = sim_app.requests[-1]["messages"]
    assert messages[1]["role"] == "assistant" and messages[1]["tool_calls"][0]["id"] == "call_1"
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "transferred"}
    assert sim_app.requests[-1]["tools"][0]["function"]["name"] == "end_call"


def test_errors_before_the_first_byte_are_openai_error_bodies(gateway):
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        unauthenticated = client.post("/responses", json={"model": "simulator/echo", "input": "x"})
        stateful = client.post("/responses", headers={"authorization": f"Bearer {GATEWAY_KEY}"},
                               json={"model": "simulator/echo", "input": "x", "previous_response_id": "resp_1"})
        builtin = client.post("/responses", headers={"authorization": f"Bearer {GATEWAY_KEY}"},
                              json={"model": "simulator/echo", "input": "x", "tools": [{"type": "web_search"}]})
        upstream = client.post("/responses", headers={"authorization": f"Bearer {GATEWAY_KEY}"},
                               json={"model": "simulator/echo", "input": "x", "stream": True,
                                     "simulator": {"fail_status": 503}})
    assert unauthenticated.status_code == 401 and unauthenticated.json()["error"]["code"] == "invalid_api_key"
    assert stateful.status_code == 400 and "whole conversation" in stateful.json()["error"]["message"]
    assert builtin.status_code == 400 and "web_search" in builtin.json()["error"]["message"]
    assert upstream.status_code == 502 and upstream.headers["content-type"].startswith("application/json")
    assert [r.api for r in gateway.records] == ["responses"] * 4


def test_failure_after_the_first_byte_is_response_failed(gateway):
    stream = gateway.client().responses.create(model="openai/gpt-sim", input="x", stream=True,
                                               extra_body={"simulator": {"tokens": 8, "error_after": 3}})
    events = list(stream)
    assert any(event.type == "response.output_text.delta" for event in events)
    assert events[-1].type == "response.failed" and events[-1].response.error.message
    assert gateway.records[-1].status == 502


def test_fallback_before_the_first_byte_on_responses(gateway):
    stream = gateway.client().responses.create(model="openai/fail-502", input="x", stream=True,
                                               extra_headers={"x-switchboard-fallbacks": "anthropic/claude-sim"})
    events = list(stream)
    assert events[-1].type == "response.completed" and events[-1].response.output_text.startswith("(simulated)")
    [record] = gateway.records
    assert record.provider == "anthropic" and [a["outcome"] for a in record.attempts][-1] == "ok"


def test_buffer_words_on_responses_are_an_output_text_delta(gateway):
    stream = gateway.client().responses.create(model="openai/slow-400", input="x", stream=True,
                                               extra_headers={"x-switchboard-buffer-after-ms": "100"})
    events = list(stream)
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert deltas[0] == "... " and "".join(deltas[1:]).startswith("(simulated)")
    assert events[-1].type == "response.completed"
    assert gateway.records[-1].buffer_words
