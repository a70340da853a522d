"""The Anthropic adapter: pure request/response translation, then streams over a real loopback socket
from the simulated Anthropic Messages API, every chunk checked against the official OpenAI SDK types."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest
import uvicorn
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from switchboard.providers import _translate, anthropic
from switchboard.providers.anthropic.config import AnthropicConfig
from switchboard.providers.anthropic.stream import finish_reason
from switchboard.providers.transport.client import UpstreamClient
from switchboard.simulator import SimulatorApp
from switchboard.wire.chat import Route, UpstreamError

CONFIG = AnthropicConfig(default_max_tokens=321)
ADAPTER = anthropic.create(CONFIG)
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["c", "f"]}}}}}


def _request(**fields) -> dict:
    return anthropic.messages_request({"messages": [{"role": "user", "content": "hi"}], **fields},
                                      "claude-sim", CONFIG, stream=True)


# --- request translation ---------------------------------------------------------------------------


def test_system_and_developer_messages_become_one_system_text():
    system, messages = anthropic.translate_messages([
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Speak French."}]},
        {"role": "user", "content": "Bonjour"},
        {"role": "system", "content": "Never shout."},
    ])
    assert system == "Be brief.\n\nSpeak French.\n\nNever shout."
    assert messages == [{"role": "user", "content": "Bonjour"}]


def test_assistant_tool_calls_and_tool_results_round_trip():
    _, messages = anthropic.translate_messages([
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": "{not json"}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21C"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_3", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_3", "content": "9C"},
    ])
    assert messages[1] == {"role": "assistant", "content": [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
    ]}
    assert messages[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "21C"},
    ]}
    assert messages[3]["content"] == [
        {"type": "tool_use", "id": "call_3", "name": "get_weather", "input": {}}]
    assert messages[4] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_3", "content": "9C"}]}
    assert len(messages) == 5


def test_user_parts_with_images():
    _, messages = anthropic.translate_messages([{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "low"}},
    ]}])
    assert messages[0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize("part", [
    {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}},
    {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}},
    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
])
def test_unusable_user_parts_are_a_400(part):
    from switchboard.wire.errors import GatewayError

    with pytest.raises(GatewayError) as caught:
        anthropic.translate_messages([{"role": "user", "content": [part]}])
    assert caught.value.status == 400


def test_tools_translate_with_default_schema():
    bare = {"type": "function", "function": {"name": "hang_up"}}
    payload = _request(tools=[WEATHER_TOOL, bare, {"type": "custom", "custom": {"name": "x"}}])
    assert payload["tools"] == [
        {"name": "get_weather", "description": "Weather for a city",
         "input_schema": WEATHER_TOOL["function"]["parameters"]},
        {"name": "hang_up", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in payload


@pytest.mark.parametrize(("tool_choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None,
     {"type": "tool", "name": "get_weather"}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("none", False, {"type": "none"}),
    ("auto", True, {"type": "auto"}),
])
def test_every_tool_choice_form(tool_choice, parallel, expected):
    fields = {"tools": [WEATHER_TOOL], "tool_choice": tool_choice}
    if parallel is not None:
        fields["parallel_tool_calls"] = parallel
    assert _request(**fields)["tool_choice"] == expected


def test_tool_choice_without_tools_is_not_sent():
    assert "tool_choice" not in _request(tool_choice="required")


def test_scalars_stop_and_dropped_fields():
    payload = _request(stop="END", temperature=1.7, top_p=0.9, user="caller-42", stream_options={"a": 1}, n=2,
                       seed=7, logprobs=True, presence_penalty=0.5, frequency_penalty=0.5,
                       response_format={"type": "json_object"}, simulator={"tokens": 3})
    assert payload == {"model": "claude-sim", "max_tokens": 321,
                       "messages": [{"role": "user", "content": "hi"}],
                       "stop_sequences": ["END"], "temperature": 1.0, "top_p": 0.9,
                       "metadata": {"user_id": "caller-42"}, "simulator": {"tokens": 3}, "stream": True}
    assert _request(stop=["a", "b"])["stop_sequences"] == ["a", "b"]
    assert _request(temperature=0.3)["temperature"] == 0.3


def test_max_tokens_default_and_overrides():
    assert _request()["max_tokens"] == 321
    assert _request(max_tokens=50)["max_tokens"] == 50
    assert _request(max_completion_tokens=70)["max_tokens"] == 70
    assert _request(max_tokens=True)["max_tokens"] == 321


# --- reasoning_effort -> extended thinking ------------------------------------------------------------


@pytest.mark.parametrize(("model", "version"), [
    ("claude-opus-4-7", (4, 7)), ("claude-sonnet-4-6", (4, 6)), ("claude-sonnet-4-5-20250929", (4, 5)),
    ("claude-opus-4-20250514", (4, 0)), ("claude-opus-4-1-20250805", (4, 1)), ("claude-sonnet-5", (5, 0)),
    ("claude-opus-5-5", (5, 5)), ("claude-3-7-sonnet-20250219", (3, 7)), ("claude-3-haiku-20240307", (3, 0)),
    ("claude-haiku-4-5", (4, 5)), ("claude-sim", None), ("gpt-4o", None)])
def test_the_claude_version_comes_from_the_model_name(model, version):
    assert _translate.claude_version(model) == version


def _thinking(model: str = "claude-sonnet-4-5", **fields) -> dict:
    payload = anthropic.messages_request({"messages": [{"role": "user", "content": "hi"}], **fields}, model, CONFIG,
                                         stream=True)
    return {name: payload[name] for name in ("max_tokens", "thinking", "output_config", "temperature", "top_p")
            if name in payload}


@pytest.mark.parametrize(("effort", "older", "adaptive"), [
    ("low", {"type": "enabled", "budget_tokens": 1024}, "low"),
    ("medium", {"type": "enabled", "budget_tokens": 4096}, "medium"),
    ("high", {"type": "enabled", "budget_tokens": 16384}, "high"),
    ("xhigh", {"type": "enabled", "budget_tokens": 32768}, "max"),
    ("max", {"type": "enabled", "budget_tokens": 32768}, "max")])
def test_each_effort_as_a_budget_on_older_claude_and_adaptive_on_4_6_and_later(effort, older, adaptive):
    budget = _translate.THINKING_BUDGETS[effort]
    assert _thinking(reasoning_effort=effort) == {"max_tokens": 321 + budget, "thinking": older}
    for model in ("claude-sonnet-4-6", "claude-opus-4-7", "claude-sonnet-5-20270101"):
        assert _thinking(model, reasoning_effort=effort) == {
            "max_tokens": 321 + budget, "thinking": {"type": "adaptive"}, "output_config": {"effort": adaptive}}


@pytest.mark.parametrize("effort", ["none", "minimal", None])
def test_none_minimal_and_absent_leave_thinking_off(effort):
    assert _thinking("claude-opus-4-7", reasoning_effort=effort) == {"max_tokens": 321}


@pytest.mark.parametrize("effort", ["extreme", "", 1, True, ["high"], {"effort": "high"}])
def test_an_effort_openai_does_not_define_is_a_400(effort):
    from switchboard.wire.errors import GatewayError

    with pytest.raises(GatewayError) as caught:
        _thinking(reasoning_effort=effort)
    assert (caught.value.status, caught.value.param, caught.value.code) == (400, "reasoning_effort",
                                                                          "invalid_reasoning_effort")


def test_the_client_s_max_tokens_stays_and_halves_into_the_budget():
    assert _thinking(reasoning_effort="max", max_tokens=100000)["thinking"]["budget_tokens"] == 32768
    assert _thinking(reasoning_effort="high", max_completion_tokens=5000, max_tokens=99) == {
        "max_tokens": 5000, "thinking": {"type": "enabled", "budget_tokens": 2500}}
    assert _thinking(reasoning_effort="low", max_tokens=2048) == {
        "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    assert _thinking(reasoning_effort="low", max_tokens=2047) == {"max_tokens": 2047}  # under the minimum: off
    assert _thinking("claude-opus-4-7", reasoning_effort="high", max_tokens=500) == {
        "max_tokens": 500, "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}}


def test_with_thinking_temperature_stays_only_at_1_and_top_p_only_from_0_95():
    assert _thinking(reasoning_effort="low", temperature=0.7, top_p=0.9).keys() == {"max_tokens", "thinking"}
    assert _thinking(reasoning_effort="low", temperature=2, top_p=0.95)["temperature"] == 1.0  # capped to 1, kept
    assert _thinking(reasoning_effort="low", temperature=1, top_p=0.95)["top_p"] == 0.95
    assert _thinking(temperature=0.7, top_p=0.9) == {"max_tokens": 321, "temperature": 0.7, "top_p": 0.9}


@pytest.mark.parametrize(("tool_choice", "thinks"), [
    ("required", False), ({"type": "function", "function": {"name": "get_weather"}}, False), ("auto", True),
    ("none", True), (None, True)])
def test_a_forced_tool_turns_thinking_off(tool_choice, thinks):
    fields = {"tools": [WEATHER_TOOL], "reasoning_effort": "high"}
    if tool_choice is not None:
        fields["tool_choice"] = tool_choice
    assert ("thinking" in _thinking(**fields)) is thinks
    assert "thinking" in _thinking(tool_choice="required", reasoning_effort="high")  # no tools: nothing forced


CALL = {"role": "assistant", "content": "Checking.", "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
RESULT = {"role": "tool", "tool_call_id": "call_1", "content": "18C"}
ASK = {"role": "user", "content": "Weather in Paris?"}


@pytest.mark.parametrize(("messages", "thinks"), [
    ([ASK], True),
    ([ASK, CALL, RESULT], False),  # the tool-use turn in progress
    ([ASK, CALL, RESULT, RESULT], False),
    ([ASK, CALL, RESULT, {"role": "user", "content": "And Rome?"}], False),  # still answering the tool call
    ([ASK, CALL, RESULT, {"role": "assistant", "content": "18C."}, {"role": "user", "content": "Thanks"}], True),
    ([ASK, {"role": "assistant", "content": "It is"}], False),  # a prefill
    ([ASK, CALL], False),  # ends with the assistant
    ([{"role": "assistant", "content": "Hello!"}, ASK], True),  # an agent's greeting is no prefill
])
def test_tool_use_turns_in_progress_and_prefills_answer_without_thinking(messages, thinks):
    payload = anthropic.messages_request({"messages": messages, "tools": [WEATHER_TOOL], "reasoning_effort": "low"},
                                         "claude-opus-4-7", CONFIG, stream=True)
    assert ("thinking" in payload) is thinks and ("output_config" in payload) is thinks


def test_a_message_with_thinking_gives_reasoning_content_and_drops_signatures_and_redacted_thinking():
    completion = anthropic.completion_from_message({
        "id": "msg_t", "type": "message", "model": "claude-opus-4-7", "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 20},
        "content": [{"type": "thinking", "thinking": "Let me see. ", "signature": "sig-secret-ish"},
                    {"type": "redacted_thinking", "data": "ENCRYPTED-BLOB"},
                    {"type": "thinking", "thinking": "391.", "signature": "sig-2"},
                    {"type": "text", "text": "It is 391."}]}, created=1)
    ChatCompletion.model_validate(completion)
    message = completion["choices"][0]["message"]
    assert message["content"] == "It is 391." and message["reasoning_content"] == "Let me see. 391."
    assert "sig-" not in json.dumps(completion) and "ENCRYPTED" not in json.dumps(completion)
    assert "reasoning_content" not in anthropic.completion_from_message(
        {"id": "m", "content": [{"type": "text", "text": "hi"}]})["choices"][0]["message"]


def test_the_translator_drops_signature_deltas_and_redacted_thinking_blocks():
    translator = anthropic.StreamTranslator("claude-x", created=1)
    events = [
        {"type": "message_start", "message": {"id": "msg_r", "model": "claude-x", "usage": {"input_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "redacted_thinking", "data": "BLOB"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "thinking", "thinking": "",
                                                                      "signature": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "thinking_delta", "thinking": "Hm."}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "signature_delta", "signature": "SIG"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Yes."}},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    chunks = [chunk for event in events for chunk in translator.feed(event)]
    assert [c["choices"][0]["delta"] for c in chunks if c["choices"]] == [
        {"role": "assistant", "content": ""}, {"reasoning_content": "Hm."}, {"content": "Yes."}, {}]
    assert "SIG" not in json.dumps(chunks) and "BLOB" not in json.dumps(chunks)


# --- stream translation without I/O ---------------------------------------------------------------


def test_translator_gives_a_tool_without_input_empty_object_arguments():
    """Anthropic streams a no-argument tool as input {} plus empty fragments; clients json.loads the result."""
    translator = anthropic.StreamTranslator("fallback", created=1)
    events = [
        {"type": "message_start", "message": {"id": "msg_2", "model": "claude-x", "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_2", "name": "skip_turn", "input": {}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    chunks = [chunk for event in events for chunk in translator.feed(event)]
    arguments = "".join(call["function"].get("arguments") or "" for c in chunks if c["choices"]
                        for call in c["choices"][0]["delta"].get("tool_calls") or ())
    assert json.loads(arguments) == {}


def test_translator_relays_thinking_as_reasoning_and_numbers_tools_from_zero():
    translator = anthropic.StreamTranslator("fallback", created=1)
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {
            "input_tokens": 10, "cache_read_input_tokens": 90, "cache_creation_input_tokens": 5,
            "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "s"}},
        {"type": "ping"},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Sure."}},
        {"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}},
        {"type": "content_block_delta", "index": 2,
         "delta": {"type": "input_json_delta", "partial_json": '{"ci'}},
        {"type": "content_block_delta", "index": 2,
         "delta": {"type": "input_json_delta", "partial_json": 'ty":1}'}},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}},
        {"type": "message_stop"},
    ]
    chunks = [chunk for event in events for chunk in translator.feed(event)]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "hmm"},
        {"content": "Sure."},
        {"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": 'ty":1}'}}]},
        {},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 105, "completion_tokens": 30, "total_tokens": 135,
                                   "prompt_tokens_details": {"cached_tokens": 90, "cache_creation_tokens": 5}}
    assert {c["id"] for c in chunks} == {"chatcmpl-msg_1"} and {c["model"] for c in chunks} == {"claude-x"}
    assert translator.done
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)


@pytest.mark.parametrize(("stop_reason", "finish"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("pause_turn", "stop"), (None, "stop"),
])
def test_finish_reasons(stop_reason, finish):
    assert finish_reason(stop_reason) == finish


# --- over a real socket ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def simulator():
    app = SimulatorApp()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.started:
        assert time.monotonic() < deadline, "simulator did not start"
        time.sleep(0.01)
    yield app, f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(5)
    sock.close()


def _route(base_url: str) -> Route:
    return Route(provider="anthropic", adapter="anthropic", model="claude-sim", base_url=base_url,
                 api_key="sk-ant-test-fake", requested_model="anthropic/claude-sim")


def _stream(base_url: str, body: dict) -> list[dict]:
    """Every chunk the adapter yields, checked against the OpenAI SDK's type and its own bytes."""
    async def run() -> list[dict]:
        chunks = []
        async with UpstreamClient(connect_timeout=5, read_timeout=5) as client:
            async for raw, chunk in _flat(ADAPTER.stream(client, _route(base_url), body)):
                assert json.loads(raw) == chunk
                ChatCompletionChunk.model_validate(chunk)
                chunks.append(chunk)
        return chunks

    return asyncio.run(run())


