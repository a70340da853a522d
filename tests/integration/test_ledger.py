"""The call ledger end to end: records in the (emulated) DynamoDB table, reports, and the fallback log."""

from __future__ import annotations

import time
import uuid

import httpx
import openai
import pytest

from switchboard import aws
from switchboard.config.settings import Settings
from switchboard.ledger.store import CallStore
from switchboard.ledger.writer import FALLBACK_MESSAGE
from switchboard.ops.secrets_admin import SecretsAdmin
from tests import sse
from tests.conftest import ADMIN_KEY, EXTRA_SECRETS, GATEWAY_KEY, LOGS, OPENAI_KEY

HELLO = [{"role": "user", "content": "hi"}]


def store_for(env: dict) -> CallStore:
    settings = Settings.from_env(env)
    return CallStore(aws.client("dynamodb", settings), settings.table_name)


def stream_call(gateway, task: str, conversation: str, model="openai/gpt-4.1-mini", **simulator) -> httpx.Response:
    body = {"model": model, "messages": HELLO, "stream": True, "simulator": simulator}
    return httpx.post(gateway.base_url + "/chat/completions", json=body, timeout=20, headers={
        "authorization": f"Bearer {GATEWAY_KEY}", "x-inference-task-id": task,
        "x-inference-metadata-conversation-id": conversation, "x-inference-environment": "test"})


def test_success_record_fields(start_gateway, ledger_env):
    gateway = start_gateway(**ledger_env)
    task = "task-" + uuid.uuid4().hex[:8]
    response = stream_call(gateway, task, "conv-a", cached_tokens=4, prompt_tokens=100)
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    item = store_for(ledger_env).call(response.headers["x-request-id"])
    assert item is not None
    assert item["task_id"] == task and item["environment"] == "test" and item["key_name"] == "env-1"
    assert item["provider"] == "openai" and item["model"] == "gpt-4.1-mini"
    assert item["requested_model"] == "openai/gpt-4.1-mini" and item["stream"] is True
    assert item["status"] == 200 and item["outcome"] == "stop"
    assert item["prompt_tokens"] == 100 and item["completion_tokens"] == 12 and item["cached_tokens"] == 4
    # gpt-4.1-mini: 0.40 input, 0.10 cached input, 1.60 output per million
    assert item["cost_usd"] == pytest.approx((96 * 0.40 + 4 * 0.10 + 12 * 1.60) / 1e6)
    assert 0 < item["ttft_ms"] <= item["total_ms"] and 0 <= item["overhead_ms"] < item["total_ms"]
    assert item["metadata"] == {"conversation-id": "conv-a"}
    assert item["expires_at"] > time.time() + 80 * 86400
    assert "trace" not in item  # no message contents by default
    assert GATEWAY_KEY not in repr(item) and OPENAI_KEY not in repr(item)


def test_upstream_error_record(start_gateway, ledger_env):
    gateway = start_gateway(**ledger_env)
    response = stream_call(gateway, "errors", "conv-e", fail_status=429)
    assert response.status_code == 429
    item = store_for(ledger_env).call(response.headers["x-request-id"])
    assert item["status"] == 429 and item["outcome"] == "http_error" and "429" in item["error"]
    assert "ttft_ms" not in item and "cost_usd" not in item


def test_mid_stream_failure_record(start_gateway, ledger_env):
    gateway = start_gateway(**ledger_env)
    response = stream_call(gateway, "errors", "conv-m", error_after=3)
    events = response.text.rstrip().split("\n\n")
    assert response.status_code == 200 and '"error"' in events[-2] and events[-1] == "data: [DONE]"
    item = store_for(ledger_env).call(response.headers["x-request-id"])
    assert item["status"] == 502 and item["outcome"] == "stream_error"
    assert item["ttft_ms"] > 0  # three tokens did arrive


