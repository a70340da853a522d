"""What a budget is, and the lines it is checked and counted on: one scope's limit for one period.

A scope is a task (its budget in SWITCHBOARD_ROUTING) or a gateway key (its budget in the gateway-keys
secret); a period is a UTC day or a calendar month. How a budget is configured and checked is
config/budget.py's: `parse_budget` reads one through it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from switchboard.config.budget import BudgetConfig

REFUSE = "refuse"  # on_exceeded, as config/budget.py spells it
PERIODS = ("day", "month")
ADJECTIVE = {"day": "daily", "month": "monthly"}
Key = tuple[str, str]  # (pk, sk) of one counter item


@dataclass(frozen=True)
class Budget:
    """Hard limits per period (None: no limit for that period), a soft threshold, and what happens over."""

    daily_usd: float | None = None
    monthly_usd: float | None = None
    soft_percent: float | None = None
    downgrade_model: str | None = None  # None: refuse calls over the limit

    @classmethod
    def from_config(cls, config: BudgetConfig) -> Budget:
        return cls(config.daily_usd, config.monthly_usd, config.soft_percent, config.downgrade_model)

    def config(self) -> BudgetConfig:
        """This budget in its configured shape (how a key's is stored); a ValueError naming the field if it is
        not a valid one."""
        from switchboard.config.budget import budget_config

        return budget_config({"daily_usd": self.daily_usd, "monthly_usd": self.monthly_usd,
                              "soft_percent": self.soft_percent, "on_exceeded": self.on_exceeded}, "the budget")

    def limit(self, period: str) -> float | None:
        return self.daily_usd if period == "day" else self.monthly_usd

    @property
    def on_exceeded(self) -> str | dict[str, str]:
        return REFUSE if self.downgrade_model is None else {"model": self.downgrade_model}


def parse_budget(value: object, where: str) -> Budget:
    """`{"daily_usd": 5, "monthly_usd": 100, "soft_percent": 80, "on_exceeded": "refuse"}` -> Budget.

    Raises ValueError naming `where` and the field, so a typo in a config is found at start-up.
    """
    # pydantic loads here, when there is a budget to read, not with the gateway
    from switchboard.config.budget import budget_config

    return Budget.from_config(budget_config(value, where))


@dataclass(frozen=True)
class Scope:
    """Who a budget belongs to: a task (from SWITCHBOARD_ROUTING) or a gateway key (by name)."""

    kind: str  # "task" | "key"
    name: str
    budget: Budget

    @property
    def pk(self) -> str:
        return f"BUDGET#{self.kind}#{self.name}"

    def describe(self) -> str:
        return f"{self.kind} '{self.name}'"


@dataclass(frozen=True)
class Period:
    kind: str  # "day" | "month"
    sk: str  # DAY#2026-12-01 | MONTH#2026-12
    ends_at: float  # epoch seconds: the first second of the next period

    @property
    def adjective(self) -> str:
        return ADJECTIVE[self.kind]


@dataclass(frozen=True)
class Line:
    """One budget as it is checked and counted: a scope's limit for one period."""

    scope: Scope
    period: Period
    limit_usd: float

    @property
    def key(self) -> Key:
        return (self.scope.pk, self.period.sk)

    @property
    def soft_usd(self) -> float | None:
        percent = self.scope.budget.soft_percent
        return None if percent is None else self.limit_usd * percent / 100


@lru_cache(maxsize=4)
def _periods_of_day(day_number: int) -> tuple[Period, Period]:
    """The day and month periods of one UTC day (cached: every call of the day shares them)."""
    day = date(1970, 1, 1) + timedelta(days=day_number)
    next_month = date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return (Period("day", f"DAY#{day.isoformat()}", (day_number + 1) * 86400.0),
            Period("month", f"MONTH#{day.strftime('%Y-%m')}", _epoch(next_month)))


def periods(now: float) -> tuple[Period, Period]:
    return _periods_of_day(int(now // 86400))


def _epoch(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def budget_lines(scopes: Iterable[Scope], now: float) -> list[Line]:
    """Every (scope, period) that has a limit, tasks and keys in the order given, day before month."""
    current = periods(now)
    return [Line(scope, period, limit) for scope in scopes for period in current
            if (limit := scope.budget.limit(period.kind)) is not None]


def usd(value: float) -> str:
    """Dollars as an operator reads them: cents, or four decimals for the sub-dollar budgets of a test."""
    if value >= 1 or round(value, 2) == round(value, 4):
        return f"${value:,.2f}"
    return f"${value:.4f}"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