def _stream_until_error(base_url: str, body: dict) -> tuple[list[dict], UpstreamError]:
    chunks: list[dict] = []

    async def run() -> None:
        async with UpstreamClient(connect_timeout=5, read_timeout=5) as client:
            async for _raw, chunk in _flat(ADAPTER.stream(client, _route(base_url), body)):
                chunks.append(chunk)

    with pytest.raises(UpstreamError) as caught:
        asyncio.run(run())
    return chunks, caught.value


def _complete(base_url: str, body: dict) -> dict:
    async def run() -> dict:
        async with UpstreamClient(connect_timeout=5, read_timeout=5) as client:
            return await ADAPTER.complete(client, _route(base_url), body)

    return asyncio.run(run())


def _body(**fields) -> dict:
    return {"model": "anthropic/claude-sim", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
            **fields}


def test_text_stream_over_socket(simulator):
    app, base_url = simulator
    chunks = _stream(base_url, _body(simulator={"tokens": 6, "prompt_tokens": 40, "cached_tokens": 30}))

    sent = app.requests[-1]
    headers = app.request_headers[-1]
    assert headers["x-api-key"] == "sk-ant-test-fake" and headers["anthropic-version"] == "2023-06-01"
    assert sent["model"] == "claude-sim" and sent["max_tokens"] == 321 and sent["system"] == "Be brief."
    assert "stream_options" not in sent

    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.startswith("(simulated)") and len(text.split()) == 6
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 40, "completion_tokens": 6, "total_tokens": 46,
                                   "prompt_tokens_details": {"cached_tokens": 30, "cache_creation_tokens": 0}}
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-msg_")
    assert {c["model"] for c in chunks} == {"claude-sim"}


