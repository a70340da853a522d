"""The write side of the two secrets, for the CLI: read-modify-write of the provider keys and the gateway keys.

Only a gateway key's SHA-256 is stored (keys/records.py has the entry's shape); the key itself is returned
once, by `create_key`. The gateway only reads these secrets (keys/secrets.py), through its cache, so a change
reaches a running gateway once that cache expires (SWITCHBOARD_SECRETS_MAX_AGE).
"""

from __future__ import annotations

import json
import secrets as random
from datetime import UTC, datetime
from typing import Any

from switchboard.config.budget import LIMITS, BudgetConfig, budget_config
from switchboard.keys.auth import KEY_PREFIX, StoredKey, digest
from switchboard.keys.records import KeyRecord, parse_gateway_keys
from switchboard.limits.budgets.model import Budget

SecretsManager = Any  # a boto3 Secrets Manager client: botocore ships no types


class SecretsAdmin:
    def __init__(self, secretsmanager: SecretsManager, provider_keys_secret: str, gateway_keys_secret: str) -> None:
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

    def create_key(self, name: str, admin: bool = False, rpm: int | None = None, concurrent: int | None = None,
                   gateway: bool | None = None, budget: Budget | None = None) -> str:
        """A new key; only its hash is stored, so this is the one time it can be seen.

        An admin key is admin-only unless `gateway` is set too; any other key is a gateway key.
        """
        value = self._read(self.gateway_keys_secret)
        keys = value.setdefault("keys", [])
        if any(k.get("name") == name for k in keys):
            raise ValueError(f"a key named '{name}' exists; revoke it first or pick another name")
        key = KEY_PREFIX + random.token_urlsafe(32)
        record = KeyRecord(name=name, sha256=digest(key), admin=admin,
                           gateway=(not admin) if gateway is None else gateway,
                           created_at=datetime.now(UTC).isoformat(timespec="seconds"), rpm=rpm, concurrent=concurrent,
                           budget=None if budget is None else budget.config())
        keys.append(record.to_json())
        self._write(self.gateway_keys_secret, value)
        return key

    def update_key(self, name: str, changes: dict[str, object]) -> dict:
        """Change a key's limits: `rpm`, `concurrent` and the budget's fields (`daily_usd`, `monthly_usd`,
        `soft_percent`, `on_exceeded`); a value of None removes the field. Returns the entry as stored.

        The new budget is checked before anything is written (ValueError), and one left with no limit
        is removed whole. The rest of the entry is written back as it was read, hand edits included.
        """
        value = self._read(self.gateway_keys_secret)
        entry = next((k for k in value.get("keys", []) if isinstance(k, dict) and k.get("name") == name), None)
        if entry is None:
            raise LookupError(name)
        for field_name in ("rpm", "concurrent"):
            if field_name in changes:
                _set_or_drop(entry, field_name, changes[field_name])
        budget = dict(entry.get("budget") or {})
        for field_name in BudgetConfig.model_fields.keys() & changes.keys():
            _set_or_drop(budget, field_name, changes[field_name])
        if all(budget.get(limit) is None for limit in LIMITS):
            if any(field_name in changes for field_name in ("soft_percent", "on_exceeded")):
                raise ValueError("a budget needs a daily or monthly limit (--daily-budget-usd, --monthly-budget-usd)")
            entry.pop("budget", None)
        else:
            entry["budget"] = budget_config(budget, "budget").to_json()
        self._write(self.gateway_keys_secret, value)
        return entry

    def list_keys(self) -> list[dict]:
        """Every entry as it is stored, whether or not the gateway can use it."""
        keys = self._read(self.gateway_keys_secret).get("keys", [])
        return [{"name": k.get("name"), "admin": bool(k.get("admin")),
                 "gateway": bool(k.get("gateway", not k.get("admin"))), "created_at": k.get("created_at"),
                 "rpm": k.get("rpm"), "concurrent": k.get("concurrent"), "budget": k.get("budget")}
                for k in keys if isinstance(k, dict)]

    def stored_keys(self) -> list[StoredKey]:
        """The keys as the gateway parses them (budgets included), for reports."""
        return parse_gateway_keys(self._read(self.gateway_keys_secret))

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


def _set_or_drop(entry: dict, name: str, value: object) -> None:
    if value is None:
        entry.pop(name, None)
    else:
        entry[name] = value
