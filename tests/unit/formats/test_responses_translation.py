"""The Responses API translation (switchboard.formats.responses): requests to chat bodies, chat chunks to Responses
events, completions to Response objects. Every event and object is validated, strictly, against the
official openai SDK's own pydantic models, so a missing or mistyped field fails here before a client sees it."""

from __future__ import annotations

import json

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent

from switchboard.formats.chat_completions import chat_request
from switchboard.formats.responses.objects import response_from_completion, responses_usage
from switchboard.formats.responses.request import chat_body_from_responses
from switchboard.formats.responses.stream import ResponsesStream
from switchboard.wire.errors import GatewayError

STREAM_EVENT = pydantic.TypeAdapter(ResponseStreamEvent)
SYSTEM_TOOLS = ["end_call", "language_detection", "transfer_to_agent", "transfer_to_number", "skip_turn",
                "play_keypad_touch_tone", "voicemail_detection"]
RESPONSE_ID = "resp_test123"
CREATED = 1_767_000_000


def system_tools() -> list[dict]:
    """The seven ElevenLabs system tools, in the Responses function-tool shape ElevenLabs sends."""
    return [{"type": "function", "name": name, "description": f"ElevenLabs system tool {name}",
             "parameters": {"type": "object", "properties": {"reason": {"type": "string"}},
                            "required": ["reason"]}, "strict": False} for name in SYSTEM_TOOLS]


def translate(**fields) -> tuple[dict, dict]:
    return chat_body_from_responses({"model": "openai/gpt-sim", "input": "hi", **fields})


def events_of(raw: bytes) -> list[dict]:
    """Split SSE bytes into events, checking the framing and validating each against the SDK's model."""
    assert raw.endswith(b"\n\n")
    events = []
    for block in raw.decode().split("\n\n")[:-1]:
        event_line, data_line = block.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        payload = json.loads(data_line[len("data: "):])
        assert payload["type"] == event_line[len("event: "):]
        assert data_line[len("data: "):] == json.dumps(payload, separators=(",", ":"))  # compact JSON
        STREAM_EVENT.validate_python(payload)  # strict: every required field, every literal
        events.append(payload)
    return events


def types_of(events: list[dict]) -> list[str]:
    return [event["type"] for event in events]


def new_stream(**echo_fields) -> ResponsesStream:
    _, echo = translate(**echo_fields)
    return ResponsesStream(RESPONSE_ID, "openai/gpt-sim", CREATED, echo)


def chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> dict:
    """A chat.completion.chunk the way OpenAI sends it (usage null until the usage-only chunk)."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": CREATED, "model": "gpt-sim",
            "choices": choices, "usage": usage}


def call_delta(index: int, *, call_id: str | None = None, name: str | None = None, arguments: str = "") -> dict:
    call: dict = {"index": index, "function": {"arguments": arguments}}
    if call_id:
        call["id"], call["type"] = call_id, "function"
    if name:
        call["function"]["name"] = name
    return {"tool_calls": [call]}


USAGE = {"prompt_tokens": 120, "completion_tokens": 7, "total_tokens": 127,
         "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 0},
         "completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": 0}}


def run(stream: ResponsesStream, chunks: list[dict], usage: dict | None = None) -> list[dict]:
    raw = stream.start() + b"".join(stream.feed(item) for item in chunks) + stream.complete(usage)
    events = events_of(raw)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    return events


# --- request: input ---------------------------------------------------------------------------------


def test_string_input_and_instructions_become_system_then_user():
    chat, echo = translate(instructions="You are a voice agent.", input="Hello")
    assert chat["messages"] == [{"role": "system", "content": "You are a voice agent."},
                                {"role": "user", "content": "Hello"}]
    assert chat["model"] == "openai/gpt-sim"
    assert echo["instructions"] == "You are a voice agent."
    parsed = chat_request(chat, {})
    assert parsed.model == "openai/gpt-sim" and parsed.stream is False


def test_message_items_of_every_role_with_string_and_part_content():
    chat, _ = translate(input=[
        {"role": "developer", "content": "Speak French."},
        {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Bonjour"}]},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Salut !", "annotations": []}]},
        {"role": "user", "content": [{"type": "input_text", "text": "Look:"},
                                     {"type": "input_image", "image_url": "https://example.com/a.png",
                                      "detail": "low"}]},
    ])
    assert chat["messages"] == [
        {"role": "developer", "content": "Speak French."},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Bonjour"},
        {"role": "assistant", "content": "Salut !"},
        {"role": "user", "content": [{"type": "text", "text": "Look:"},
                                     {"type": "image_url",
                                      "image_url": {"url": "https://example.com/a.png", "detail": "low"}}]},
    ]
    chat_request(chat, {})


def test_function_calls_join_one_assistant_message_and_outputs_become_tool_messages():
    chat, _ = translate(input=[
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "get_weather",
         "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "id": "fc_2", "call_id": "call_b", "name": "get_weather", "arguments": ""},
        {"type": "function_call_output", "call_id": "call_a", "output": "18C"},
        {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "21"},
                                                                        {"type": "input_text", "text": "C"}]},
        {"type": "function_call", "call_id": "call_c", "name": "end_call", "arguments": '{"reason":"done"}'},
    ])
    assert chat["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "21C"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_c", "type": "function", "function": {"name": "end_call", "arguments": '{"reason":"done"}'}},
        ]},
    ]
    chat_request(chat, {})


def test_reasoning_items_are_dropped():
    chat, _ = translate(input=[{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
                               {"role": "user", "content": "hi"}])
    assert chat["messages"] == [{"role": "user", "content": "hi"}]


def test_input_file_with_data_becomes_a_chat_file_part():
    chat, _ = translate(input=[{"role": "user", "content": [
        {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,AAAA"}]}])
    assert chat["messages"][0]["content"] == [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAA", "filename": "a.pdf"}}]


# --- request: tools and parameters ------------------------------------------------------------------


def test_elevenlabs_system_tools_become_chat_function_tools_and_are_echoed_as_given():
    chat, echo = translate(tools=system_tools(), tool_choice="auto", parallel_tool_calls=False)
    assert [tool["function"]["name"] for tool in chat["tools"]] == SYSTEM_TOOLS
    assert chat["tools"][0] == {"type": "function", "function": {
        "name": "end_call", "description": "ElevenLabs system tool end_call",
        "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]},
        "strict": False}}
    assert chat["tool_choice"] == "auto" and chat["parallel_tool_calls"] is False
    assert [tool["name"] for tool in echo["tools"]] == SYSTEM_TOOLS
    assert echo["tools"][0]["type"] == "function" and echo["tools"][0]["strict"] is False
    assert echo["parallel_tool_calls"] is False
    assert len(chat_request(chat, {}).body["tools"]) == 7


def test_chat_shaped_tool_is_tolerated():
    chat, echo = translate(tools=[{"type": "function", "function": {"name": "skip_turn"}}])
    assert chat["tools"] == [{"type": "function", "function": {"name": "skip_turn"}}]
    assert echo["tools"][0]["name"] == "skip_turn"


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", "auto"), ("none", "none"), ("required", "required"),
    ({"type": "function", "name": "end_call"}, {"type": "function", "function": {"name": "end_call"}}),
])
def test_tool_choice(choice, expected):
    chat, echo = translate(tools=system_tools(), tool_choice=choice)
    assert chat["tool_choice"] == expected
    assert echo["tool_choice"] == choice
    chat_request(chat, {})


def test_tool_choice_and_parallel_calls_are_not_sent_without_tools():
    chat, echo = translate(tool_choice="none", parallel_tool_calls=True)
    assert "tool_choice" not in chat and "parallel_tool_calls" not in chat and "tools" not in chat
    assert echo["tool_choice"] == "none"


def test_sampling_limits_and_streaming():
    chat, echo = translate(temperature=0.4, top_p=0.9, max_output_tokens=200, user="caller-42", stream=True)
    assert (chat["temperature"], chat["top_p"], chat["max_tokens"], chat["user"]) == (0.4, 0.9, 200, "caller-42")
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    assert "max_output_tokens" not in chat
    assert (echo["temperature"], echo["top_p"], echo["max_output_tokens"], echo["user"]) == (0.4, 0.9, 200,
                                                                                              "caller-42")
    parsed = chat_request(chat, {})
    assert parsed.stream and parsed.include_usage


def test_not_streamed_has_no_stream_options():
    chat, _ = translate(stream=False)
    assert chat["stream"] is False and "stream_options" not in chat


@pytest.mark.parametrize(("text", "expected"), [
    ({"format": {"type": "text"}}, None),
    ({"format": {"type": "json_object"}}, {"type": "json_object"}),
    ({"format": {"type": "json_schema", "name": "answer", "strict": True, "description": "An answer",
                 "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}},
     {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "description": "An answer",
                                             "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}),
])
def test_text_format_becomes_response_format(text, expected):
    chat, echo = translate(text=text)
    assert chat.get("response_format") == expected
    assert echo["text"]["format"] == text["format"]


def test_reasoning_effort():
    chat, echo = translate(reasoning={"effort": "low", "summary": "auto"})
    assert chat["reasoning_effort"] == "low" and "reasoning" not in chat
    assert echo["reasoning"] == {"effort": "low", "summary": "auto"}


def test_metadata_is_echoed_not_forwarded_and_store_is_accepted():
    chat, echo = translate(metadata={"conversation_id": "conv_1"}, store=True)
    assert "metadata" not in chat and "store" not in chat
    assert echo["metadata"] == {"conversation_id": "conv_1"}
    assert echo["store"] is False  # nothing is stored, and the Response says so


def test_unknown_fields_are_ignored_but_elevenlabs_fields_pass_to_chat_request():
    chat, _ = translate(elevenlabs_extra_body={"customer_tier": "gold"}, user_id="caller-42",
                        simulator={"tool_call": "end_call"}, some_future_field={"x": 1}, include=["x"],
                        truncation="auto", service_tier="auto")
    assert chat["elevenlabs_extra_body"] == {"customer_tier": "gold"}
    assert chat["user_id"] == "caller-42" and chat["simulator"] == {"tool_call": "end_call"}
    for ignored in ("some_future_field", "include", "truncation", "service_tier", "input"):
        assert ignored not in chat
    parsed = chat_request(chat, {})
    assert parsed.extra_body == {"customer_tier": "gold"}
    assert parsed.body["user"] == "caller-42" and "elevenlabs_extra_body" not in parsed.body


def test_translation_does_not_change_the_request():
    body = {"model": "m", "input": [{"role": "user", "content": "hi"}], "tools": system_tools()}
    before = json.dumps(body, sort_keys=True)
    chat_body_from_responses(body)
    assert json.dumps(body, sort_keys=True) == before


# --- request: errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "param", "says"), [
    ({"previous_response_id": "resp_1"}, "previous_response_id", "whole conversation"),
    ({"conversation": "conv_1"}, "conversation", "whole conversation"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt", "Stored prompt"),
    ({"background": True}, "background", "Background"),
    ({"input": None}, "input", "'input' is required"),
    ({"input": 42}, "input", "string or an array"),
    ({"input": {"role": "user"}}, "input", "string or an array"),
    ({"input": []}, "input", "no messages"),
    ({"input": ["hi"]}, "input[0]", "must be an object"),
    ({"input": [{"content": "hi"}]}, "input[0]", "'role'"),
    ({"input": [{"role": "tool", "content": "hi"}]}, "input[0].role", "must be one of"),
    ({"input": [{"type": "message", "content": "hi"}]}, "input[0].role", "must be one of"),
    ({"input": [{"role": "user", "content": 5}]}, "input[0].content", "string or an array"),
    ({"input": [{"role": "user", "content": [{"text": "x"}]}]}, "input[0].content[0]", "'type'"),
    ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input[0].content[0]", "'text'"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0].type",
     "input_audio"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]},
     "input[0].content[0].image_url", "file_id"),
    ({"input": [{"role": "assistant", "content": [{"type": "input_image", "image_url": "https://x/a.png"}]}]},
     "input[0].content[0]", "only user"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_url": "https://x/a.pdf"}]}]},
     "input[0].content[0]", "file_url"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id", "call_id"),
    ({"input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]}, "input[0].name", "name"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}}]},
     "input[0].arguments", "JSON string"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id", "call_id"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": 3}]}, "input[0].output", "string"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image"}]}]},
     "input[0].output[0]", "text"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]", "stores no items"),
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type", "web_search_call"),
    ({"instructions": ["be brief"]}, "instructions", "string"),
    ({"tools": {"type": "function"}}, "tools", "array"),
    ({"tools": [{"type": "function"}]}, "tools[0].name", "name"),
    ({"tools": [{"type": "function", "name": "f", "parameters": "{}"}]}, "tools[0].parameters", "wrong type"),
    ({"tools": ["end_call"]}, "tools[0]", "'type': 'function'"),
    ({"tool_choice": {"type": "file_search"}}, "tool_choice", "'tool_choice' must be"),
    ({"tool_choice": "sometimes"}, "tool_choice", "'tool_choice' must be"),
    ({"parallel_tool_calls": "yes"}, "parallel_tool_calls", "true or false"),
    ({"max_output_tokens": 0}, "max_output_tokens", "integer"),
    ({"max_output_tokens": "100"}, "max_output_tokens", "integer"),
    ({"max_output_tokens": True}, "max_output_tokens", "integer"),
    ({"text": "json"}, "text", "object"),
    ({"text": {"format": {"type": "yaml"}}}, "text.format", "json_schema"),
    ({"text": {"format": {"type": "json_schema", "name": "a"}}}, "text.format", "'schema'"),
    ({"reasoning": "high"}, "reasoning", "object"),
    ({"reasoning": {"effort": 3}}, "reasoning.effort", "string"),
    ({"metadata": {"a": 1}}, "metadata", "string values"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "16"),
])
def test_invalid_requests_are_400_with_param(fields, param, says):
    with pytest.raises(GatewayError) as caught:
        translate(**fields)
    assert caught.value.status == 400
    assert caught.value.param == param
    assert says in caught.value.message
    assert caught.value.body()["error"]["type"] == "invalid_request_error"


BUILT_IN_TOOLS = ["web_search", "web_search_preview", "file_search", "computer_use_preview", "computer",
                  "code_interpreter", "image_generation", "mcp", "local_shell", "shell", "custom", "apply_patch"]


@pytest.mark.parametrize("kind", BUILT_IN_TOOLS)
def test_built_in_tools_are_refused_by_name(kind):
    with pytest.raises(GatewayError) as caught:
        translate(tools=[*system_tools(), {"type": kind}])
    assert caught.value.status == 400 and caught.value.param == "tools[7].type"
    assert f"'{kind}'" in caught.value.message and "function tools" in caught.value.message


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=4), max_leaves=12)
FIELD = st.sampled_from(["input", "tools", "tool_choice", "text", "reasoning", "instructions", "metadata",
                         "max_output_tokens", "parallel_tool_calls"])
ITEM = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning", "input_text"]) | JSON,
    "role": st.sampled_from(["user", "assistant", "system"]) | JSON, "content": JSON, "call_id": JSON,
    "name": JSON, "arguments": JSON, "output": JSON})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(FIELD, JSON, max_size=4), st.lists(ITEM, max_size=4))
def test_hostile_shapes_raise_only_gateway_errors(fields, items):
    for body in ({"model": "m", "input": items}, {"model": "m", "input": "hi", **fields}):
        try:
            chat, _ = chat_body_from_responses(body)
            chat_request(chat, {})
        except GatewayError as error:
            assert error.status == 400


# --- streaming ---------------------------------------------------------------------------------------


def test_start_is_created_then_in_progress_with_an_empty_response():
    stream = new_stream(instructions="Be brief.", metadata={"agent": "a1"})
    created, in_progress = events_of(stream.start())
    assert (created["type"], created["sequence_number"]) == ("response.created", 0)
    assert (in_progress["type"], in_progress["sequence_number"]) == ("response.in_progress", 1)
    for event in (created, in_progress):
        response = event["response"]
        assert response["id"] == RESPONSE_ID and response["object"] == "response"
        assert response["status"] == "in_progress" and response["output"] == [] and response["usage"] is None
        assert response["created_at"] == CREATED and response["model"] == "openai/gpt-sim"
        assert response["instructions"] == "Be brief." and response["metadata"] == {"agent": "a1"}


def test_text_stream_events_in_order_and_the_completed_response():
    stream = new_stream()
    events = run(stream, [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hello"}),
                          chunk({"content": " there."}), chunk({}, "stop"), chunk(usage=USAGE)])
    assert types_of(events) == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed"]
    added, part = events[2], events[3]
    assert added["output_index"] == 0 and added["item"]["type"] == "message"
    assert added["item"]["status"] == "in_progress" and added["item"]["content"] == []
    item_id = added["item"]["id"]
    assert item_id.startswith("msg_")
    assert part["part"] == {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    assert [(e["delta"], e["item_id"], e["output_index"], e["content_index"]) for e in events[4:6]] == [
        ("Hello", item_id, 0, 0), (" there.", item_id, 0, 0)]
    assert events[6]["text"] == "Hello there."
    assert events[8]["item"]["status"] == "completed"
    completed = events[-1]["response"]
    assert completed["status"] == "completed" and completed["error"] is None
    assert completed["completed_at"] >= CREATED
    assert completed["output"] == [{"id": item_id, "type": "message", "status": "completed", "role": "assistant",
                                    "content": [{"type": "output_text", "text": "Hello there.",
                                                 "annotations": [], "logprobs": []}]}]
    assert completed["usage"] == {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 100,
                                                                                "cache_write_tokens": 0},
                                  "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 3},
                                  "total_tokens": 127}
    assert Response.model_validate(completed).output_text == "Hello there."
    assert stream.output_text == "Hello there."


def test_the_role_chunk_and_empty_deltas_send_nothing():
    stream = new_stream()
    stream.start()
    assert stream.feed(chunk({"role": "assistant", "content": ""})) == b""
    assert stream.feed(chunk({"content": None, "tool_calls": None, "refusal": None})) == b""
    assert stream.feed(chunk({})) == b""
    assert stream.feed({"choices": "garbage"}) == b""


def test_a_delta_frame_carries_only_its_own_text():
    stream = new_stream()
    stream.start()
    stream.feed(chunk({"content": "z" * 10_000}))
    frame = stream.feed(chunk({"content": "hi"}))
    assert b"zz" not in frame  # nothing of the response so far is re-sent with each token
    (event,) = events_of(frame)
    assert event["delta"] == "hi" and event["logprobs"] == []


def test_buffer_words_open_the_message_and_are_spoken():
    stream = new_stream()
    raw = stream.start() + stream.buffer_words() + stream.feed(chunk({"content": "Sure."})) + stream.complete()
    events = events_of(raw)
    deltas = [event["delta"] for event in events if event["type"] == "response.output_text.delta"]
    assert deltas == ["... ", "Sure."]
    assert types_of(events)[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert Response.model_validate(events[-1]["response"]).output_text == "... Sure."


def test_an_elevenlabs_system_tool_call_streams_as_a_function_call_item():
    stream = new_stream(tools=system_tools())
    events = run(stream, [chunk({"role": "assistant", "content": None}),
                          chunk(call_delta(0, call_id="call_end1", name="end_call")),
                          chunk(call_delta(0, arguments='{"reason"')),
                          chunk(call_delta(0, arguments=':"bye"}')),
                          chunk({}, "tool_calls"), chunk(usage=USAGE)])
    assert types_of(events) == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    added = events[2]["item"]
    assert added["type"] == "function_call" and added["id"].startswith("fc_")
    assert (added["call_id"], added["name"], added["arguments"], added["status"]) == (
        "call_end1", "end_call", "", "in_progress")
    assert [event["delta"] for event in events[3:5]] == ['{"reason"', ':"bye"}']
    done = events[5]
    assert (done["item_id"], done["name"], done["arguments"]) == (added["id"], "end_call", '{"reason":"bye"}')
    call = events[-1]["response"]["output"][0]
    assert call == {"id": added["id"], "type": "function_call", "status": "completed",
                    "arguments": '{"reason":"bye"}', "call_id": "call_end1", "name": "end_call"}
    assert events[-1]["response"]["tools"][0]["name"] == "end_call"
    assert stream.function_calls == ["end_call"] and stream.output_text == ""


def test_a_call_without_arguments_completes_with_an_empty_json_object():
    events = run(new_stream(), [chunk(call_delta(0, call_id="call_1", name="skip_turn")), chunk({}, "tool_calls")])
    done = next(event for event in events if event["type"] == "response.function_call_arguments.done")
    assert done["arguments"] == "{}"
    assert json.loads(events[-1]["response"]["output"][0]["arguments"]) == {}


def test_spoken_text_then_a_tool_call_are_two_items():
    events = run(new_stream(), [chunk({"content": "Goodbye!"}),
                                chunk(call_delta(0, call_id="call_1", name="end_call", arguments="{}")),
                                chunk({}, "tool_calls")])
    output = events[-1]["response"]["output"]
    assert [(item["type"], item.get("name")) for item in output] == [("message", None), ("function_call", "end_call")]
    closing = [(event["type"], event["output_index"]) for event in events
               if event["type"] in ("response.output_item.done", "response.output_text.done",
                                    "response.function_call_arguments.done")]
    assert closing == [("response.output_text.done", 0), ("response.output_item.done", 0),
                       ("response.function_call_arguments.done", 1), ("response.output_item.done", 1)]


def test_parallel_calls_are_separate_items_with_their_own_arguments():
    stream = new_stream()
    events = run(stream, [
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "transfer_to_number", "arguments": '{"n":'}},
                              {"index": 1, "id": "call_b", "type": "function",
                               "function": {"name": "language_detection", "arguments": ""}}]}),
        chunk(call_delta(1, arguments='{"language":"fr"}')),
        chunk(call_delta(0, arguments='"+1555"}')),
        chunk({}, "tool_calls")])
    calls = [(item["call_id"], item["name"], item["arguments"]) for item in events[-1]["response"]["output"]]
    assert calls == [("call_a", "transfer_to_number", '{"n":"+1555"}'),
                     ("call_b", "language_detection", '{"language":"fr"}')]
    deltas = [(event["output_index"], event["delta"]) for event in events
              if event["type"] == "response.function_call_arguments.delta"]
    assert deltas == [(0, '{"n":'), (1, '{"language":"fr"}'), (0, '"+1555"}')]
    assert stream.function_calls == ["transfer_to_number", "language_detection"]


def test_arguments_before_the_name_wait_for_it():
    events = run(new_stream(), [chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"arguments": "{"}}]}),
                                chunk(call_delta(0, name="end_call", arguments="}")), chunk({}, "tool_calls")])
    added = next(event for event in events if event["type"] == "response.output_item.added")
    assert added["item"]["name"] == "end_call"
    deltas = [event["delta"] for event in events if event["type"] == "response.function_call_arguments.delta"]
    assert "".join(deltas) == "{}"


def test_calls_without_an_index_are_told_apart_by_id():
    events = run(new_stream(), [
        chunk({"tool_calls": [{"id": "call_a", "function": {"name": "end_call", "arguments": '{"reason":"x"}'}}]}),
        chunk({"tool_calls": [{"id": "call_b", "function": {"name": "skip_turn", "arguments": "{}"}}]}),
        chunk({}, "tool_calls")])
    assert [item["call_id"] for item in events[-1]["response"]["output"]] == ["call_a", "call_b"]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_deltas_become_a_reasoning_item(field):
    events = run(new_stream(), [chunk({field: "The user "}), chunk({field: "wants weather."}),
                                chunk({"content": "Sunny."}), chunk({}, "stop")])
    reasoning_deltas = [event["delta"] for event in events if event["type"] == "response.reasoning_text.delta"]
    assert reasoning_deltas == ["The user ", "wants weather."]
    done = next(event for event in events if event["type"] == "response.reasoning_text.done")
    assert done["text"] == "The user wants weather."
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["reasoning", "message"]
    assert output[0]["content"] == [{"type": "reasoning_text", "text": "The user wants weather."}]
    assert Response.model_validate(events[-1]["response"]).output_text == "Sunny."


def test_a_refusal_streams_as_a_refusal_part():
    events = run(new_stream(), [chunk({"refusal": "I can't "}), chunk({"refusal": "help."}), chunk({}, "stop")])
    assert [event["delta"] for event in events if event["type"] == "response.refusal.delta"] == ["I can't ", "help."]
    assert events[-1]["response"]["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help."}]


@pytest.mark.parametrize(("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")])
def test_a_cut_output_ends_incomplete(finish, reason):
    events = run(new_stream(max_output_tokens=16), [chunk({"content": "Once upon"}), chunk({}, finish)])
    final = events[-1]
    assert final["type"] == "response.incomplete"  # what OpenAI sends when the output is cut
    response = final["response"]
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": reason}
    assert response["completed_at"] is None and response["max_output_tokens"] == 16
    assert response["output"][0]["status"] == "incomplete"
    assert Response.model_validate(response).output_text == "Once upon"


def test_usage_given_to_complete_wins_and_usage_on_a_content_chunk_counts():
    stream = new_stream()
    stream.start()
    stream.feed(chunk({"content": "a"}, "stop", usage={"prompt_tokens": 1, "completion_tokens": 1}))
    (final,) = events_of(stream.complete())[-1:]
    assert final["response"]["usage"]["total_tokens"] == 2
    stream = new_stream()
    stream.start()
    stream.feed(chunk(usage={"prompt_tokens": 1, "completion_tokens": 1}))
    final = events_of(stream.complete({"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55}))[-1]
    assert final["response"]["usage"]["input_tokens"] == 50 and final["response"]["usage"]["total_tokens"] == 55


def test_no_usage_at_all_is_null():
    events = run(new_stream(), [chunk({"content": "a"}), chunk({}, "stop")])
    assert events[-1]["response"]["usage"] is None


def test_fail_ends_the_stream_and_nothing_follows():
    stream = new_stream()
    raw = stream.start() + stream.feed(chunk({"content": "Let me"})) + stream.fail("The upstream timed out.",
                                                                                   "timeout")
    events = events_of(raw)
    failed = events[-1]
    assert failed["type"] == "response.failed"
    response = failed["response"]
    assert response["status"] == "failed"
    assert response["error"] == {"code": "server_error", "message": "The upstream timed out."}
    assert response["output"][0]["status"] == "incomplete"
    assert stream.feed(chunk({"content": " more"})) == b""
    assert stream.buffer_words() == b"" and stream.complete() == b"" and stream.fail("again", None) == b""


@pytest.mark.parametrize(("code", "expected"), [(None, "server_error"), ("rate_limited", "rate_limit_exceeded"),
                                                ("rate_limit_exceeded", "rate_limit_exceeded"),
                                                ("upstream_error", "server_error")])
def test_fail_codes_are_ones_the_sdk_knows(code, expected):
    stream = new_stream()
    (failed,) = events_of(stream.fail("no", code))
    assert failed["response"]["error"]["code"] == expected


def test_complete_twice_sends_once():
    stream = new_stream()
    stream.start()
    assert stream.complete()
    assert stream.complete() == b""


def test_sequence_numbers_rise_across_every_kind_of_event():
    stream = new_stream()
    raw = (stream.start() + stream.buffer_words() + stream.feed(chunk({"reasoning_content": "hm"}))
           + stream.feed(chunk({"content": "ok", "tool_calls": [{"index": 0, "id": "c", "function": {
               "name": "end_call", "arguments": "{}"}}]})) + stream.feed(chunk({}, "tool_calls"))
           + stream.feed(chunk(usage=USAGE)) + stream.complete())
    numbers = [event["sequence_number"] for event in events_of(raw)]
    assert numbers == list(range(len(numbers)))


# --- non-streamed ------------------------------------------------------------------------------------


def completion(message: dict, finish: str = "stop", usage: dict | None = USAGE) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": CREATED, "model": "gpt-sim",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish,
                         "logprobs": None}], "usage": usage}


def build(message: dict, finish: str = "stop", usage: dict | None = USAGE, **echo_fields) -> dict:
    _, echo = translate(**echo_fields)
    response = response_from_completion(completion(message, finish, usage), RESPONSE_ID, CREATED, "openai/gpt-sim",
                                        echo)
    Response.model_validate(response)  # strict: the SDK's model, field for field
    return response


def test_a_completion_becomes_a_response_whose_output_text_works():
    response = build({"content": "Hello there."}, metadata={"agent": "a1"}, temperature=0.3)
    assert response["object"] == "response" and response["id"] == RESPONSE_ID and response["status"] == "completed"
    assert response["error"] is None and response["metadata"] == {"agent": "a1"} and response["temperature"] == 0.3
    assert Response.model_validate(response).output_text == "Hello there."
    assert response["usage"]["input_tokens"] == 120 and response["usage"]["output_tokens"] == 7


def test_completion_tool_calls_become_function_call_items():
    response = build({"content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "end_call", "arguments": '{"reason":"bye"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "skip_turn", "arguments": ""}}]},
        finish="tool_calls", tools=system_tools())
    output = response["output"]
    assert [(item["type"], item["call_id"], item["name"], item["arguments"], item["status"]) for item in output] == [
        ("function_call", "call_1", "end_call", '{"reason":"bye"}', "completed"),
        ("function_call", "call_2", "skip_turn", "{}", "completed")]
    assert all(item["id"].startswith("fc_") for item in output)
    assert Response.model_validate(response).output_text == ""


def test_completion_cut_at_the_limit_is_incomplete():
    response = build({"content": "Once upon"}, finish="length")
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"


def test_completion_reasoning_and_refusal():
    response = build({"content": None, "refusal": "I can't.", "reasoning_content": "Unsafe."})
    assert [item["type"] for item in response["output"]] == ["reasoning", "message"]
    assert response["output"][1]["content"] == [{"type": "refusal", "refusal": "I can't."}]


def test_an_empty_completion_is_an_empty_output():
    assert build({"content": ""}, usage=None)["output"] == []
    _, echo = translate()
    assert response_from_completion({}, RESPONSE_ID, CREATED, "m", echo)["output"] == []


# --- usage ---------------------------------------------------------------------------------------------


def test_responses_usage_maps_every_count():
    assert responses_usage(USAGE) == {
        "input_tokens": 120, "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0},
        "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 127}


def test_responses_usage_takes_anthropic_cache_writes_and_fills_gaps():
    usage = responses_usage({"prompt_tokens": 30, "completion_tokens": 4,
                             "prompt_tokens_details": {"cached_tokens": 10, "cache_creation_tokens": 20}})
    assert usage["input_tokens_details"] == {"cached_tokens": 10, "cache_write_tokens": 20}
    assert usage["total_tokens"] == 34 and usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert responses_usage(None) is None and responses_usage("x") is None  # type: ignore[arg-type]
    assert responses_usage({"prompt_tokens": "9", "completion_tokens": None})["total_tokens"] == 0
