"""Streams through the gateway over real sockets, read by the official OpenAI SDK."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests import sse
from tests.conftest import GATEWAY_KEY

SYSTEM_TOOLS = ["end_call", "language_detection", "transfer_to_agent", "transfer_to_number", "skip_turn",
                "play_keypad_touch_tone", "voicemail_detection"]


def system_tools() -> list[dict]:
    return [{"type": "function", "function": {"name": name, "description": f"ElevenLabs system tool {name}",
             "parameters": {"type": "object", "properties": {"reason": {"type": "string"}},
                            "required": ["reason"]}}} for name in SYSTEM_TOOLS]


def collect(stream) -> tuple[str, list]:
    text, chunks = [], []
    for chunk in stream:
        chunks.append(chunk)
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
    return "".join(text), chunks


def tool_calls_of(chunks) -> dict[int, dict]:
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                entry = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                entry["id"] = entry["id"] or call.id
                if call.function and call.function.name:
                    entry["name"] += call.function.name
                if call.function and call.function.arguments:
                    entry["arguments"] += call.function.arguments
    return calls


@pytest.mark.parametrize("model", ["simulator/echo", "openai/gpt-sim", "anthropic/claude-sim"])
def test_streams_text_through_every_adapter(gateway, model):
    stream = gateway.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello"}], stream=True)
    text, chunks = collect(stream)
    assert text.startswith("(simulated) This is a simulated reply")
    assert chunks[-1].choices and chunks[-1].choices[0].finish_reason == "stop"
    [record] = gateway.records
    assert record.status == 200 and record.outcome == "stop" and record.stream
    assert record.ttft_ms is not None and record.ttft_ms <= record.total_ms


def test_first_token_reaches_client_before_upstream_finishes(gateway):
    """The upstream takes ~10 x 120 ms; the first token must arrive long before the last one is produced."""
    started = time.perf_counter()
    stream = gateway.client().chat.completions.create(
        model="simulator/echo", messages=[{"role": "user", "content": "hi"}], stream=True,
        extra_body={"simulator": {"tokens": 10, "gap_ms": 120}})
    first_content_at = None
    for chunk in stream:
        if first_content_at is None and chunk.choices and chunk.choices[0].delta.content:
            first_content_at = time.perf_counter() - started
    finished_at = time.perf_counter() - started
    assert finished_at >= 1.0  # 9 gaps of 120 ms: the upstream really was slow
    # Relayed, the first token leads the end by ~1.1 s, twice the 0.5 s asked; buffered, by nothing.
    assert first_content_at is not None and first_content_at < finished_at - 0.5


@pytest.mark.parametrize("model", ["openai/gpt-sim", "anthropic/claude-sim"])
def test_system_tool_calls_come_back_in_openai_format(gateway, sim_app, model):
    stream = gateway.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "bye"}], stream=True, tools=system_tools(),
        extra_body={"simulator": {"tool_call": "end_call"}})
    _, chunks = collect(stream)
    calls = tool_calls_of(chunks)
    assert list(calls) == [0]
    assert calls[0]["name"] == "end_call" and calls[0]["id"]
    assert json.loads(calls[0]["arguments"]) == {"reason": "simulated"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    forwarded = sim_app.requests[-1]
    names = [t.get("function", t).get("name") for t in forwarded["tools"]]
    assert names == SYSTEM_TOOLS
    assert gateway.records[-1].tool_calls == ["end_call"]


@pytest.mark.parametrize("model", ["openai/gpt-sim", "anthropic/claude-sim"])
def test_non_streaming_returns_one_completion(gateway, model):
    completion = gateway.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello"}])
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content.startswith("(simulated)")
    assert completion.usage.completion_tokens == 12
    record = gateway.records[-1]
    assert not record.stream and record.completion_tokens == 12 and record.outcome == "stop"


@pytest.mark.parametrize("model", ["openai/gpt-sim", "anthropic/claude-sim"])
def test_non_streaming_tool_call(gateway, model):
    completion = gateway.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": "bye"}], tools=system_tools(),
        extra_body={"simulator": {"tool_call": "transfer_to_number"}})
    [call] = completion.choices[0].message.tool_calls
    assert call.function.name == "transfer_to_number"
    assert json.loads(call.function.arguments) == {"reason": "simulated"}
    assert completion.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("model", ["openai/gpt-sim", "anthropic/claude-sim"])
def test_usage_chunk_only_when_asked(gateway, sim_app, model):
    client = gateway.client()
    _, chunks = collect(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}, extra_body={"simulator": {"cached_tokens": 3}}))
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0].choices == []
    assert usage_chunks[0].usage.completion_tokens == 12
    assert usage_chunks[0].usage.prompt_tokens_details.cached_tokens == 3

    _, chunks = collect(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True,
        extra_body={"simulator": {"cached_tokens": 3}}))
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    # The gateway still asked the upstream for usage, and recorded it.
    if model.startswith("openai/"):
        assert sim_app.requests[-1]["stream_options"] == {"include_usage": True}
    assert gateway.records[-1].completion_tokens == 12 and gateway.records[-1].cached_tokens == 3


def test_sse_bytes_on_the_wire(gateway):
    body = {"model": "simulator/echo", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body,
                      headers={"authorization": f"Bearer {GATEWAY_KEY}"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = b"".join(response.iter_raw())
    events = raw.split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    for event in events[:-2]:
        assert event.startswith(b"data: {")
        assert json.loads(event[6:])["object"] == "chat.completion.chunk"


def test_path_without_v1_and_models_and_health(gateway):
    headers = {"authorization": f"Bearer {GATEWAY_KEY}"}
    body = {"model": "simulator/echo", "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(gateway.url + "/chat/completions", json=body, headers=headers)
    assert response.status_code == 200 and response.json()["object"] == "chat.completion"
    assert httpx.get(gateway.url + "/health").json() == {"status": "ok"}
    for path in ("/v1/models", "/models"):
        listing = httpx.get(gateway.url + path, headers=headers).json()
        ids = {m["id"] for m in listing["data"]}
        assert listing["object"] == "list"
        assert {"simulator/echo", "simulator/tools"} <= ids
        assert "openai/gpt-4.1-mini" in ids and any(i.startswith("anthropic/claude-") for i in ids)
        assert not any(i.startswith("groq/") for i in ids)  # no GROQ_API_KEY configured
    assert httpx.get(gateway.url + "/v1/models").status_code == 401
    models = gateway.client().models.list()
    assert any(m.id == "simulator/echo" for m in models)


def test_elevenlabs_request_shape(gateway, sim_app):
    """What ElevenLabs sends: extra body, user_id, system tools, unknown fields, dynamic-variable headers."""
    client = gateway.client(default_headers={
        "x-inference-task-id": "support-line", "x-inference-environment": "staging",
        "x-inference-metadata-conversation-id": "conv_123", "x-inference-metadata-caller-id": "+15550100"})
    stream = client.chat.completions.create(
        model="openai/gpt-sim", messages=[{"role": "system", "content": "You are a voice agent."},
                                          {"role": "user", "content": "hi"}],
        stream=True, temperature=0.4, max_tokens=200, tools=system_tools(),
        extra_body={"elevenlabs_extra_body": {"customer_tier": "gold"}, "user_id": "caller-42",
                    "some_future_field": {"x": 1}})
    text, _ = collect(stream)
    assert text
    forwarded = sim_app.requests[-1]
    assert "elevenlabs_extra_body" not in forwarded and "user_id" not in forwarded
    assert forwarded["user"] == "caller-42"
    assert forwarded["some_future_field"] == {"x": 1}
    assert forwarded["model"] == "gpt-sim"
    assert len(forwarded["tools"]) == len(SYSTEM_TOOLS)
    record = gateway.records[-1]
    assert record.task_id == "support-line" and record.environment == "staging"
    assert record.metadata["conversation-id"] == "conv_123"
    assert record.metadata["caller-id"] == "+15550100"
    assert record.metadata["extra.customer_tier"] == "gold"
    assert record.provider == "openai" and record.model == "gpt-sim"


def test_bare_model_names_resolve(gateway, sim_app):
    client = gateway.client()
    client.chat.completions.create(model="gpt-sim-4", messages=[{"role": "user", "content": "hi"}])
    assert gateway.records[-1].provider == "openai"
    client.chat.completions.create(model="claude-sim", messages=[{"role": "user", "content": "hi"}])
    assert gateway.records[-1].provider == "anthropic"
    assert sim_app.requests[-1]["model"] == "claude-sim"


def test_client_disconnect_is_recorded(gateway):
    body = {"model": "simulator/echo", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "simulator": {"tokens": 50, "gap_ms": 50}}
    with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body,
                      headers={"authorization": f"Bearer {GATEWAY_KEY}"}) as response:
        for event in sse.events(response):
            if '"content":"(simulated)"' in event.data:
                break
    deadline = time.time() + 5
    while not gateway.records and time.time() < deadline:
        time.sleep(0.02)
    [record] = gateway.records
    assert record.outcome == "client_disconnected"
    assert record.ttft_ms is not None


def test_a_hang_up_is_an_ending_not_an_error_in_the_log(gateway, caplog):
    """A caller hanging up is how most voice calls end: the server must not log it as a crash with a traceback."""
    body = {"model": "simulator/echo", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "simulator": {"tokens": 50, "gap_ms": 50}}
    with caplog.at_level("INFO"):
        for _ in range(3):
            with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body,
                              headers={"authorization": f"Bearer {GATEWAY_KEY}"}) as response:
                next(response.iter_raw())
        deadline = time.time() + 5
        while len(gateway.records) < 3 and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # what the server logs after the record
    assert [r.outcome for r in gateway.records] == ["client_disconnected"] * 3
    crashes = [r for r in caplog.records if r.levelname == "ERROR" or r.exc_info]
    assert not crashes, [r.getMessage() for r in crashes]


@pytest.mark.parametrize("model", ["openai/gpt-sim", "anthropic/claude-sim"])
def test_upstream_connections_are_reused(gateway, sim_app, model):
    """A new upstream connection per call would cost a TLS handshake per call against a real provider."""
    client = gateway.client()
    for _ in range(6):
        collect(client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                               stream=True))
    assert len(sim_app.client_ports) == 6
    assert len(set(sim_app.client_ports)) == 1