def test_tool_call_stream_over_socket(simulator):
    _, base_url = simulator
    chunks = _stream(base_url, _body(tools=[WEATHER_TOOL], simulator={"tool_call": True}))

    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    calls = [call for delta in deltas for call in delta.get("tool_calls") or []]
    assert calls[0]["id"].startswith("toolu_") and calls[0]["function"]["name"] == "get_weather"
    assert {call["index"] for call in calls} == {0}
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert json.loads(arguments) == {"city": "simulated", "unit": "c"}
    assert len(calls) > 2  # the arguments really arrived in fragments
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_max_tokens_stop_maps_to_length(simulator):
    _, base_url = simulator
    chunks = _stream(base_url, _body(max_tokens=3, simulator={"tokens": 10}))
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


def test_upstream_4xx_raises_before_first_chunk(simulator):
    _, base_url = simulator
    chunks, error = _stream_until_error(base_url, _body(simulator={"fail_status": 429}))
    assert chunks == []
    assert error.status == 429 and error.upstream_status == 429 and error.kind == "http_error"
    assert "simulated failure 429" in error.message


@pytest.mark.parametrize("fault", [{"error_after": 3}, {"cut_after": 3}])
def test_mid_stream_failure_raises_502(simulator, fault):
    _, base_url = simulator
    chunks, error = _stream_until_error(base_url, _body(simulator={"tokens": 8, **fault}))
    assert len(chunks) == 4  # the role chunk and three words
    assert error.status == 502 and error.kind == "stream_error"
    if "error_after" in fault:
        assert "Overloaded" in error.message


