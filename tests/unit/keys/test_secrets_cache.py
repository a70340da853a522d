"""The secrets cache never puts Secrets Manager on the request path once a value exists.

Unit tests drive CachedSecret, Secrets and KeyStore directly; the gateway tests stall the real fetch from
the embedded Secrets Manager (moto) and time requests over a real socket.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from switchboard import aws
from switchboard.config.settings import Settings
from switchboard.keys import secrets as secrets_module
from switchboard.keys.auth import KeyStore, env_keys
from switchboard.keys.secrets import CachedSecret, Secrets
from switchboard.ops.secrets_admin import SecretsAdmin
from switchboard.wire.errors import GatewayError
from tests.conftest import ADMIN_KEY, EXTRA_SECRETS, GATEWAY_KEY, LOGS

HELLO = [{"role": "user", "content": "hi"}]


class StallingFetch:
    """A fetch that answers at once until `stall()`, then blocks until `release()` (or its own timeout)."""

    def __init__(self, value: dict | None = None, fail: bool = False) -> None:
        self.value = value if value is not None else {"n": 1}
        self.calls = 0
        self.fail = fail
        self.stalled = False
        self._released = threading.Event()

    def stall(self) -> None:
        self.stalled = True

    def release(self) -> None:
        self._released.set()

    def __call__(self) -> dict:
        self.calls += 1
        if self.stalled:
            self._released.wait(5)
        if self.fail:
            raise ConnectionError("secrets manager unreachable (simulated)")
        return dict(self.value, n=self.calls)


def wait_for(check, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


# -- CachedSecret -------------------------------------------------------------------------------------------


def test_a_stale_value_is_served_at_once_while_the_refresh_stalls():
    fetch = StallingFetch()
    secret = CachedSecret(fetch, max_age_s=0.2)
    assert secret.refresh() == {"n": 1}
    fetch.stall()
    time.sleep(0.25)  # past the whole age, not just the refresh-ahead point
    started = time.monotonic()
    assert secret.get() == {"n": 1}
    assert secret.get() == {"n": 1}
    # A read that waited would take the stall's 5 s; a busy machine does not take 1 s for two reads.
    assert time.monotonic() - started < 1.0, "a read waited on Secrets Manager"
    assert wait_for(lambda: fetch.calls == 2), "no refresh started behind the reader"
    fetch.release()
    assert wait_for(lambda: secret.get() == {"n": 2}), "the refreshed value never replaced the stale one"
    assert fetch.calls == 2  # one refresh at a time, however many reads


def test_a_failing_refresh_keeps_the_last_good_value_is_logged_and_backs_off():
    fetch = StallingFetch()
    secret = CachedSecret(fetch, max_age_s=0.1)
    secret.refresh()
    fetch.fail = True
    time.sleep(0.15)
    logged_before = len(LOGS.records_with("secret fetch failed"))
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # a busy gateway reading the secret on every request
        assert secret.get() == {"n": 1}
        time.sleep(0.005)
    assert fetch.calls == 2, f"{fetch.calls - 1} refreshes in 0.5 s: failures are retried without backoff"
    assert len(LOGS.records_with("secret fetch failed")) > logged_before


def test_a_secret_never_read_is_fetched_behind_the_first_read_not_on_it():
    fetch = StallingFetch()
    fetch.stall()
    secret = CachedSecret(fetch, max_age_s=60)
    started = time.monotonic()
    with pytest.raises(secrets_module.SecretUnavailable):
        secret.get()
    assert time.monotonic() - started < 1.0  # not the stall's 5 s
    fetch.release()
    assert wait_for(lambda: secret.has_value) and secret.get() == {"n": 1}


# -- Secrets: ensure_fresh and the 503 -----------------------------------------------------------------------


def settings_with_secrets() -> Settings:
    return Settings.from_env({"SWITCHBOARD_PROVIDER_KEYS_SECRET": "provider", "SWITCHBOARD_GATEWAY_KEYS_SECRET": "gw"})


def test_ensure_fresh_waits_for_a_cold_secret_only_as_long_as_its_timeout_and_never_raises():
    fetch = StallingFetch({"keys": []})
    fetch.stall()
    secrets = Secrets(settings_with_secrets(), None, CachedSecret(fetch, max_age_s=60))
    secrets.fetch_timeout_s = 0.2

    started = time.monotonic()
    asyncio.run(secrets.ensure_fresh())
    assert time.monotonic() - started < 1.0, "ensure_fresh waited past its timeout"
    with pytest.raises(GatewayError) as refused:
        secrets.stored_gateway_keys()
    assert refused.value.status == 503 and refused.value.code == "secrets_unavailable"
    assert "Secrets Manager" in refused.value.message
    fetch.release()
    assert wait_for(lambda: secrets.gateway_secret.has_value)
    assert secrets.stored_gateway_keys() == []


def test_ensure_fresh_never_raises_when_the_first_fetch_fails():
    failing = StallingFetch(fail=True)
    secrets = Secrets(settings_with_secrets(), CachedSecret(failing, max_age_s=60), None)
    asyncio.run(secrets.ensure_fresh())  # logged, not raised
    with pytest.raises(GatewayError) as refused:
        secrets.provider_key("groq")
    assert refused.value.status == 503
    failing.stall()  # a second fetch would now hang: waiting on it would take the 3 s fetch timeout
    started = time.monotonic()
    asyncio.run(secrets.ensure_fresh())  # backing off: no second wait on a failing Secrets Manager
    assert time.monotonic() - started < 1.0 and failing.calls == 1
    failing.release()


def test_provider_key_from_the_environment_never_touches_the_secret():
    fetch = StallingFetch(fail=True)
    settings = Settings.from_env({"SWITCHBOARD_PROVIDER_KEYS_SECRET": "provider", "GROQ_API_KEY": "sk-env-fake"})
    secrets = Secrets(settings, CachedSecret(fetch, max_age_s=60), None)
    assert secrets.provider_key("groq") == "sk-env-fake"
    assert fetch.calls == 0


# -- KeyStore: environment keys first, with no I/O -----------------------------------------------------------


def unreadable_secret():
    raise GatewayError(503, "gateway keys unavailable (simulated)", code="secrets_unavailable")


def test_environment_keys_authenticate_while_the_stored_keys_cannot_be_read():
    keys = KeyStore(env_keys([GATEWAY_KEY], [ADMIN_KEY]), stored=unreadable_secret)
    identity = keys.authenticate(f"Bearer {GATEWAY_KEY}")
    assert identity.name == "env-1" and identity.gateway
    assert keys.authenticate(f"Bearer {ADMIN_KEY}", admin=True).admin
    with pytest.raises(GatewayError) as unknown:
        keys.authenticate("Bearer sb-not-a-key-fake")
    assert unknown.value.status == 503  # an unknown key cannot be told from a stored one just now


def test_static_identity_matches_environment_keys_only_and_does_no_io():
    looked_up = []
    keys = KeyStore(env_keys([GATEWAY_KEY], [ADMIN_KEY]), stored=lambda: looked_up.append(1) or [])
    assert keys.static_identity(f"Bearer {GATEWAY_KEY}").name == "env-1"
    assert keys.static_identity("Bearer sb-stored-or-unknown-fake") is None
    assert keys.static_identity(f"Bearer {ADMIN_KEY}", admin=True).admin
    with pytest.raises(GatewayError) as missing:
        keys.static_identity(None)
    assert missing.value.status == 401
    with pytest.raises(GatewayError) as wrong_scope:
        keys.static_identity(f"Bearer {GATEWAY_KEY}", admin=True)
    assert wrong_scope.value.status == 403
    assert looked_up == []


# -- the gateway: a stalled Secrets Manager over a real socket ------------------------------------------------


def secrets_admin(ledger_env: dict) -> SecretsAdmin:
    settings = Settings.from_env(ledger_env)
    return SecretsAdmin(aws.client("secretsmanager", settings), settings.provider_keys_secret,
                        settings.gateway_keys_secret)


def chat(gateway, key: str) -> httpx.Response:
    return httpx.post(gateway.base_url + "/chat/completions", timeout=20, headers={"authorization": f"Bearer {key}"},
                      json={"model": "simulator/echo", "messages": HELLO})


def timed(call) -> tuple[float, object]:
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


def test_a_slow_refresh_delays_no_request_and_never_blocks_the_loop(start_gateway, ledger_env):
    gateway = start_gateway(**ledger_env)  # secrets cached for 1 s
    stored_key = secrets_admin(ledger_env).create_key("stall-" + uuid.uuid4().hex[:8])
    EXTRA_SECRETS.append(stored_key)
    assert wait_for(lambda: chat(gateway, stored_key).status_code == 200, timeout=5)

    secret = gateway.server.app.state.gateway.secrets.gateway_secret
    real_fetch = secret._fetch
    # Secrets Manager stalls for 8 s, four times the longest bound below: a request that waited on it fails.
    secret._fetch = lambda: (time.sleep(8), real_fetch())[1]
    time.sleep(1.1)  # the cached value is now older than the cache age

    with ThreadPoolExecutor(2) as pool:
        models = pool.submit(timed, lambda: httpx.get(gateway.base_url + "/models", timeout=20,
                                                      headers={"authorization": f"Bearer {stored_key}"}))
        time.sleep(0.05)
        health_s, health = timed(lambda: httpx.get(gateway.url + "/health", timeout=20))
        models_s, listed = models.result()
    assert health.status_code == 200 and health_s < 1.0, f"/health took {health_s:.2f} s: the event loop was blocked"
    assert listed.status_code == 200 and models_s < 1.0, f"/v1/models took {models_s:.2f} s"

    chat_s, answer = timed(lambda: chat(gateway, stored_key))
    assert answer.status_code == 200 and chat_s < 2.0, f"a stored-key chat took {chat_s:.2f} s behind the refresh"
    env_s, answer = timed(lambda: chat(gateway, GATEWAY_KEY))
    assert answer.status_code == 200 and env_s < 2.0, f"an environment-key chat took {env_s:.2f} s"


def test_a_cold_stalled_secret_delays_environment_keys_not_at_all_and_stored_keys_boundedly(
        start_gateway, ledger_env, monkeypatch):
    """The first fetch hangs: environment keys answer at once; a stored key waits its timeout, then gets 503."""
    settings = Settings.from_env(ledger_env)
    release = threading.Event()
    real_fetcher = secrets_module.secrets_fetcher

    def stalling_fetcher(settings_: Settings, name: str):
        fetch = real_fetcher(settings_, name)
        if name != settings.gateway_keys_secret:
            return fetch
        return lambda: (release.wait(10), fetch())[1]

    monkeypatch.setattr(secrets_module, "secrets_fetcher", stalling_fetcher)
    stored_key = secrets_admin(ledger_env).create_key("cold-" + uuid.uuid4().hex[:8])
    EXTRA_SECRETS.append(stored_key)
    try:
        gateway = start_gateway(**ledger_env)
        secrets = gateway.server.app.state.gateway.secrets
        secrets.fetch_timeout_s = 5.0
        env_s, answer = timed(lambda: chat(gateway, GATEWAY_KEY))
        assert answer.status_code == 200 and env_s < 1.5, f"an environment key waited {env_s:.2f} s"

        secrets.fetch_timeout_s = 0.5
        stored_s, answer = timed(lambda: chat(gateway, stored_key))
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "secrets_unavailable" and answer.headers["retry-after"]
        assert stored_s < 2.0, f"a stored key waited {stored_s:.2f} s, past the fetch timeout"
    finally:
        release.set()
    assert wait_for(lambda: chat(gateway, stored_key).status_code == 200, timeout=5)
