"""Key scopes over a real socket: an admin key is not a gateway key unless it was made as both, and the
OpenAPI document is for admin keys only."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from switchboard import aws
from switchboard.config.settings import Settings
from switchboard.keys.auth import digest
from switchboard.ops.cli import main as cli
from switchboard.ops.secrets_admin import SecretsAdmin
from tests.conftest import ADMIN_KEY, EXTRA_SECRETS, GATEWAY_KEY

HELLO = {"model": "simulator/echo", "messages": [{"role": "user", "content": "hi"}]}


def bearer(key: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key else {}


def chat(gateway, key: str | None) -> httpx.Response:
    return httpx.post(gateway.base_url + "/chat/completions", json=HELLO, headers=bearer(key), timeout=20)


def models(gateway, key: str | None) -> httpx.Response:
    return httpx.get(gateway.base_url + "/models", headers=bearer(key), timeout=20)


def calls(gateway, key: str | None) -> httpx.Response:
    return httpx.get(gateway.base_url + "/calls", params={"task_id": "scopes"}, headers=bearer(key), timeout=20)


def assert_gateway_key_required(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "gateway_key_required"
    assert "gateway key" in error["message"]


def eventually(check, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


# -- environment keys ---------------------------------------------------------------------------------------


def test_an_environment_admin_key_cannot_chat_or_list_models(gateway):
    assert_gateway_key_required(chat(gateway, ADMIN_KEY))
    assert_gateway_key_required(models(gateway, ADMIN_KEY))
    assert not [r for r in gateway.records if r.status == 200 and r.key_name and r.key_name.startswith("env-admin")]


def test_an_environment_gateway_key_chats_but_cannot_read_calls(start_gateway, ledger_env):
    gateway = start_gateway(**ledger_env)
    assert chat(gateway, GATEWAY_KEY).status_code == 200
    assert models(gateway, GATEWAY_KEY).status_code == 200
    refused = calls(gateway, GATEWAY_KEY)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_key_required"
    assert calls(gateway, ADMIN_KEY).status_code == 200


def test_one_key_in_both_environment_lists_has_both_scopes(start_gateway, ledger_env):
    gateway = start_gateway(**ledger_env, SWITCHBOARD_API_KEYS=f"{GATEWAY_KEY},{ADMIN_KEY}")
    assert chat(gateway, ADMIN_KEY).status_code == 200
    assert calls(gateway, ADMIN_KEY).status_code == 200


# -- stored keys ----------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(local_aws, monkeypatch) -> None:
    """`switchboard keys ...` acting on the embedded stack through the environment, as the gateway finds it."""
    for name, value in local_aws.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def create_with_cli(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert cli.main(["keys", "create", *argv]) == 0
    key = capsys.readouterr().out.strip()
    EXTRA_SECRETS.append(key)
    return key


def test_stored_key_scopes_follow_the_create_flags(start_gateway, ledger_env, cli_env, capsys):
    run = uuid.uuid4().hex[:8]
    admin_only = create_with_cli(capsys, f"ops-{run}", "--admin")
    both = create_with_cli(capsys, f"ops-agent-{run}", "--admin", "--gateway")
    agent = create_with_cli(capsys, f"agent-{run}")
    gateway = start_gateway(**ledger_env)
    assert eventually(lambda: calls(gateway, both).status_code == 200), "the new keys never took effect"

    assert calls(gateway, admin_only).status_code == 200
    assert_gateway_key_required(chat(gateway, admin_only))
    assert_gateway_key_required(models(gateway, admin_only))

    assert chat(gateway, both).status_code == 200
    assert gateway.records[-1].key_name == f"ops-agent-{run}"

    assert chat(gateway, agent).status_code == 200
    assert calls(gateway, agent).status_code == 403

    capsys.readouterr()
    assert cli.main(["keys", "list"]) == 0
    rows = {line.split()[0]: line.split()[1:3] for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows[f"ops-{run}"] == ["yes", "no"] and rows[f"ops-agent-{run}"] == ["yes", "yes"]
    assert rows[f"agent-{run}"] == ["no", "yes"]


def test_entries_stored_before_scopes_existed_keep_their_meaning(start_gateway, ledger_env):
    """{"admin": true} with no "gateway" field is admin-only; {"admin": false} is a gateway key."""
    settings = Settings.from_env(ledger_env)
    admin = SecretsAdmin(aws.client("secretsmanager", settings), settings.provider_keys_secret,
                         settings.gateway_keys_secret)
    run = uuid.uuid4().hex[:8]
    old_admin, old_agent = f"sb-old-admin-{run}-fake", f"sb-old-agent-{run}-fake"
    EXTRA_SECRETS.extend([old_admin, old_agent])
    value = json.loads(admin.sm.get_secret_value(SecretId=settings.gateway_keys_secret)["SecretString"] or "{}")
    value.setdefault("keys", []).extend([
        {"name": f"old-admin-{run}", "sha256": digest(old_admin), "admin": True},
        {"name": f"old-agent-{run}", "sha256": digest(old_agent), "admin": False}])
    admin.sm.put_secret_value(SecretId=settings.gateway_keys_secret, SecretString=json.dumps(value))

    gateway = start_gateway(**ledger_env)
    assert eventually(lambda: calls(gateway, old_admin).status_code == 200)
    assert_gateway_key_required(chat(gateway, old_admin))
    assert chat(gateway, old_agent).status_code == 200
    assert calls(gateway, old_agent).status_code == 403


# -- the OpenAPI document -------------------------------------------------------------------------------------


def test_openapi_is_served_to_admin_keys_only(gateway):
    missing = httpx.get(gateway.url + "/openapi.json", timeout=20)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    refused = httpx.get(gateway.url + "/openapi.json", headers=bearer(GATEWAY_KEY), timeout=20)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_key_required"

    document = httpx.get(gateway.url + "/openapi.json", headers=bearer(ADMIN_KEY), timeout=20)
    assert document.status_code == 200
    assert document.json()["openapi"].startswith("3.") and "/v1/calls" in document.json()["paths"]
    assert httpx.get(gateway.url + "/docs", timeout=20).status_code == 404
