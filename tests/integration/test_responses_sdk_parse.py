"""The Responses translation over a real socket, read by the official OpenAI Python SDK.

A tiny ASGI app stands in for the gateway's /v1/responses route: it translates each request with
`chat_body_from_responses` (then `chat_request`, as the gateway does), and answers from a script of chat
chunks shaped like OpenAI's own stream, through `ResponsesStream` (streamed) or `response_from_completion`
(not streamed). The SDK then has to make sense of every byte: its event classes, its stream helper's final
response, `output_text`, function-call items, and the errors for what switchboard refuses."""

from __future__ import annotations

import json
import time
import typing
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pydantic
import pytest
from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseIncompleteEvent,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
)

from switchboard.formats.chat_completions import chat_request
from switchboard.formats.responses.objects import response_from_completion
from switchboard.formats.responses.request import chat_body_from_responses
from switchboard.formats.responses.stream import ResponsesStream
from switchboard.http.serving import BackgroundServer
from switchboard.providers import anthropic
from switchboard.wire.errors import GatewayError
from switchboard.wire.json import dumps
from switchboard.wire.sse import SSEDecoder

API_KEY = "sk-test-responses-gateway-fake"
SYSTEM_TOOLS = ["end_call", "language_detection", "transfer_to_agent", "transfer_to_number", "skip_turn",
                "play_keypad_touch_tone", "voicemail_detection"]
BUFFER = object()  # in a script: the relay's buffer words go here


def event_classes() -> dict[str, type]:
    """Event type -> the SDK's class for it, read from the SDK's own discriminated union."""
    union = typing.get_args(ResponseStreamEvent)[0]
    return {typing.get_args(cls.model_fields["type"].annotation)[0]: cls for cls in typing.get_args(union)}


EVENT_CLASSES = event_classes()


def delta(fields: dict, finish: str | None = None) -> dict:
    return {"id": "chatcmpl-rec1", "object": "chat.completion.chunk", "created": 1_767_000_000, "model": "gpt-sim",
            "system_fingerprint": "fp_sim", "usage": None,
            "choices": [{"index": 0, "delta": fields, "logprobs": None, "finish_reason": finish}]}


def usage_chunk(prompt: int, completion: int) -> dict:
    return {"id": "chatcmpl-rec1", "object": "chat.completion.chunk", "created": 1_767_000_000, "model": "gpt-sim",
            "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                     "total_tokens": prompt + completion,
                                     "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                                     "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}}


def tool_call(index: int, call_id: str, name: str) -> dict:
    return {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
        {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]}


def arguments(index: int, fragment: str) -> dict:
    return {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}


# Chat chunks as OpenAI streams them: a role chunk, deltas, a finish chunk, then the usage-only chunk.
SCRIPTS: dict[str, list] = {
    "script/text": [delta({"role": "assistant", "content": "", "refusal": None}), delta({"content": "Hello"}),
                    delta({"content": " from"}), delta({"content": " switchboard."}), delta({}, "stop"),
                    usage_chunk(42, 4)],
    "script/buffered": [BUFFER, delta({"role": "assistant", "content": ""}), delta({"content": "Let me check."}),
                        delta({}, "stop"), usage_chunk(42, 4)],
    "script/end_call": [delta(tool_call(0, "call_Ab12Cd34", "end_call")), delta(arguments(0, '{"rea')),
                        delta(arguments(0, 'son":"caller said')), delta(arguments(0, ' goodbye"}')),
                        delta({}, "tool_calls"), usage_chunk(300, 18)],
    "script/speak_then_transfer": [delta({"role": "assistant", "content": ""}), delta({"content": "Transferring"}),
                                   delta({"content": " you now."}),
                                   delta(tool_call(0, "call_Tr1", "transfer_to_number")),
                                   delta(arguments(0, '{"reason":"billing"}')),
                                   delta(tool_call(1, "call_Sk2", "skip_turn")), delta(arguments(1, "")),
                                   delta({}, "tool_calls"), usage_chunk(310, 30)],
    "script/reasoning": [delta({"role": "assistant", "reasoning_content": "They want"}),
                         delta({"reasoning_content": " the time."}), delta({"content": "It is noon."}),
                         delta({}, "stop"), usage_chunk(20, 9)],
    "script/length": [delta({"role": "assistant", "content": ""}), delta({"content": "Once upon a"}),
                      delta({}, "length"), usage_chunk(12, 16)],
}


