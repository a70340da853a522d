"""Reading the budgets: each one's limit, spend, what remains and when it resets (GET /v1/budgets and
`switchboard budgets`), from the same counters the gateway counts into."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from switchboard.limits.budgets.counters import Counters, Spent
from switchboard.limits.budgets.model import Budget, Line, Scope, budget_lines, iso


class BudgetedKey(Protocol):
    """A gateway key as the report needs it (keys.auth's StoredKey is one)."""

    @property
    def name(self) -> str: ...

    @property
    def budget(self) -> Budget | None: ...


def budgets_report(counters: Counters, task_budgets: Mapping[str, Budget],
                   keys: Iterable[BudgetedKey]) -> dict[str, Any]:
    """Task budgets (from SWITCHBOARD_ROUTING) and key budgets (of the stored and environment keys) with their
    spend. It reads the table (blocking): call it with `asyncio.to_thread` from a route."""
    return report(counters, configured_scopes(task_budgets, keys))


def report(counters: Counters, scopes: Iterable[Scope], now: float | None = None) -> dict[str, Any]:
    """Each budget with its spend, what remains and when its period ends, read from the counters."""
    now = time.time() if now is None else now
    lines = budget_lines(scopes, now)
    spent = counters.read([line.key for line in lines]) if lines else {}
    return {"object": "budgets", "as_of": iso(now), "data": [_row(line, spent.get(line.key, Spent()), now)
                                                            for line in lines]}


def _row(line: Line, spent: Spent, now: float) -> dict[str, Any]:
    budget = line.scope.budget
    soft = line.soft_usd
    state = "exceeded" if spent.usd >= line.limit_usd else "soft" if soft is not None and spent.usd >= soft else "ok"
    return {"scope": line.scope.kind, "name": line.scope.name, "period": line.period.kind,
            "period_key": line.period.sk.split("#", 1)[1], "limit_usd": line.limit_usd,
            "spent_usd": round(spent.usd, 10), "reserved_usd": round(spent.reserved_usd, 10),
            "remaining_usd": round(max(line.limit_usd - spent.usd, 0.0), 10),
            "incomplete": spent.incomplete, "soft_percent": budget.soft_percent, "soft_usd": soft, "state": state,
            "on_exceeded": budget.on_exceeded, "period_ends_at": iso(line.period.ends_at),
            "resets_in_s": max(math.ceil(line.period.ends_at - now), 0)}


def configured_scopes(task_budgets: Mapping[str, Budget], keys: Iterable[BudgetedKey]) -> list[Scope]:
    """Task budgets first, then every key that has one (a name seen twice counts once, the first)."""
    scopes = [Scope("task", name, budget) for name, budget in task_budgets.items()]
    seen: set[str] = set()
    for key in keys:
        if key.budget is not None and key.name not in seen:
            seen.add(key.name)
            scopes.append(Scope("key", key.name, key.budget))
    return scopes