def test_non_streaming_completion(simulator):
    _, base_url = simulator
    completion = _complete(base_url, _body(stream=False, simulator={"tokens": 5, "cached_tokens": 2}))
    ChatCompletion.model_validate(completion)
    choice = completion["choices"][0]
    assert choice["message"]["content"].startswith("(simulated)") and choice["finish_reason"] == "stop"
    assert completion["id"].startswith("chatcmpl-msg_") and completion["model"] == "claude-sim"
    usage = completion["usage"]
    assert usage["completion_tokens"] == 5 and usage["prompt_tokens_details"]["cached_tokens"] == 2
    assert usage["total_tokens"] == usage["prompt_tokens"] + 5


def test_non_streaming_tool_call(simulator):
    _, base_url = simulator
    completion = _complete(base_url, _body(stream=False, tools=[WEATHER_TOOL], simulator={"tool_call": True}))
    ChatCompletion.model_validate(completion)
    message = completion["choices"][0]["message"]
    assert message["content"] is None and completion["choices"][0]["finish_reason"] == "tool_calls"
    call = message["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "simulated", "unit": "c"}


def test_non_streaming_4xx(simulator):
    _, base_url = simulator
    with pytest.raises(UpstreamError) as caught:
        _complete(base_url, _body(stream=False, simulator={"fail_status": 400}))
    assert caught.value.status == 400


def test_simulator_rejects_missing_max_tokens(simulator):
    _, base_url = simulator
    response = httpx.post(f"{base_url}/v1/messages", json={"model": "claude-sim", "messages": []}, timeout=5)
    assert response.status_code == 400
    assert response.json() == {"type": "error", "error": {"type": "invalid_request_error",
                                                          "message": "max_tokens: Field required"}}


def test_a_thinking_stream_over_socket(simulator):
    """The simulated Anthropic streams thinking (thinking_delta, then signature_delta) before the text."""
    app, base_url = simulator
    route = Route(provider="anthropic", adapter="anthropic", model="claude-opus-4-7", base_url=base_url,
                  api_key="sk-ant-test-fake", requested_model="anthropic/claude-opus-4-7")

    async def run() -> list[bytes]:
        async with UpstreamClient(connect_timeout=5, read_timeout=5) as client:
            return [raw async for batch in ADAPTER.stream(client, route, _body(reasoning_effort="high"))
                    for raw, _ in batch]

    raws = asyncio.run(run())
    assert app.requests[-1]["thinking"] == {"type": "adaptive"}
    deltas = [json.loads(raw)["choices"][0]["delta"] for raw in raws if json.loads(raw)["choices"]]
    assert [d for d in deltas if "reasoning_content" in d] == [
        {"reasoning_content": "Thinking"}, {"reasoning_content": " it over"}, {"reasoning_content": " it over"}]
    first_word = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert all("reasoning_content" not in d for d in deltas[first_word:])
    assert b"signature" not in b"".join(raws)


@pytest.mark.parametrize(("fields", "model", "message"), [
    ({"thinking": {"type": "enabled", "budget_tokens": 1023}, "max_tokens": 4000}, "claude-sonnet-4-5",
     "greater than or equal to 1024"),
    ({"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 2048}, "claude-sonnet-4-5",
     "`max_tokens` must be greater than `thinking.budget_tokens`"),
    ({"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 4096}, "claude-opus-4-7",
     "thinking.type.enabled is not supported for this model"),
    ({"thinking": {"type": "adaptive"}, "max_tokens": 4096}, "claude-sonnet-4-5", "adaptive thinking is not supported"),
    ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "xhigh"}, "max_tokens": 4096}, "claude-opus-4-7",
     "output_config.effort"),
    ({"thinking": {"type": "adaptive"}, "temperature": 0.5, "max_tokens": 4096}, "claude-opus-4-7",
     "temperature may only be set to 1"),
    ({"thinking": {"type": "adaptive"}, "top_p": 0.9, "max_tokens": 4096}, "claude-opus-4-7", "top_p must be"),
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 4096, "tool_choice": {"type": "any"},
      "tools": [{"name": "t", "input_schema": {"type": "object"}}]}, "claude-sonnet-4-5",
     "Thinking may not be enabled when tool_choice forces tool use."),
    ({"thinking": {"type": "adaptive"}, "max_tokens": 4096, "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "t", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}]},
     "claude-opus-4-7", "a final `assistant` message must start with a thinking block"),
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 4096, "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "It is"}]},
     "claude-sonnet-4-5", "a final `assistant` message must start with a thinking block"),
])
def test_the_simulator_refuses_what_anthropic_refuses_with_thinking(simulator, fields, model, message):
    _, base_url = simulator
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **fields}
    response = httpx.post(f"{base_url}/v1/messages", json=body, timeout=5)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]