RECORDED = Path(__file__).parents[1] / "fixtures" / "recorded"
# Real chat streams, as recorded from each host (sources in each file), that the openai_compat adapter relays.
RECORDED_STREAMS = ["openai-text-stream", "openai-tool-call-stream", "deepseek-reasoning-stream",
                    "deepseek-reasoning-tool-call", "groq-reasoning-tool-call", "mistral-tool-call-no-index",
                    "openrouter-reasoning", "xai-reasoning-tool-call", "xai-text-reasoning-tokens"]


def recorded_chunks(name: str) -> list[dict]:
    recording = json.loads((RECORDED / f"{name}.json").read_text())
    events = SSEDecoder().feed(recording["response"]["body"].encode())
    return [json.loads(data) for _, data in events if data != b"[DONE]"]


for _name in RECORDED_STREAMS:
    SCRIPTS[f"recorded/{_name}"] = recorded_chunks(_name)


def expected_from_chunks(chunks: list[dict]) -> tuple[str, str, list[tuple[str, str, str]]]:
    """(spoken text, reasoning text, [(call_id, name, arguments)]) read straight off the chat chunks."""
    text, reasoning, calls = [], [], {}
    for item in chunks:
        for choice in item.get("choices") or ():
            fields = choice.get("delta") or {}
            text.append(fields.get("content") or "")
            reasoning.append(fields.get("reasoning_content") or fields.get("reasoning") or "")
            for call in fields.get("tool_calls") or ():
                entry = calls.setdefault(call.get("index", call.get("id")), ["", "", ""])
                entry[0] = entry[0] or call.get("id") or ""
                entry[1] += call["function"].get("name") or ""
                entry[2] += call["function"].get("arguments") or ""
    return "".join(text), "".join(reasoning), [tuple(entry) for entry in calls.values()]


def completion_from_chunks(chunks: list) -> dict:
    """What a non-streamed call to the same upstream returns: the chunks' message, assembled."""
    content, calls, finish, usage = [], {}, None, None
    for item in chunks:
        if item is BUFFER:
            continue
        usage = item.get("usage") or usage
        for choice in item["choices"]:
            finish = choice["finish_reason"] or finish
            content.append(choice["delta"].get("content") or "")
            for call in choice["delta"].get("tool_calls") or ():
                entry = calls.setdefault(call["index"], {"id": call.get("id"), "type": "function",
                                                         "function": {"name": "", "arguments": ""}})
                entry["function"]["name"] += call["function"].get("name") or ""
                entry["function"]["arguments"] += call["function"].get("arguments") or ""
    message = {"role": "assistant", "content": "".join(content) or None}
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    return {"id": "chatcmpl-rec1", "object": "chat.completion", "created": 1_767_000_000, "model": "gpt-sim",
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage}


class ScriptedResponsesApp:
    """POST /v1/responses, translated as the gateway does and answered from SCRIPTS[model]."""

    def __init__(self) -> None:
        self.chat_bodies: list[dict] = []  # what an upstream adapter would have received

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        assert scope["type"] == "http" and scope["path"] == "/v1/responses"
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(raw)
        try:
            chat, echo = chat_body_from_responses(request)
            parsed = chat_request(chat, {k.decode().lower(): v.decode() for k, v in scope["headers"]})
        except GatewayError as error:
            await _send(send, error.status, "application/json", dumps(error.body()))
            return
        self.chat_bodies.append(parsed.body)
        script = SCRIPTS[request["model"]]
        response_id = "resp_" + uuid.uuid4().hex
        if not parsed.stream:
            response = response_from_completion(completion_from_chunks(script), response_id, int(time.time()),
                                                request["model"], echo)
            await _send(send, 200, "application/json", dumps(response))
            return
        stream = ResponsesStream(response_id, request["model"], int(time.time()), echo)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]})
        for frames in [stream.start(), *(stream.buffer_words() if item is BUFFER else stream.feed(item)
                                         for item in script), stream.complete()]:
            if frames:  # one write per upstream chunk, as the relay does
                await send({"type": "http.response.body", "body": frames, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send(send: Callable, status: int, content_type: str, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def app() -> Iterator[ScriptedResponsesApp]:
    yield ScriptedResponsesApp()


@pytest.fixture(scope="module")
def client(app) -> Iterator[openai.OpenAI]:
    with BackgroundServer(app, lifespan="off") as server:
        with openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=10) as sdk:
            yield sdk


def system_tools(strict: bool = False) -> list[dict]:
    return [{"type": "function", "name": name, "description": f"ElevenLabs system tool {name}", "strict": strict,
             "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"],
                            "additionalProperties": False}} for name in SYSTEM_TOOLS]


