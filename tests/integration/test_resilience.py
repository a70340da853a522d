"""Fallbacks, retries, deadlines, buffer words and disconnects: what a voice caller hears when things fail."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from switchboard.http.serving import bind
from tests import sse
from tests.conftest import GATEWAY_KEY

HELLO = [{"role": "user", "content": "hi"}]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def post(gateway, model: str, *, stream=True, headers=None, simulator=None, timeout=20) -> httpx.Response:
    body = {"model": model, "messages": HELLO, "stream": stream}
    if simulator:
        body["simulator"] = simulator
    return httpx.post(gateway.base_url + "/chat/completions", json=body, timeout=timeout,
                      headers={"authorization": f"Bearer {GATEWAY_KEY}", **(headers or {})})


def content_of(response: httpx.Response) -> str:
    text = []
    for chunk in sse.objects(response):
        for choice in chunk.get("choices", []):
            text.append(choice["delta"].get("content") or "")
    return "".join(text)


def outcomes(record) -> list[tuple[str, str]]:
    return [(a["model"], a["outcome"]) for a in record.attempts]


@pytest.mark.parametrize("stream", [True, False])
def test_5xx_falls_back_to_the_next_route(gateway, stream):
    response = post(gateway, "openai/fail-503", stream=stream,
                    headers={"x-switchboard-fallbacks": "anthropic/claude-sim, openai/never-needed"})
    assert response.status_code == 200
    record = gateway.records[-1]
    # 503 is retried once on the same route (after a short backoff), then the next route answers.
    assert outcomes(record) == [("fail-503", "http_error"), ("fail-503", "http_error"), ("claude-sim", "ok")]
    assert record.provider == "anthropic" and record.model == "claude-sim" and record.status == 200
    assert all(a["ms"] >= 0 and a["started_ms"] >= 0 for a in record.attempts)


def test_429_is_retried_honouring_retry_after(gateway):
    model = unique("flaky-429-1")
    started = time.perf_counter()
    response = post(gateway, f"openai/{model}", simulator={"retry_after": 0.3})
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and content_of(response).startswith("(simulated)")
    record = gateway.records[-1]
    assert outcomes(record) == [(model, "http_error"), (model, "ok")]
    assert record.attempts[1]["started_ms"] >= 300 and elapsed >= 0.3


def test_long_retry_after_moves_on_instead_of_waiting(gateway):
    model = unique("flaky-429-1")
    started = time.perf_counter()
    response = post(gateway, f"openai/{model}", simulator={"retry_after": 30},
                    headers={"x-switchboard-fallbacks": "openai/backup"})
    assert response.status_code == 200 and time.perf_counter() - started < 2
    assert outcomes(gateway.records[-1]) == [(model, "http_error"), ("backup", "ok")]


def test_connect_error_falls_back(start_gateway):
    closed = bind()
    try:
        gateway = start_gateway(GROQ_BASE_URL=f"http://127.0.0.1:{closed.getsockname()[1]}/v1",
                                GROQ_API_KEY="gsk-test-fake")
        response = post(gateway, "groq/llama-sim", headers={"x-switchboard-fallbacks": "openai/gpt-sim"})
    finally:
        closed.close()
    assert response.status_code == 200
    assert [a["outcome"] for a in gateway.records[-1].attempts][-1] == "ok"
    assert gateway.records[-1].attempts[0]["outcome"] == "connect_error"


def test_first_token_deadline_moves_to_the_fallback(gateway):
    started = time.perf_counter()
    response = post(gateway, "openai/slow-3000", headers={
        "x-switchboard-first-token-timeout-ms": "300", "x-switchboard-fallbacks": "openai/fast"})
    assert response.status_code == 200 and content_of(response).startswith("(simulated)")
    assert time.perf_counter() - started < 1.5
    record = gateway.records[-1]
    assert outcomes(record) == [("slow-3000", "first_token_timeout"), ("fast", "ok")]
    assert 300 <= record.ttft_ms < 1500


def test_first_token_deadline_without_fallback_is_504(gateway):
    response = post(gateway, "openai/slow-3000", headers={"x-switchboard-first-token-timeout-ms": "200"})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "first_token_timeout"


def test_once_a_byte_is_sent_the_stream_is_never_switched(gateway):
    response = post(gateway, "openai/gpt-sim", simulator={"error_after": 3},
                    headers={"x-switchboard-fallbacks": "anthropic/claude-sim"})
    assert response.status_code == 200
    assert content_of(response) == "(simulated) This is"
    events = response.text.rstrip().split("\n\n")
    assert events[-2].startswith('data: {"error"') and events[-1] == "data: [DONE]"
    record = gateway.records[-1]
    assert outcomes(record) == [("gpt-sim", "ok")] and record.status == 502


def test_client_errors_do_not_fall_back(gateway):
    response = post(gateway, "openai/fail-400", headers={"x-switchboard-fallbacks": "openai/gpt-sim"})
    assert response.status_code == 400
    assert outcomes(gateway.records[-1]) == [("fail-400", "http_error")]


def test_fallback_header_is_validated(gateway):
    response = post(gateway, "openai/gpt-sim", headers={"x-switchboard-fallbacks": "mystery-model"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "model"
    response = post(gateway, "openai/gpt-sim", headers={"x-switchboard-fallbacks": ",".join(["openai/a"] * 9)})
    assert response.status_code == 400
    response = post(gateway, "openai/gpt-sim", headers={"x-switchboard-first-token-timeout-ms": "soon"})
    assert response.status_code == 400


def test_buffer_words_keep_speech_flowing(gateway):
    started = time.perf_counter()
    # The answer comes at 2 s: words that waited for it would miss the 1 s bound twice over.
    with httpx.stream("POST", gateway.base_url + "/chat/completions", timeout=20, json={
            "model": "openai/slow-2000", "messages": HELLO, "stream": True},
            headers={"authorization": f"Bearer {GATEWAY_KEY}", "x-switchboard-buffer-after-ms": "150"}) as response:
        events = []
        for event in sse.events(response):
            if event.data.startswith("{"):
                events.append((time.perf_counter() - started, event.json()))
    first_at, first = events[0]
    assert first["choices"][0]["delta"]["content"] == "... "
    assert 0.15 <= first_at < 1.0
    real_at = next(at for at, e in events[1:] if e["choices"] and e["choices"][0]["delta"].get("content"))
    assert real_at >= 2.0
    assert "".join(e["choices"][0]["delta"].get("content") or "" for _, e in events if e["choices"]).startswith(
        "... (simulated)")
    record = gateway.records[-1]
    assert record.buffer_words is True and record.ttft_ms >= 2000  # TTFT is the real answer's


def test_no_buffer_words_when_the_answer_is_quick(gateway):
    response = post(gateway, "openai/gpt-sim", headers={"x-switchboard-buffer-after-ms": "500"})
    assert content_of(response).startswith("(simulated)") and gateway.records[-1].buffer_words is False


def test_task_and_alias_configuration(start_gateway):
    routing = {"aliases": {"voice-fast": {"model": "openai/fail-502", "fallbacks": ["anthropic/claude-sim"]}},
               "tasks": {"support-line": {"fallbacks": ["openai/backup"], "first_token_timeout_ms": 250,
                                          "buffer_after_ms": 100}}}
    gateway = start_gateway(SWITCHBOARD_ROUTING=json.dumps(routing), SWITCHBOARD_MAX_RETRIES="0")
    assert post(gateway, "voice-fast").status_code == 200
    assert outcomes(gateway.records[-1]) == [("fail-502", "http_error"), ("claude-sim", "ok")]
    response = post(gateway, "openai/slow-2000", headers={"x-inference-task-id": "support-line"})
    assert response.status_code == 200 and content_of(response).startswith("... (simulated)")
    record = gateway.records[-1]
    assert outcomes(record) == [("slow-2000", "first_token_timeout"), ("backup", "ok")] and record.buffer_words


def test_client_disconnect_cancels_the_upstream_at_once(gateway):
    """Hang up while the upstream is still thinking: the call ends now, not when the upstream answers."""
    with httpx.stream("POST", gateway.base_url + "/chat/completions", timeout=20, json={
            "model": "openai/slow-3000", "messages": HELLO, "stream": True},
            headers={"authorization": f"Bearer {GATEWAY_KEY}", "x-switchboard-buffer-after-ms": "100"}) as response:
        for event in sse.events(response):
            if "... " in event.data:
                break  # the caller hung up right after the buffer words
    deadline = time.time() + 2
    while not gateway.records and time.time() < deadline:
        time.sleep(0.02)
    [record] = gateway.records
    assert record.outcome == "client_disconnected" and record.total_ms < 1500


def test_disconnect_counts_the_tokens_produced_so_far(gateway):
    with httpx.stream("POST", gateway.base_url + "/chat/completions", timeout=20, json={
            "model": "openai/gpt-sim", "messages": HELLO, "stream": True, "simulator": {"tokens": 50, "gap_ms": 30}},
            headers={"authorization": f"Bearer {GATEWAY_KEY}"}) as response:
        seen = 0
        for event in sse.events(response):
            if '"content"' in event.data:
                seen += 1
            if seen == 5:
                break
    deadline = time.time() + 2
    while not gateway.records and time.time() < deadline:
        time.sleep(0.02)
    [record] = gateway.records
    assert record.outcome == "client_disconnected"
    assert record.usage_estimated and 4 <= record.completion_tokens < 50  # the role chunk was one of the five


def test_total_deadline_ends_a_long_stream(gateway):
    response = post(gateway, "openai/gpt-sim", simulator={"tokens": 40, "gap_ms": 50},
                    headers={"x-switchboard-timeout-ms": "400"})
    assert response.status_code == 200
    assert response.text.rstrip().endswith('"code":"timeout"}}\n\ndata: [DONE]')
    assert gateway.records[-1].status == 504
