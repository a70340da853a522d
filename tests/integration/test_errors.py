"""Every error path: the status and OpenAI error body a client sees, over real sockets."""

from __future__ import annotations

import httpx
import openai
import pytest

from switchboard.http.serving import bind
from tests.conftest import GATEWAY_KEY

AUTH = {"authorization": f"Bearer {GATEWAY_KEY}"}
HELLO = [{"role": "user", "content": "hi"}]


def post(gateway, body, headers=None, raw: bytes | None = None) -> httpx.Response:
    headers = {**AUTH, **(headers or {})}
    if raw is not None:
        return httpx.post(gateway.base_url + "/chat/completions", content=raw,
                          headers={"content-type": "application/json", **headers})
    return httpx.post(gateway.base_url + "/chat/completions", json=body, headers=headers)


def assert_error(response: httpx.Response, status: int, *, code: str | None = None, contains: str = "") -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert contains in error["message"]
    if code is not None:
        assert error["code"] == code
    return error


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer sb-wrong-key-fake"}, {"authorization": "Basic x"},
                                     {"authorization": "Bearer"}])
def test_missing_or_wrong_key_is_401(gateway, headers):
    response = httpx.post(gateway.base_url + "/chat/completions", headers=headers,
                          json={"model": "simulator/echo", "messages": HELLO})
    assert_error(response, 401, code="invalid_api_key")
    assert gateway.records[-1].status == 401 and gateway.records[-1].key_name is None


def test_sdk_sees_authentication_error(gateway):
    with pytest.raises(openai.AuthenticationError):
        gateway.client(key="sb-wrong-key-fake").chat.completions.create(model="simulator/echo", messages=HELLO)


def test_invalid_json_is_400(gateway):
    assert_error(post(gateway, None, raw=b'{"model": "simulator/echo", "messages": ['), 400, code="invalid_json")
    assert_error(post(gateway, None, raw=b"[1, 2]"), 400, code="invalid_json")
    assert_error(post(gateway, None, raw=b"\xff\xfe"), 400, code="invalid_json")


def test_missing_messages_is_400(gateway):
    error = assert_error(post(gateway, {"model": "simulator/echo"}), 400, code="missing_messages")
    assert error["param"] == "messages"
    assert_error(post(gateway, {"model": "simulator/echo", "messages": []}), 400)
    assert_error(post(gateway, {"model": "simulator/echo", "messages": [{"role": "wizard", "content": "x"}]}), 400)


@pytest.mark.parametrize("model", ["mystery-model", "nope/thing", "", 42, "openai/"])
def test_bad_model_is_400_naming_accepted_forms(gateway, model):
    error = assert_error(post(gateway, {"model": model, "messages": HELLO}), 400)
    assert error["param"] == "model"
    if model in ("mystery-model", "nope/thing"):
        assert "provider/model" in error["message"] and "claude-" in error["message"]


def test_unconfigured_provider_is_400(gateway):
    error = assert_error(post(gateway, {"model": "groq/llama-3.3-70b-versatile", "messages": HELLO}), 400,
                         code="provider_not_configured")
    assert "GROQ_API_KEY" in error["message"]


@pytest.mark.parametrize("model", ["openai/gpt-sim", "anthropic/claude-sim"])
@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("upstream_status", [400, 404, 429])
def test_upstream_4xx_passes_through(gateway, model, stream, upstream_status):
    response = post(gateway, {"model": model, "messages": HELLO, "stream": stream,
                              "simulator": {"fail_status": upstream_status}})
    error = assert_error(response, upstream_status, contains=f"simulated failure {upstream_status}")
    assert error["code"] == f"upstream_{upstream_status}"
    assert gateway.records[-1].status == upstream_status


@pytest.mark.parametrize("stream", [True, False])
def test_upstream_5xx_is_502(gateway, stream):
    response = post(gateway, {"model": "openai/gpt-sim", "messages": HELLO, "stream": stream,
                              "simulator": {"fail_status": 503}})
    assert_error(response, 502, code="upstream_503", contains="503")


