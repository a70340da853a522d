"""Inference Catalyst headers: caller-chosen provider URL and key, task id and metadata."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import CALLER_KEY, GATEWAY_KEY

HELLO = [{"role": "user", "content": "hi"}]


def post(gateway, headers, stream=False):
    return httpx.post(gateway.base_url + "/chat/completions",
                      json={"model": "groq/llama-sim", "messages": HELLO, "stream": stream},
                      headers={"authorization": f"Bearer {GATEWAY_KEY}", **headers})


@pytest.mark.parametrize("url", ["evil.example.com", "https://attacker.test", "api.openai.com.evil.test"])
def test_host_not_on_allowlist_is_refused(gateway, url):
    response = post(gateway, {"x-inference-provider-url": url})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "provider_url_refused"
    assert "allowlist" in response.json()["error"]["message"]


@pytest.mark.parametrize("url", ["169.254.169.254", "http://169.254.169.254/latest/meta-data", "127.0.0.1:8000",
                                 "10.0.0.5", "192.168.1.1", "[::1]", "localhost", "[::ffff:169.254.169.254]"])
def test_internal_addresses_are_refused(gateway, url):
    response = post(gateway, {"x-inference-provider-url": url})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "provider_url_refused"


def test_official_host_requires_https(gateway):
    response = post(gateway, {"x-inference-provider-url": "http://api.groq.com"})
    assert response.status_code == 400


@pytest.mark.parametrize("stream", [True, False])
def test_allowlisted_loopback_host_gets_the_callers_key(start_gateway, simulator, sim_app, stream):
    host = f"127.0.0.1:{simulator.port}"
    gateway = start_gateway(SWITCHBOARD_ALLOWED_PROVIDER_HOSTS=f"api.example.com, {host}")
    response = post(gateway, {"x-inference-provider-url": f"http://{host}",
                              "x-inference-provider-api-key": CALLER_KEY,
                              "x-inference-task-id": "catalyst-task",
                              "x-inference-metadata-conversation-id": "conv_9"}, stream=stream)
    assert response.status_code == 200, response.text
    assert CALLER_KEY not in response.text and CALLER_KEY not in str(dict(response.headers))
    assert sim_app.request_headers[-1]["authorization"] == f"Bearer {CALLER_KEY}"
    assert sim_app.requests[-1]["model"] == "llama-sim"  # provider prefix stripped
    record = gateway.records[-1]
    assert record.provider == "custom" and record.task_id == "catalyst-task"
    assert record.metadata == {"conversation-id": "conv_9"}
    assert CALLER_KEY not in repr(record.to_dict())


def test_caller_key_is_used_for_configured_provider(gateway, sim_app):
    response = httpx.post(gateway.base_url + "/chat/completions",
                          json={"model": "openai/gpt-sim", "messages": HELLO},
                          headers={"authorization": f"Bearer {GATEWAY_KEY}",
                                   "x-inference-provider-api-key": CALLER_KEY})
    assert response.status_code == 200
    assert sim_app.request_headers[-1]["authorization"] == f"Bearer {CALLER_KEY}"


# --- a Catalyst drop-in: what an agent configured for Inference Catalyst sends -----------------------------------


def catalyst_post(gateway, model, headers, path="/chat/completions", body=None):
    return httpx.post(gateway.base_url + path, json=body or {"model": model, "messages": HELLO}, headers=headers)


@pytest.mark.parametrize("hint,adapter_path", [("openai", "/chat/completions"), ("anthropic", "/messages")])
def test_x_inference_provider_routes_a_bare_model_name(gateway, sim_app, hint, adapter_path):
    response = catalyst_post(gateway, "house-model-7b", {"authorization": f"Bearer {GATEWAY_KEY}",
                                                         "x-inference-provider": hint})
    assert response.status_code == 200, response.text
    assert sim_app.requests[-1]["model"] == "house-model-7b"
    [record] = gateway.records
    assert record.provider == hint and record.model == "house-model-7b"


def test_x_inference_provider_keeps_a_slash_model_name_of_that_provider(gateway, sim_app):
    """Groq serves 'openai/gpt-oss-120b': with the provider named, the model name goes up as sent."""
    response = catalyst_post(gateway, "meta/llama-x", {"authorization": f"Bearer {GATEWAY_KEY}",
                                                       "x-inference-provider": "OpenAI"})
    assert response.status_code == 200 and sim_app.requests[-1]["model"] == "meta/llama-x"
    catalyst_post(gateway, "openai/gpt-sim", {"authorization": f"Bearer {GATEWAY_KEY}",
                                              "x-inference-provider": "openai"})
    assert sim_app.requests[-1]["model"] == "gpt-sim"


def test_unknown_x_inference_provider_is_a_400(gateway):
    response = catalyst_post(gateway, "x", {"authorization": f"Bearer {GATEWAY_KEY}",
                                            "x-inference-provider": "nowhere"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_provider"


@pytest.mark.parametrize("key_header", ["x-inference-observability-api-key", "x-inference-project-api-key"])
@pytest.mark.parametrize("path,body", [
    ("/chat/completions", None),
    ("/responses", {"model": "gpt-4o-mini", "input": "hi"}),
])
def test_catalyst_key_header_is_the_gateway_key_and_authorization_the_provider_key(
        gateway, sim_app, key_header, path, body):
    """Catalyst: the project key in its own header, the caller's provider key as the bearer token."""
    response = catalyst_post(gateway, "gpt-4o-mini", {key_header: GATEWAY_KEY, "x-inference-provider": "openai",
                                                      "authorization": f"Bearer {CALLER_KEY}"}, path, body)
    assert response.status_code == 200, response.text
    assert sim_app.request_headers[-1]["authorization"] == f"Bearer {CALLER_KEY}"
    assert gateway.records[-1].key_name == "env-1" and gateway.records[-1].provider == "openai"


def test_wrong_catalyst_key_is_refused_even_with_a_valid_bearer(gateway):
    response = catalyst_post(gateway, "gpt-4o-mini", {"x-inference-observability-api-key": "sb-wrong-fake",
                                                      "authorization": f"Bearer {GATEWAY_KEY}"})
    assert response.status_code == 401
