"""The gateway-keys secret's entries: written in one shape, read forgivingly, parsed once per value fetched."""

from __future__ import annotations

import json

from switchboard.config.settings import Settings
from switchboard.keys.records import KeyRecord, parse_gateway_keys
from switchboard.keys.secrets import CachedSecret, Secrets
from switchboard.limits.budgets.model import Budget
from switchboard.ops.secrets_admin import SecretsAdmin


class FakeSecretsManager:
    """Just enough of Secrets Manager for a read-modify-write."""

    class exceptions:
        class ResourceNotFoundException(Exception):
            pass

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get_secret_value(self, SecretId: str) -> dict:
        if SecretId not in self.values:
            raise self.exceptions.ResourceNotFoundException(SecretId)
        return {"SecretString": self.values[SecretId]}

    def put_secret_value(self, SecretId: str, SecretString: str) -> None:
        self.values[SecretId] = SecretString


def test_a_created_key_is_stored_field_by_field_in_order_with_unset_fields_left_out():
    sm = FakeSecretsManager()
    admin = SecretsAdmin(sm, "provider", "gateway")

    admin.create_key("agent", rpm=-5, budget=Budget(monthly_usd=300, downgrade_model="groq/llama-3.1-8b-instant"))

    (entry,) = json.loads(sm.values["gateway"])["keys"]
    assert list(entry) == ["name", "sha256", "admin", "gateway", "created_at", "rpm", "budget"]
    assert entry["rpm"] == -5  # stored as given; the gateway reads a negative limit as none
    assert entry["budget"] == {"monthly_usd": 300.0, "on_exceeded": {"model": "groq/llama-3.1-8b-instant"}}
    assert (entry["admin"], entry["gateway"]) == (False, True)


def test_hand_edited_entries_are_read_as_the_gateway_always_read_them():
    keys = parse_gateway_keys({"keys": [
        {"name": "loose", "sha256": "a" * 64, "admin": 1, "rpm": "sixty", "concurrent": -1, "created_at": 5},
        {"name": 7, "sha256": "b" * 64, "gateway": None},
        {"name": "", "sha256": "c" * 64}, {"name": "no-hash"}, {"name": "bad-hash", "sha256": 5}, "not an entry",
    ]})

    assert [(k.name, k.admin, k.gateway, k.rpm, k.concurrent) for k in keys] == [
        ("loose", True, False, None, None), ("7", False, False, None, None)]
    assert parse_gateway_keys({"keys": "none"}) == [] and parse_gateway_keys([]) == []
    assert KeyRecord.read({"name": "x"}) is None


def test_the_gateway_keys_are_parsed_once_per_value_fetched_on_the_fetch_thread():
    value = {"keys": [{"name": "agent", "sha256": "a" * 64, "budget": {"daily_usd": 2}}]}
    secret = CachedSecret(lambda: value, max_age_s=60)
    secrets = Secrets(Settings.from_env({}), None, secret)

    secret.refresh()
    parsed = secrets._parsed

    assert parsed is not None and parsed[0] is value  # parsed when fetched, before any read
    assert secrets.stored_gateway_keys() is parsed[1] and secrets.stored_gateway_keys() is parsed[1]
    assert parsed[1][0].budget == Budget(daily_usd=2.0)
