"""A spend budget's settings, as one model: a task's in SWITCHBOARD_ROUTING, a key's in the gateway-keys secret,
and the `switchboard keys` budget flags all go through it.

    {"daily_usd": 5, "monthly_usd": 100, "soft_percent": 80, "on_exceeded": "refuse"}
    {"monthly_usd": 300, "on_exceeded": {"model": "groq/llama-3.1-8b-instant"}}

At least one of the limits is needed; `soft_percent` is the share of a limit past which one warning is logged;
over a limit a call is refused (429) or answered on the cheaper `on_exceeded.model`. `budget_config` reads a
value and words a problem the same way wherever the budget came from, naming its field
(`tasks.support-line.budget.daily_usd must be a positive number of US dollars, got -1`), so a typo is found at
start-up. Whether a downgrade model resolves and has a price is for the layer that knows the models to check.

Importing this module loads pydantic (about 100 ms), so the layers above import it where a budget is read,
not at start-up.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

Refuse = Literal["refuse"]
REFUSE: Refuse = "refuse"
MAX_USD = 1e12
LIMITS = ("daily_usd", "monthly_usd")

# Strict numbers: "5" or true in a JSON budget is a mistake to report, not a value to guess at.
UsdLimit = Annotated[float, Field(strict=True, gt=0, lt=MAX_USD, allow_inf_nan=False)]
SoftPercent = Annotated[float, Field(strict=True, gt=0, lt=100, allow_inf_nan=False)]


class Downgrade(BaseModel):
    """Over the limit, answer on this (cheaper) model instead of refusing."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class BudgetConfig(BaseModel):
    """One budget as configured. Each field's description is what a problem with it says it must be."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    daily_usd: UsdLimit | None = Field(None, description="a positive number of US dollars")
    monthly_usd: UsdLimit | None = Field(None, description="a positive number of US dollars")
    soft_percent: SoftPercent | None = Field(None, description="a number between 0 and 100 (exclusive)")
    on_exceeded: Refuse | Downgrade = Field(REFUSE, description='"refuse" or {"model": "provider/model"}')

    @model_validator(mode="before")
    @classmethod
    def _has_a_limit(cls, data: object) -> object:
        """Checked before the fields, so a budget without a limit says so whatever else is wrong with it; one
        with an unknown field (most often a limit's name mistyped) is left to say that instead."""
        if (isinstance(data, dict) and data.keys() <= cls.model_fields.keys()
                and all(data.get(name) is None for name in LIMITS)):
            raise PydanticCustomError("budget_without_limit", "needs daily_usd and/or monthly_usd")
        return data

    @property
    def downgrade_model(self) -> str | None:
        return self.on_exceeded.model if isinstance(self.on_exceeded, Downgrade) else None

    def to_json(self) -> dict[str, Any]:
        """The shape `budget_config` reads, as a key's budget is stored: unset fields left out."""
        return self.model_dump(mode="json", exclude_none=True)


def budget_config(value: object, where: str) -> BudgetConfig:
    """`value` as a budget, or a ValueError naming `where` and the field (`where` is how the reader calls the
    budget: `tasks.support-line.budget`, `key 'agent' budget`)."""
    try:
        return BudgetConfig.model_validate(value)
    except ValidationError as exc:
        raise ValueError(_problem(exc, value, where)) from None


def _problem(exc: ValidationError, value: object, where: str) -> str:
    """The first problem, in the order an operator fixes them: unknown fields, the value as a whole, a field."""
    errors = exc.errors(include_url=False)
    unknown = sorted(str(error["loc"][0]) for error in errors if error["type"] == "extra_forbidden")
    if unknown:
        return (f"{where} has unknown field(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(BudgetConfig.model_fields))}")
    first = errors[0]
    if not first["loc"]:
        if first["type"] == "budget_without_limit":
            return f"{where} {first['msg']}"
        return f'{where} must be an object such as {{"daily_usd": 5, "monthly_usd": 100}}'
    name = str(first["loc"][0])
    given = value.get(name) if isinstance(value, dict) else None
    return f"{where}.{name} must be {BudgetConfig.model_fields[name].description}, got {given!r}"


_USD_LIMIT: TypeAdapter[float] = TypeAdapter(UsdLimit)
_SOFT_PERCENT: TypeAdapter[float] = TypeAdapter(SoftPercent)


def is_usd_limit(value: object) -> bool:
    """Whether `value` may be a daily or monthly limit (the CLI checks each flag as it is parsed)."""
    return _accepts(_USD_LIMIT, value)


def is_soft_percent(value: object) -> bool:
    return _accepts(_SOFT_PERCENT, value)


def _accepts(kind: TypeAdapter[float], value: object) -> bool:
    try:
        kind.validate_python(value)
    except ValidationError:
        return False
    return True