def checked_events(stream) -> list:
    """Every event: parsed to the SDK's own class for its type (the stream helper's subclasses count),
    complete (re-validated strictly from what was received), with sequence numbers rising from 0."""
    events = list(stream)
    for event in events:
        assert isinstance(event, EVENT_CLASSES[event.type]), event.type
        EVENT_CLASSES[event.type].model_validate(event.to_dict(warnings=False))  # the helper's parsed subclasses warn
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(set(numbers)) and numbers[0] == 0
    assert events[0].type == "response.created" and events[1].type == "response.in_progress"
    return events


# --- streamed, raw events ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(SCRIPTS))
def test_every_streamed_event_parses_to_the_sdks_own_class(client, model):
    with client.responses.create(model=model, input="Hello", tools=system_tools(), stream=True) as stream:
        events = checked_events(stream)
    final = events[-1]
    assert isinstance(final, ResponseIncompleteEvent if model == "script/length" else ResponseCompletedEvent)
    assert final.response.id == events[0].response.id and final.response.id.startswith("resp_")
    texts = "".join(event.delta for event in events if isinstance(event, ResponseTextDeltaEvent))
    assert final.response.output_text == texts
    assert final.response.usage is not None and final.response.usage.total_tokens > 0


def test_streamed_text_adds_up_to_the_completed_response(client):
    with client.responses.create(model="script/text", input="Hello", stream=True) as stream:
        events = checked_events(stream)
    types = [event.type for event in events]
    assert types == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
                     "response.output_text.delta", "response.output_text.done", "response.content_part.done",
                     "response.output_item.done", "response.completed"]
    done = events[7]
    assert done.text == "Hello from switchboard."
    response = events[-1].response
    assert response.status == "completed" and response.output_text == "Hello from switchboard."
    assert (response.usage.input_tokens, response.usage.output_tokens) == (42, 4)


def test_a_cut_response_ends_incomplete_with_the_reason(client):
    with client.responses.create(model="script/length", input="Tell me a story", max_output_tokens=16,
                                 stream=True) as stream:
        events = checked_events(stream)
    response = events[-1].response
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.max_output_tokens == 16 and response.output_text == "Once upon a"


# --- the SDK's stream helper --------------------------------------------------------------------------------


def test_stream_helper_final_response_output_text(client):
    with client.responses.stream(model="script/buffered", input="What's my balance?",
                                 instructions="You are a bank's voice agent.") as stream:
        spoken = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert spoken == ["... ", "Let me check."]  # buffer words first, spoken like any text
    assert final.output_text == "... Let me check."
    assert final.status == "completed" and final.instructions == "You are a bank's voice agent."


def test_stream_helper_function_call_item_for_an_elevenlabs_system_tool(client):
    with client.responses.stream(model="script/end_call", input="Bye!", tools=system_tools(strict=True)) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    (call,) = final.output
    assert call.type == "function_call" and call.name == "end_call" and call.call_id == "call_Ab12Cd34"
    assert call.id.startswith("fc_") and call.status == "completed"
    assert json.loads(call.arguments) == {"reason": "caller said goodbye"}
    assert call.parsed_arguments == {"reason": "caller said goodbye"}  # the SDK parsed it against the strict tool
    assert final.output_text == ""
    assert [tool.name for tool in final.tools] == SYSTEM_TOOLS


def test_stream_helper_text_then_two_calls(client):
    with client.responses.stream(model="script/speak_then_transfer", input="Billing please",
                                 tools=system_tools()) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.output_text == "Transferring you now."
    calls = [(item.name, item.call_id, item.arguments) for item in final.output if item.type == "function_call"]
    assert calls == [("transfer_to_number", "call_Tr1", '{"reason":"billing"}'), ("skip_turn", "call_Sk2", "{}")]


def test_stream_helper_reasoning_item(client):
    with client.responses.stream(model="script/reasoning", input="What time is it?") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    reasoning, message = final.output
    assert reasoning.type == "reasoning" and reasoning.content[0].text == "They want the time."
    assert message.type == "message" and final.output_text == "It is noon."