def test_client_disconnect_record(start_gateway, ledger_env):
    gateway = start_gateway(**ledger_env)
    body = {"model": "openai/gpt-4.1-mini", "messages": HELLO, "stream": True,
            "simulator": {"tokens": 60, "gap_ms": 40}}
    with httpx.stream("POST", gateway.base_url + "/chat/completions", json=body,
                      headers={"authorization": f"Bearer {GATEWAY_KEY}", "x-inference-task-id": "hangups"}) as response:
        request_id = response.headers["x-request-id"]
        for event in sse.events(response):
            if "(simulated)" in event.data:
                break
    store = store_for(ledger_env)
    deadline = time.time() + 5
    while (item := store.call(request_id)) is None and time.time() < deadline:
        time.sleep(0.05)
    assert item is not None and item["outcome"] == "client_disconnected" and item["status"] == 499


def test_unreachable_table_loses_nothing(start_gateway, ledger_env):
    """DynamoDB failing: the response completes and the full record is in the structured log."""
    gateway = start_gateway(**{**ledger_env, "SWITCHBOARD_TABLE": "no-such-table"})
    response = stream_call(gateway, "dynamo-down", "conv-d")
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    request_id = response.headers["x-request-id"]
    logged = [line for line in LOGS.records_with(FALLBACK_MESSAGE) if request_id in line]
    assert len(logged) == 1
    assert '"completion_tokens":12' in logged[0] and '"task_id":"dynamo-down"' in logged[0]  # the whole record


def test_slow_table_write_is_bounded(start_gateway, ledger_env, monkeypatch):
    gateway = start_gateway(**ledger_env, SWITCHBOARD_LEDGER_WRITE_BUDGET_MS="50")
    store = gateway.server.app.state.gateway.store
    # A 4 s write against a 50 ms budget: a call that waited for it would miss the bound twice over.
    monkeypatch.setattr(store, "_put_call", lambda record: time.sleep(4))
    started = time.perf_counter()
    response = stream_call(gateway, "dynamo-slow", "conv-s")
    assert response.text.endswith("data: [DONE]\n\n")
    assert time.perf_counter() - started < 2.0
    assert any(response.headers["x-request-id"] in line for line in LOGS.records_with(FALLBACK_MESSAGE))