def test_unreachable_upstream_is_502(start_gateway):
    closed = bind()  # bound, never listening: connections are refused
    try:
        gateway = start_gateway(OPENAI_BASE_URL=f"http://127.0.0.1:{closed.getsockname()[1]}/v1")
        response = post(gateway, {"model": "openai/gpt-sim", "messages": HELLO, "stream": True})
    finally:
        closed.close()
    assert_error(response, 502, code="connect_error", contains="unreachable")


@pytest.mark.parametrize("stream", [True, False])
def test_upstream_timeout_is_504(start_gateway, stream):
    gateway = start_gateway(SWITCHBOARD_READ_TIMEOUT_MS="300")
    # The simulator answers (and, streamed, sends its role chunk) at once but its first token only after
    # 2 s: the read timeout passes first. Nothing reached the client yet, so it is a plain 504.
    response = post(gateway, {"model": "openai/gpt-sim", "messages": HELLO, "stream": stream,
                              "simulator": {"first_token_ms": 2000}})
    assert_error(response, 504, code="timeout")
    record = gateway.records[-1]
    assert record.status == 504 and len(record.attempts) == 1  # a slow route is not retried


def test_read_timeout_after_the_first_token_ends_the_stream_with_an_error_event(start_gateway):
    gateway = start_gateway(SWITCHBOARD_READ_TIMEOUT_MS="300")
    response = post(gateway, {"model": "openai/gpt-sim", "messages": HELLO, "stream": True,
                              "simulator": {"tokens": 5, "gap_ms": 2000}})
    assert response.status_code == 200
    assert response.text.startswith('data: {"id"') and "(simulated)" in response.text
    assert response.text.rstrip().endswith('"code":"timeout"}}\n\ndata: [DONE]')  # the error, then the end


@pytest.mark.parametrize("model", ["openai/gpt-sim", "anthropic/claude-sim"])
@pytest.mark.parametrize("fault", [{"error_after": 3}, {"cut_after": 3}])
def test_mid_stream_failure_ends_with_error_event(gateway, model, fault):
    response = post(gateway, {"model": model, "messages": HELLO, "stream": True, "simulator": fault})
    assert response.status_code == 200
    events = [e for e in response.content.split(b"\n\n") if e]
    assert events[-2].startswith(b'data: {"error":') and events[-1] == b"data: [DONE]"  # the error, then the end
    assert response.content.endswith(b"\n\n")  # whole events only, never half a JSON object
    record = gateway.records[-1]
    assert record.status == 502 and record.outcome == "stream_error"

    with pytest.raises(openai.APIError):
        for _ in gateway.client().chat.completions.create(model=model, messages=HELLO, stream=True,
                                                         extra_body={"simulator": fault}):
            pass


def test_unknown_route_and_method_get_openai_bodies(gateway):
    assert_error(httpx.get(gateway.url + "/v1/nothing"), 404)
    assert_error(httpx.get(gateway.base_url + "/chat/completions", headers=AUTH), 405)


def test_wrong_content_type_is_415(gateway):
    response = httpx.post(gateway.base_url + "/chat/completions", content=b"model=x",
                          headers={**AUTH, "content-type": "application/x-www-form-urlencoded"})
    assert_error(response, 415)


def test_body_over_limit_is_413(start_gateway):
    gateway = start_gateway(SWITCHBOARD_MAX_BODY_BYTES="1000")
    response = post(gateway, {"model": "simulator/echo", "messages": [{"role": "user", "content": "x" * 2000}]})
    assert_error(response, 413, code="request_too_large")


def test_unexpected_bug_still_gives_an_openai_500_and_one_record(gateway, monkeypatch):
    import switchboard.core.gateway

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(switchboard.core.gateway, "plan", broken)
    response = post(gateway, {"model": "openai/gpt-sim", "messages": HELLO})
    assert_error(response, 500, code="internal_error")
    assert "boom" not in response.text
    [record] = gateway.records
    assert record.status == 500 and record.outcome == "internal_error"