@pytest.mark.parametrize("name", RECORDED_STREAMS)
def test_recorded_provider_streams_come_out_whole(client, name):
    """Real hosts' chunks (DeepSeek and xAI reasoning_content, Groq and OpenRouter reasoning, Mistral's calls
    without an index): the SDK's final response holds exactly the text, reasoning and calls they carried."""
    text, reasoning, calls = expected_from_chunks(SCRIPTS[f"recorded/{name}"])
    with client.responses.stream(model=f"recorded/{name}", input="Hello", tools=system_tools()) as stream:
        events = checked_events(stream)
        final = stream.get_final_response()
    assert events[-1].type == "response.completed"
    assert final.output_text == text
    assert [part.text for item in final.output if item.type == "reasoning" for part in item.content] == (
        [reasoning] if reasoning else [])
    assert [(item.call_id, item.name, item.arguments) for item in final.output if item.type == "function_call"] == calls
    assert text or calls  # every recording says or does something


# --- not streamed ----------------------------------------------------------------------------------------


def test_not_streamed_response_output_text(client):
    response = client.responses.create(model="script/text", input="Hello", metadata={"agent": "support"})
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "Hello from switchboard."
    assert response.metadata == {"agent": "support"}
    assert response.usage.input_tokens == 42 and response.usage.total_tokens == 46
    type(response).model_validate(response.to_dict())


def test_not_streamed_function_calls(client):
    response = client.responses.create(model="script/speak_then_transfer", input="Billing", tools=system_tools())
    assert response.output_text == "Transferring you now."
    calls = [(item.name, item.arguments) for item in response.output if item.type == "function_call"]
    assert calls == [("transfer_to_number", '{"reason":"billing"}'), ("skip_turn", "{}")]


# --- a function-call round trip ----------------------------------------------------------------------------


def assert_openai_accepts(messages: list[dict]) -> None:
    """OpenAI's rules for a chat history: each message a valid chat message; every assistant tool call
    answered by a tool message with its id before anything else is said."""
    adapter = pydantic.TypeAdapter(ChatCompletionMessageParam)
    unanswered: set[str] = set()
    for message in messages:
        adapter.validate_python(message)
        if message["role"] == "tool":
            assert message["tool_call_id"] in unanswered, f"{message['tool_call_id']} answers no open call"
            unanswered.discard(message["tool_call_id"])
            continue
        assert not unanswered, f"calls {unanswered} were not answered before the next message"
        if message["role"] == "assistant" and message.get("tool_calls"):
            unanswered = {call["id"] for call in message["tool_calls"]}
    assert not unanswered


def test_function_call_history_translates_to_matching_chat_tool_messages(client, app):
    """Turn 1 calls two tools; turn 2 sends that output back with the results, as the SDK docs show."""
    first = client.responses.create(model="script/speak_then_transfer", input="Billing please", tools=system_tools())
    history = [{"role": "user", "content": "Billing please"}, *[item.to_dict() for item in first.output]]
    results = [{"type": "function_call_output", "call_id": item.call_id, "output": f"{item.name} done"}
               for item in first.output if item.type == "function_call"]
    second = client.responses.create(model="script/text", input=[*history, *results], tools=system_tools())
    assert second.output_text == "Hello from switchboard."

    messages = app.chat_bodies[-1]["messages"]
    assert [message["role"] for message in messages] == ["user", "assistant", "tool", "tool"]
    assistant = messages[1]
    assert assistant["content"] == "Transferring you now."
    assert [(call["id"], call["function"]["name"]) for call in assistant["tool_calls"]] == [
        ("call_Tr1", "transfer_to_number"), ("call_Sk2", "skip_turn")]
    assert [(message["tool_call_id"], message["content"]) for message in messages[2:]] == [
        ("call_Tr1", "transfer_to_number done"), ("call_Sk2", "skip_turn done")]
    assert_openai_accepts(messages)
    _, translated = anthropic.translate_messages(messages)  # and the Anthropic adapter pairs them too
    uses = [block["id"] for block in translated[1]["content"] if block["type"] == "tool_use"]
    results_ids = [block["tool_use_id"] for block in translated[2]["content"] if block["type"] == "tool_result"]
    assert uses == results_ids == ["call_Tr1", "call_Sk2"]


# --- what switchboard refuses ------------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "param", "says"), [
    ({"previous_response_id": "resp_earlier"}, "previous_response_id", "send the whole conversation"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type", "'web_search'"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]", "stores no items"),
])
def test_refusals_are_sdk_bad_request_errors(client, extra, param, says):
    fields = {"model": "script/text", "input": "hi", **extra}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(**fields)
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == param and says in caught.value.body["message"]
    assert caught.value.body["type"] == "invalid_request_error"