def test_calls_and_usage_admin_api(start_gateway, ledger_env):
    gateway = start_gateway(**ledger_env)
    task, conversation = "task-" + uuid.uuid4().hex[:8], "conv-" + uuid.uuid4().hex[:8]
    ids = [stream_call(gateway, task, conversation).headers["x-request-id"] for _ in range(3)]
    stream_call(gateway, task, "other-conversation")
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}

    listed = httpx.get(gateway.base_url + "/calls", params={"conversation_id": conversation}, headers=admin).json()
    assert [c["request_id"] for c in listed["data"]] == ids[::-1]  # exactly those calls, newest first
    assert all(c["ttft_ms"] > 0 and c["cost_usd"] > 0 and c["completion_tokens"] == 12 for c in listed["data"])

    by_task = httpx.get(gateway.base_url + "/calls", params={"task_id": task, "limit": 2}, headers=admin).json()
    assert len(by_task["data"]) == 2

    usage = httpx.get(gateway.base_url + "/usage", params={"task_id": task}, headers=admin).json()
    assert usage["totals"]["calls"] == 4 and usage["totals"]["completion_tokens"] == 48
    [row] = usage["models"]
    assert row["provider"] == "openai" and row["model"] == "gpt-4.1-mini" and row["errors"] == 0
    assert row["cost_usd"] > 0 and row["cost_complete"] is True
    assert row["ttft_p50_ms"] is not None and row["ttft_p95_ms"] >= row["ttft_p50_ms"]

    everything = httpx.get(gateway.base_url + "/usage", headers=admin).json()
    assert everything["totals"]["calls"] >= 4

    user = {"authorization": f"Bearer {GATEWAY_KEY}"}
    assert httpx.get(gateway.base_url + "/calls", headers=user).status_code == 403
    assert httpx.get(gateway.base_url + "/usage").status_code == 401
    bad = httpx.get(gateway.base_url + "/calls", params={"since": "yesterday"}, headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"


def test_unpriced_model_is_flagged(start_gateway, ledger_env):
    gateway = start_gateway(**ledger_env)
    task = "task-" + uuid.uuid4().hex[:8]
    response = stream_call(gateway, task, "conv-u", model="openai/gpt-unknown-sim")
    item = store_for(ledger_env).call(response.headers["x-request-id"])
    assert "cost_usd" not in item and item["priced"] is False
    usage = httpx.get(gateway.base_url + "/usage", params={"task_id": task},
                      headers={"authorization": f"Bearer {ADMIN_KEY}"}).json()
    assert usage["models"][0]["cost_usd"] is None and usage["models"][0]["cost_complete"] is False


def test_trace_capture_is_opt_in_and_capped(start_gateway, ledger_env):
    gateway = start_gateway(**ledger_env, SWITCHBOARD_CAPTURE_TRACES="true", SWITCHBOARD_TRACE_MAX_CHARS="40")
    response = stream_call(gateway, "traces", "conv-t")
    item = store_for(ledger_env).call(response.headers["x-request-id"])
    assert item["trace"]["messages"].startswith('[{"role":"user"')
    assert item["trace"]["response"].startswith("(simulated) This is")
    assert item["trace"]["response"].endswith("...[truncated]")


def test_key_creation_rotation_and_revocation_through_cached_secret(start_gateway, ledger_env):
    gateway = start_gateway(**ledger_env)  # secrets cached for 1 s
    settings = Settings.from_env(ledger_env)
    admin = SecretsAdmin(aws.client("secretsmanager", settings), settings.provider_keys_secret,
                         settings.gateway_keys_secret)
    name = "agent-" + uuid.uuid4().hex[:6]
    first = admin.create_key(name)
    EXTRA_SECRETS.append(first)
    assert first not in repr(admin.sm.get_secret_value(SecretId=settings.gateway_keys_secret))

    def works(key: str) -> bool:
        client = gateway.client(key=key)
        try:
            client.chat.completions.create(model="simulator/echo", messages=HELLO)
        except openai.AuthenticationError:
            return False
        return True

    assert eventually(lambda: works(first))
    assert gateway.records[-1].key_name == name

    second = admin.create_key(name + "-rotated")  # rotation: the new key first, then revoke the old
    EXTRA_SECRETS.append(second)
    assert admin.revoke_key(name)
    assert eventually(lambda: works(second) and not works(first))


def test_provider_key_from_secret(start_gateway, ledger_env, simulator, sim_app):
    settings = Settings.from_env(ledger_env)
    admin = SecretsAdmin(aws.client("secretsmanager", settings), settings.provider_keys_secret,
                         settings.gateway_keys_secret)
    secret_key = "sk-test-from-secret-fake"
    EXTRA_SECRETS.append(secret_key)
    admin.set_provider_key("groq", secret_key)
    gateway = start_gateway(**ledger_env, GROQ_BASE_URL=simulator.url + "/v1")
    response = httpx.post(gateway.base_url + "/chat/completions", headers={"authorization": f"Bearer {GATEWAY_KEY}"},
                          json={"model": "groq/llama-sim", "messages": HELLO})
    assert response.status_code == 200
    assert sim_app.request_headers[-1]["authorization"] == f"Bearer {secret_key}"


def eventually(check, timeout: float = 4.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def test_calls_without_task_refuse_an_unbounded_range(start_gateway, ledger_env):
    gateway = start_gateway(**ledger_env)
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    response = httpx.get(gateway.base_url + "/calls", params={"since": "1970-01-01"}, headers=admin)
    assert response.status_code == 400 and "31 days" in response.json()["error"]["message"]
    response = httpx.get(gateway.base_url + "/calls", params={"since": "1970-01-01", "task_id": "x"}, headers=admin)
    assert response.status_code == 200