def test_translator_survives_malformed_events():
    translator = anthropic.StreamTranslator("claude-sim", created=1)
    for event in ({"type": "message_start", "message": "oops"}, {"type": "content_block_start", "index": [1]},
                  {"type": "content_block_delta", "delta": None}, {"type": "message_delta", "usage": [3]},
                  {"type": "no_such_event"}):
        for chunk in translator.feed(event):
            ChatCompletionChunk.model_validate(chunk)
    assert translator.feed({"type": "message_stop"})[0]["usage"]["total_tokens"] == 0


def test_stream_that_ends_before_message_stop_is_a_502():
    events = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_x","model":"m",'
              b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n')
    canned = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n" % len(events)
              + events)
    chunks: list[dict] = []

    async def run() -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(canned)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with UpstreamClient(connect_timeout=5, read_timeout=5) as client:
                route = _route(f"http://127.0.0.1:{port}")
                async for _raw, chunk in _flat(ADAPTER.stream(client, route, _body())):
                    chunks.append(chunk)
        finally:
            server.close()

    with pytest.raises(UpstreamError) as caught:
        asyncio.run(run())
    assert len(chunks) == 1 and caught.value.status == 502 and caught.value.kind == "stream_error"


async def _flat(batches):
    """The adapter yields a batch per upstream read; these tests look at the chunks one by one."""
    async for batch in batches:
        assert batch, "batches are never empty"
        for chunk in batch:
            yield chunk
