"""The gateway-keys secret's entries, as one model: what `switchboard keys create` writes and the gateway reads.

    {"keys": [{"name": "elevenlabs-prod", "sha256": "<hex>", "admin": false, "gateway": true,
               "created_at": "2026-11-01T09:30:00+00:00", "rpm": 120, "concurrent": 10,
               "budget": {"daily_usd": 20, "monthly_usd": 300}}]}

A gateway key itself is never stored, only its SHA-256. An entry without "gateway" is a gateway key unless it
is an admin key; "budget" has the shape of a task budget (config/budget.py). The secret may be edited by hand,
so reading forgives what the CLI would never write: an entry without a name or a hash is skipped, a limit that
is not a whole number is no limit, and a budget that does not parse is logged, once, and ignored, so one bad
entry cannot lock every key out.

Importing this module loads pydantic: secrets.py imports it when it first reads the secret, off the event loop.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictStr, ValidationError, ValidationInfo, field_validator

from switchboard.config.budget import BudgetConfig, budget_config
from switchboard.keys.auth import StoredKey
from switchboard.limits.budgets.model import Budget


def _name(value: object) -> str:
    if not value:
        raise ValueError("a key needs a name")
    return value if isinstance(value, str) else str(value)


def _whole_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


Name = Annotated[str, BeforeValidator(_name)]
# Read as true or false whatever was written there ("admin": 1 is an admin key), as the gateway always has.
Truthy = Annotated[bool, BeforeValidator(bool)]
Limit = Annotated[int | None, BeforeValidator(_whole_or_none)]
_warned_budgets: set[tuple[str, str]] = set()


class KeyRecord(BaseModel):
    """One entry of the gateway-keys secret. Fields are in the order they are written."""

    model_config = ConfigDict(frozen=True)

    name: Name
    sha256: StrictStr  # hex SHA-256 of the key
    admin: Truthy = False
    gateway: Annotated[bool | None, BeforeValidator(bool)] = None  # None: a gateway key unless an admin key
    created_at: str | None = None
    rpm: Limit = None  # a negative limit, like none, leaves the server's default
    concurrent: Limit = None
    budget: BudgetConfig | None = None

    @field_validator("created_at", mode="before")
    @classmethod
    def _text_or_none(cls, value: object) -> str | None:
        return value if isinstance(value, str) else None

    @field_validator("budget", mode="before")
    @classmethod
    def _budget_or_none(cls, value: object, info: ValidationInfo) -> BudgetConfig | None:
        """A budget that does not parse (a hand edit: the CLI checks what it writes) is logged, once, and ignored."""
        if value is None or isinstance(value, BudgetConfig):
            return value
        name = str(info.data.get("name"))
        try:
            return budget_config(value, f"key '{name}' budget")
        except ValueError as exc:
            if (name, repr(value)) not in _warned_budgets:
                from switchboard.observability import logger

                _warned_budgets.add((name, repr(value)))
                logger.warning("stored key budget ignored", extra={"key_name": name, "problem": str(exc)})
            return None

    @classmethod
    def read(cls, entry: object) -> KeyRecord | None:
        """The entry, or None for one that names no key (no name, or no hash)."""
        try:
            return cls.model_validate(entry)
        except ValidationError:
            return None

    def to_json(self) -> dict[str, object]:
        """The entry as it is stored: unset fields left out."""
        return self.model_dump(mode="json", exclude_none=True)

    def stored_key(self) -> StoredKey:
        """The key as the gateway authenticates and limits it."""
        return StoredKey(self.name, self.sha256, self.admin, _enforced(self.rpm), _enforced(self.concurrent),
                         gateway=self.gateway if self.gateway is not None else not self.admin,
                         budget=None if self.budget is None else Budget.from_config(self.budget))


def _enforced(limit: int | None) -> int | None:
    return limit if limit is not None and limit >= 0 else None


def parse_gateway_keys(value: object) -> list[StoredKey]:
    """The keys of the gateway-keys secret's value, every entry that names one."""
    entries = value.get("keys", []) if isinstance(value, dict) else []
    records = [KeyRecord.read(entry) for entry in entries] if isinstance(entries, list) else []
    return [record.stored_key() for record in records if record is not None]
