"""Provider keys and gateway keys in Secrets Manager, read through Powertools Parameters.

Two JSON secrets:
  * provider keys: `{"openai": "sk-...", "anthropic": "..."}`
  * gateway keys:  `{"keys": [{"name": "...", "sha256": "<hex>", "admin": false, "created_at": "..."}]}`
    (a gateway key itself is never stored, only its SHA-256).

Caching (`SWITCHBOARD_SECRETS_MAX_AGE`, default 300 s): a value younger than 80% of the age is
served from memory; between 80% and 100% it is served while a background thread refreshes it; older
than the age it is fetched before use. So a warm request does not wait on Secrets Manager, and a
created or revoked key takes effect within the cache age. Environment variables override the
secrets (`OPENAI_API_KEY` and the rest, `SWITCHBOARD_API_KEYS`, `SWITCHBOARD_ADMIN_KEYS`).
"""

from __future__ import annotations

import json
import secrets as random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from switchboard.auth import KEY_PREFIX, StoredKey, digest
from switchboard.settings import Settings

REFRESH_AHEAD = 0.8


class CachedSecret:
    """One JSON secret, cached; `fetch` returns the parsed value (or {} when the secret has none)."""

    def __init__(self, fetch: Callable[[], dict], max_age_s: float) -> None:
        self._fetch = fetch
        self.max_age_s = max_age_s
        self._value: dict | None = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()
        self._refreshing = False

    @property
    def age_s(self) -> float:
        return time.monotonic() - self._fetched_at

    def fresh_enough(self) -> bool:
        return self._value is not None and self.age_s < self.max_age_s

    def get(self) -> dict:
        """The value: from memory when fresh, refreshed behind the caller when nearly stale."""
        if not self.fresh_enough():
            return self.refresh()
        if self.age_s >= self.max_age_s * REFRESH_AHEAD and not self._refreshing:
            self._refreshing = True
            threading.Thread(target=self._refresh_quietly, name="secret-refresh", daemon=True).start()
        return self._value  # type: ignore[return-value]

    def refresh(self) -> dict:
        with self._lock:
            if self.fresh_enough() and self.age_s < self.max_age_s * REFRESH_AHEAD:
                return self._value  # type: ignore[return-value]
            value = self._fetch()
            self._value, self._fetched_at = value, time.monotonic()
            return value

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # keep serving the cached value; the next stale read retries
            from switchboard.observability import logger

            logger.warning("secret refresh failed", extra={"error_type": type(exc).__name__})
        finally:
            self._refreshing = False


def secrets_fetcher(settings: Settings, name: str) -> Callable[[], dict]:
    """Read one JSON secret through Powertools Parameters; a secret with no value yet reads as {}."""

    def fetch() -> dict:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        from switchboard.aws import client

        provider = SecretsProvider(boto3_client=client("secretsmanager", settings))
        try:
            value = provider.get(name, transform="json", force_fetch=True)
        except GetParameterError as exc:
            if "ResourceNotFoundException" in str(exc) or "AWSCURRENT" in str(exc):
                return {}  # created by the stack, no value stored yet
            raise
        return value if isinstance(value, dict) else {}

    return fetch


class Secrets:
    """The gateway's view of both secrets, with environment overrides applied."""

    def __init__(self, settings: Settings, provider_keys: CachedSecret | None,
                 gateway_keys: CachedSecret | None) -> None:
        self.settings = settings
        self.provider_secret = provider_keys
        self.gateway_secret = gateway_keys

    @classmethod
    def from_settings(cls, settings: Settings) -> Secrets:
        def cached(name: str | None) -> CachedSecret | None:
            return CachedSecret(secrets_fetcher(settings, name), settings.secrets_max_age_s) if name else None

        return cls(settings, cached(settings.provider_keys_secret), cached(settings.gateway_keys_secret))

    def provider_key(self, provider: str) -> str | None:
        config = self.settings.provider(provider)
        if config and config.api_key:
            return config.api_key
        if self.provider_secret is None:
            return None
        value = self.provider_secret.get().get(provider)
        return value if isinstance(value, str) and value else None

    def stored_gateway_keys(self) -> list[StoredKey]:
        if self.gateway_secret is None:
            return []
        return parse_gateway_keys(self.gateway_secret.get())

    async def ensure_fresh(self) -> None:
        """Before a request: fetch, off the event loop, any secret too old to serve (normally none)."""
        for secret in (self.provider_secret, self.gateway_secret):
            if secret is not None and not secret.fresh_enough():
                import asyncio

                await asyncio.to_thread(secret.refresh)

    def warm(self) -> None:
        """Fetch both secrets now (a background thread at start-up calls this)."""
        for secret in (self.provider_secret, self.gateway_secret):
            if secret is not None:
                secret.refresh()


def parse_gateway_keys(value: dict) -> list[StoredKey]:
    keys = []
    for entry in value.get("keys", []) if isinstance(value, dict) else []:
        if isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and entry.get("name"):
            keys.append(StoredKey(str(entry["name"]), entry["sha256"], bool(entry.get("admin")),
                                  _limit(entry.get("rpm")), _limit(entry.get("concurrent"))))
    return keys


def _limit(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


# -- administration (the CLI): read-modify-write of the secrets ---------------------------------------


class SecretsAdmin:
    def __init__(self, secretsmanager: Any, provider_keys_secret: str, gateway_keys_secret: str) -> None:
        self.sm = secretsmanager
        self.provider_keys_secret = provider_keys_secret
        self.gateway_keys_secret = gateway_keys_secret

    def _read(self, name: str) -> dict:
        try:
            raw = self.sm.get_secret_value(SecretId=name)["SecretString"]
        except self.sm.exceptions.ResourceNotFoundException:
            return {}
        value = json.loads(raw or "{}")
        return value if isinstance(value, dict) else {}

    def _write(self, name: str, value: dict) -> None:
        self.sm.put_secret_value(SecretId=name, SecretString=json.dumps(value))

    def create_key(self, name: str, admin: bool = False, rpm: int | None = None, concurrent: int | None = None) -> str:
        """A new gateway key; only its hash is stored, so this is the one time it can be seen."""
        value = self._read(self.gateway_keys_secret)
        keys = value.setdefault("keys", [])
        if any(k.get("name") == name for k in keys):
            raise ValueError(f"a key named '{name}' exists; revoke it first or pick another name")
        key = KEY_PREFIX + random.token_urlsafe(32)
        entry = {"name": name, "sha256": digest(key), "admin": admin,
                 "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
        entry.update({k: v for k, v in (("rpm", rpm), ("concurrent", concurrent)) if v is not None})
        keys.append(entry)
        self._write(self.gateway_keys_secret, value)
        return key

    def list_keys(self) -> list[dict]:
        keys = self._read(self.gateway_keys_secret).get("keys", [])
        return [{"name": k.get("name"), "admin": bool(k.get("admin")), "created_at": k.get("created_at"),
                 "rpm": k.get("rpm"), "concurrent": k.get("concurrent")} for k in keys if isinstance(k, dict)]

    def revoke_key(self, name: str) -> bool:
        value = self._read(self.gateway_keys_secret)
        keys = value.get("keys", [])
        kept = [k for k in keys if k.get("name") != name]
        if len(kept) == len(keys):
            return False
        value["keys"] = kept
        self._write(self.gateway_keys_secret, value)
        return True

    def set_provider_key(self, provider: str, key: str) -> None:
        value = self._read(self.provider_keys_secret)
        value[provider] = key
        self._write(self.provider_keys_secret, value)

    def providers(self) -> list[str]:
        return sorted(self._read(self.provider_keys_secret))
