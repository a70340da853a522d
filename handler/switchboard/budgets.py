"""Spend budgets in USD, per gateway key and per task, per UTC day and per calendar month.

Spend is counted when a call ends, from the cost the recorder priced, with DynamoDB `ADD` counters in
the calls table: one item per scope and period (pk `BUDGET#task#<task>` or `BUDGET#key#<name>`, sk
`DAY#<yyyy-mm-dd>` or `MONTH#<yyyy-mm>`, with a TTL), so every Lambda instance sees every other's spend.
Without a table the counters live in this process. Only scopes that have a budget are counted. A call
whose cost is unknown (an unpriced model, no usage) adds 0 and marks the figure incomplete.

The check works like the rate limiter's: it reads the counters beside the upstream request, and the
call waits for its verdict only before its first byte, so it costs the first token nothing. A scope
seen over its limit is remembered for a few seconds (never past its period), so the next call is
decided before anything is sent upstream. Over the limit a budget either refuses (429
`budget_exceeded`, `retry-after` until the period ends) or moves the call to a cheaper model; a call
that started under budget is never cut. Passing the soft threshold, and the limit, logs one warning
and emits one metric per scope and period: the counter item is stamped with a conditional update, so
only one instance speaks.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

from switchboard.protocol import GatewayError

REFUSE = "refuse"
PERIODS = ("day", "month")
ADJECTIVE = {"day": "daily", "month": "monthly"}
BUDGET_FIELDS = frozenset({"daily_usd", "monthly_usd", "soft_percent", "on_exceeded"})
KNOWN_OVER_S = 10.0  # how long an over-limit figure decides calls without asking the table again
VERDICT_WAIT_S = 1.0  # the longest a first byte waits for a slow table; then the call is let through
KEEP_COUNTERS_S = {"day": 40 * 86400, "month": 400 * 86400}  # counters outlive their period, for reports
MAX_HELD = 10_000  # calls in flight whose spend is still to count; a leak beyond it drops the oldest
SOFT, EXCEEDED = "soft", "exceeded"
NOTE_ATTRIBUTE = {SOFT: "soft_noted_at", EXCEEDED: "exceeded_noted_at"}
Key = tuple[str, str]  # (pk, sk) of one counter item


# -- the model ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    """Hard limits per period (None: no limit for that period), a soft threshold, and what happens over."""

    daily_usd: float | None = None
    monthly_usd: float | None = None
    soft_percent: float | None = None
    downgrade_model: str | None = None  # None: refuse calls over the limit

    def limit(self, period: str) -> float | None:
        return self.daily_usd if period == "day" else self.monthly_usd

    @property
    def on_exceeded(self) -> str | dict[str, str]:
        return REFUSE if self.downgrade_model is None else {"model": self.downgrade_model}

    def to_json(self) -> dict[str, Any]:
        """The shape `parse_budget` reads: how a key's budget is stored in the gateway-keys secret."""
        value: dict[str, Any] = {name: getattr(self, name) for name in ("daily_usd", "monthly_usd", "soft_percent")
                                 if getattr(self, name) is not None}
        value["on_exceeded"] = self.on_exceeded
        return value


def parse_budget(value: object, where: str) -> Budget:
    """`{"daily_usd": 5, "monthly_usd": 100, "soft_percent": 80, "on_exceeded": "refuse"}` -> Budget.

    Raises ValueError naming `where` and the field, so a typo in a config is found at start-up.
    """
    if not isinstance(value, dict):
        raise ValueError(f'{where} must be an object such as {{"daily_usd": 5, "monthly_usd": 100}}')
    unknown = sorted(set(value) - BUDGET_FIELDS)
    if unknown:
        raise ValueError(f"{where} has unknown field(s) {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(BUDGET_FIELDS))}")
    daily = _usd(value.get("daily_usd"), f"{where}.daily_usd")
    monthly = _usd(value.get("monthly_usd"), f"{where}.monthly_usd")
    if daily is None and monthly is None:
        raise ValueError(f"{where} needs daily_usd and/or monthly_usd")
    soft = value.get("soft_percent")
    if soft is not None and (not _is_number(soft) or not 0 < soft < 100):
        raise ValueError(f"{where}.soft_percent must be a number between 0 and 100 (exclusive), got {soft!r}")
    return Budget(daily, monthly, None if soft is None else float(soft),
                  _downgrade_model(value.get("on_exceeded", REFUSE), f"{where}.on_exceeded"))


def _usd(value: object, where: str) -> float | None:
    if value is None:
        return None
    if not _is_number(value) or not 0 < value < 1e12:
        raise ValueError(f"{where} must be a positive number of US dollars, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _downgrade_model(value: object, where: str) -> str | None:
    if value == REFUSE:
        return None
    model = value.get("model") if isinstance(value, dict) and set(value) == {"model"} else None
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f'{where} must be "refuse" or {{"model": "provider/model"}}, got {value!r}')
    return model.strip()


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


# -- the verdict ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What the budgets say about one call: under (line None), refuse, or move to a cheaper model."""

    line: Line | None = None  # the exceeded budget that decided
    spent_usd: float = 0.0

    @property
    def over(self) -> bool:
        return self.line is not None

    @property
    def downgrade_model(self) -> str | None:
        return None if self.line is None else self.line.scope.budget.downgrade_model

    @property
    def refuses(self) -> bool:
        return self.line is not None and self.downgrade_model is None

    def describe(self) -> str:
        """"task 'support-line' has spent $5.02 of its $5.00 daily budget"."""
        assert self.line is not None
        return (f"{self.line.scope.describe()} has spent {usd(self.spent_usd)} of its "
                f"{usd(self.line.limit_usd)} {self.line.period.adjective} budget")

    def error(self, now: float | None = None) -> GatewayError:
        """The 429 for a refused call: retry-after is when the period ends; retrying sooner cannot help."""
        assert self.line is not None
        now = time.time() if now is None else now
        resets = self.line.period.ends_at
        return GatewayError(429, f"{self.describe()}; it resets at {iso(resets)}.", type="insufficient_quota",
                            code="budget_exceeded",
                            headers={"retry-after": str(max(math.ceil(resets - now), 1)), "x-should-retry": "false"})


UNDER = Verdict()


def decide(lines: Iterable[Line], spent: dict[Key, float]) -> Verdict:
    """Refusing beats moving to another model; among refusals the period that ends last names the wait."""
    over = [(line, spent[line.key]) for line in lines if line.key in spent and spent[line.key] >= line.limit_usd]
    if not over:
        return UNDER
    refusing = [entry for entry in over if entry[0].scope.budget.downgrade_model is None]
    line, spent_usd = max(refusing, key=lambda entry: entry[0].period.ends_at) if refusing else over[0]
    return Verdict(line, spent_usd)


def usd(value: float) -> str:
    """Dollars as an operator reads them: cents, or four decimals for the sub-dollar budgets of a test."""
    if value >= 1 or round(value, 2) == round(value, 4):
        return f"${value:,.2f}"
    return f"${value:.4f}"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the counters ---------------------------------------------------------------------------------------


@dataclass
class Spent:
    """A counter as read: dollars so far, whether any call's cost was unknown, which notes were made."""

    usd: float = 0.0
    incomplete: bool = False
    noted: frozenset[str] = frozenset()


class Counters(Protocol):
    shared: bool  # True: other processes count into the same counters (a table)

    def read(self, keys: list[Key]) -> dict[Key, Spent]: ...
    def add(self, line: Line, usd: float, unknown: bool) -> Spent: ...
    def claim(self, line: Line, note: str) -> bool: ...


class MemoryCounters:
    """This process's own counters: no table configured (a local run without the embedded stack)."""

    shared = False

    def __init__(self) -> None:
        self.items: dict[Key, tuple[float, Spent]] = {}  # key -> (period end, figure)

    def read(self, keys: list[Key]) -> dict[Key, Spent]:
        return {key: self.items[key][1] for key in keys if key in self.items}

    def add(self, line: Line, usd: float, unknown: bool) -> Spent:
        _, before = self.items.get(line.key, (0.0, Spent()))
        after = Spent(before.usd + usd, before.incomplete or unknown, before.noted)
        self._forget_ended()
        self.items[line.key] = (line.period.ends_at, after)
        return after

    def claim(self, line: Line, note: str) -> bool:
        ends_at, spent = self.items.get(line.key, (line.period.ends_at, Spent()))
        if note in spent.noted:
            return False
        self.items[line.key] = (ends_at, Spent(spent.usd, spent.incomplete, spent.noted | {note}))
        return True

    def _forget_ended(self) -> None:
        if len(self.items) > 2000:
            cutoff = time.time() - KEEP_COUNTERS_S["day"]
            for key in [k for k, (ends_at, _) in self.items.items() if ends_at < cutoff]:
                del self.items[key]


class TableCounters:
    """The counters as items in the calls table: atomic ADDs, so every instance counts into the same figure."""

    shared = True

    def __init__(self, dynamodb: Any, table: str) -> None:
        """`dynamodb` is a client, or a function returning one (so boto3 loads only when first used)."""
        self._db = dynamodb
        self.table = table

    @property
    def db(self) -> Any:
        if callable(self._db) and not hasattr(self._db, "update_item"):
            self._db = self._db()
        return self._db

    def read(self, keys: list[Key]) -> dict[Key, Spent]:
        found: dict[Key, Spent] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 100):  # BatchGetItem's limit
            found.update(self._read_batch(unique[start:start + 100]))
        return found

    def _read_batch(self, keys: list[Key]) -> dict[Key, Spent]:
        request: dict[str, Any] = {self.table: {
            "Keys": [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in keys], "ConsistentRead": True}}
        found: dict[Key, Spent] = {}
        for _ in range(3):  # unprocessed keys (throttling) are asked for again, twice at most
            answer = self.db.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(self.table, []):
                found[(item["pk"]["S"], item["sk"]["S"])] = _spent(item)
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                return found
        raise RuntimeError("budget counters not read: DynamoDB left keys unprocessed")

    def add(self, line: Line, usd: float, unknown: bool) -> Spent:
        adds = "ADD spent_usd :usd, calls :one" + (", unpriced_calls :one" if unknown else "")
        answer = self.db.update_item(
            TableName=self.table, Key={"pk": {"S": line.scope.pk}, "sk": {"S": line.period.sk}},
            UpdateExpression=adds + " SET expires_at = :ttl, period_ends_at = :end",
            ExpressionAttributeValues={
                ":usd": {"N": f"{usd:.10f}"}, ":one": {"N": "1"}, ":end": {"S": iso(line.period.ends_at)},
                ":ttl": {"N": str(int(line.period.ends_at + KEEP_COUNTERS_S[line.period.kind]))}},
            ReturnValues="ALL_NEW")
        return _spent(answer.get("Attributes", {}))

    def claim(self, line: Line, note: str) -> bool:
        """Stamp the note on the counter unless another instance did first: True for the one that did."""
        db = self.db
        try:
            db.update_item(TableName=self.table, Key={"pk": {"S": line.scope.pk}, "sk": {"S": line.period.sk}},
                           UpdateExpression="SET #n = :now", ConditionExpression="attribute_not_exists(#n)",
                           ExpressionAttributeNames={"#n": NOTE_ATTRIBUTE[note]},
                           ExpressionAttributeValues={":now": {"S": iso(time.time())}})
        except db.exceptions.ConditionalCheckFailedException:
            return False
        return True


def _spent(item: dict[str, Any]) -> Spent:
    noted = frozenset(note for note, attribute in NOTE_ATTRIBUTE.items() if attribute in item)
    return Spent(float(item.get("spent_usd", {}).get("N", "0")), int(item.get("unpriced_calls", {}).get("N", "0")) > 0,
                 noted)


# -- the tracker: admit, then count -----------------------------------------------------------------------


@dataclass
class BudgetCheck:
    """One call's budgets: what is known at admission, and the shared read still on its way, if any."""

    lines: list[Line]
    known: Verdict = UNDER
    pending: asyncio.Future | None = None  # -> Verdict; never raises (a failed read lets the call through)


def spend_of(record: Any) -> tuple[float, bool]:
    """(dollars to add, cost unknown). Unknown: no price or no usage for a call that produced something."""
    if record.cost_usd is not None:
        return max(float(record.cost_usd), 0.0), False
    return 0.0, record.status < 400 or bool(record.completion_tokens)


class BudgetTracker:
    def __init__(self, counters: Counters | None = None, *, emit_metrics: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.counters: Counters = counters or MemoryCounters()
        self.emit_metrics = emit_metrics
        self.clock = clock
        self.held: dict[str, list[Line]] = {}  # request id -> the budgets its spend counts against
        self.known_over: dict[Key, tuple[float, float]] = {}  # key -> (dollars seen, forget at, monotonic)

    @classmethod
    def from_settings(cls, settings: Any) -> BudgetTracker:
        """Counters in the calls table when there is one, else in memory."""
        counters: Counters | None = None
        if settings.table_name:
            from switchboard import aws

            counters = TableCounters(lambda: aws.client("dynamodb", settings), settings.table_name)
        return cls(counters, emit_metrics=settings.metrics)

    # -- admission ----------------------------------------------------------------------------------

    def admit(self, request_id: str, scopes: Iterable[Scope]) -> BudgetCheck | None:
        """Note the call's budgets and decide what can be decided now; None when it has no budget at all.

        In memory the verdict is immediate. With a table, a scope known to be over decides now and the
        rest is read beside the upstream request (`pending`).
        """
        lines = budget_lines(scopes, self.clock())
        if not lines:
            return None
        self._hold(request_id, lines)
        if not self.counters.shared:
            spent = self.counters.read([line.key for line in lines])
            return BudgetCheck(lines, decide(lines, {key: figure.usd for key, figure in spent.items()}))
        remembered = self._remembered()
        known = decide(lines, remembered)
        if known.refuses or all(line.key in remembered for line in lines):
            return BudgetCheck(lines, known)
        return BudgetCheck(lines, known, asyncio.ensure_future(self._read_shared(lines)))

    def _hold(self, request_id: str, lines: list[Line]) -> None:
        if len(self.held) >= MAX_HELD:
            del self.held[next(iter(self.held))]
        self.held[request_id] = lines

    async def _read_shared(self, lines: list[Line]) -> Verdict:
        try:
            spent = await asyncio.to_thread(self.counters.read, [line.key for line in lines])
        except Exception as exc:  # DynamoDB unreachable: the call goes ahead; its spend is still counted
            from switchboard.observability import logger

            logger.warning("budget check failed; the call goes ahead", extra=_error_fields(exc))
            return UNDER
        for line in lines:
            if line.key in spent:
                self._remember(line, spent[line.key].usd)
        return decide(lines, {key: figure.usd for key, figure in spent.items()})

    def _remember(self, line: Line, spent_usd: float) -> None:
        """An over-limit figure decides the next calls at once, for a few seconds and never past its period."""
        if spent_usd < line.limit_usd:
            return
        now = self.clock()
        lasts = min(KNOWN_OVER_S, max(line.period.ends_at - now, 0.0))
        if len(self.known_over) > 1000:
            self.known_over = {k: v for k, v in self.known_over.items() if v[1] > time.monotonic()}
        self.known_over[line.key] = (spent_usd, time.monotonic() + lasts)

    def _remembered(self) -> dict[Key, float]:
        if not self.known_over:
            return {}
        now = time.monotonic()
        return {key: spent for key, (spent, until) in self.known_over.items() if until > now}

    # -- counting -----------------------------------------------------------------------------------

    async def spend(self, record: Any) -> None:
        """At the call's end, once it is priced: add its cost to each of its budgets. Never raises."""
        lines = self.held.pop(record.request_id, None)
        if not lines:
            return
        cost, unknown = spend_of(record)
        if not cost and not unknown:
            return  # refused, failed before any output, or free: nothing to add
        if self.counters.shared:
            results = await asyncio.gather(*(asyncio.to_thread(self.counters.add, line, cost, unknown)
                                             for line in lines), return_exceptions=True)
        else:
            results = [self.counters.add(line, cost, unknown) for line in lines]
        for line, after in zip(lines, results, strict=True):
            if isinstance(after, BaseException):
                _log_not_counted(record, line, cost, after)
                continue
            self._remember(line, after.usd)
            await self._note_crossings(line, after)

    async def _note_crossings(self, line: Line, after: Spent) -> None:
        for note, threshold in ((SOFT, line.soft_usd), (EXCEEDED, line.limit_usd)):
            if threshold is None or after.usd < threshold or note in after.noted:
                continue
            try:
                claimed = (await asyncio.to_thread(self.counters.claim, line, note) if self.counters.shared
                           else self.counters.claim(line, note))
            except Exception as exc:
                from switchboard.observability import logger

                logger.warning("budget threshold not noted", extra=_error_fields(exc))
                continue
            if claimed:
                _announce(line, note, after, self.emit_metrics)


def _announce(line: Line, note: str, after: Spent, emit_metrics: bool) -> None:
    """The one warning (and metric) for this scope and period: past the soft threshold, or over the limit."""
    from switchboard.observability import budget_metric, logger

    scope = line.scope
    if note == SOFT:
        detail = (f"{scope.describe()} has spent {usd(after.usd)}, past {scope.budget.soft_percent:g}% of its "
                  f"{usd(line.limit_usd)} {line.period.adjective} budget")
        message, metric = "budget soft threshold passed", "BudgetSoftThreshold"
    else:
        detail = Verdict(line, after.usd).describe()
        message, metric = "budget exhausted", "BudgetExceeded"
    fields = {"budget_scope": scope.kind, "budget_name": scope.name, "period": line.period.kind,
              "spent_usd": round(after.usd, 10), "limit_usd": line.limit_usd, "soft_usd": line.soft_usd,
              "incomplete": after.incomplete, "period_ends_at": iso(line.period.ends_at), "detail": detail,
              "on_exceeded": scope.budget.on_exceeded}
    logger.warning(message, extra=fields)
    if emit_metrics:
        budget_metric(metric, fields)


def _log_not_counted(record: Any, line: Line, cost: float, exc: BaseException) -> None:
    from switchboard.observability import call_fields, logger

    logger.warning("budget spend not counted", extra={**call_fields(record), "budget_scope": line.scope.kind,
                                                       "budget_name": line.scope.name, "period": line.period.kind,
                                                       "cost_usd": cost, **_error_fields(exc)})


def _error_fields(exc: BaseException) -> dict[str, str]:
    """The exception's type and, for an AWS refusal, its code (AccessDeniedException says a permission is missing)."""
    fields = {"error_type": type(exc).__name__}
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    if code:
        fields["error_code"] = str(code)
    return fields


# -- reading: GET /v1/budgets and `switchboard budgets` ---------------------------------------------------


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
            "spent_usd": round(spent.usd, 10), "remaining_usd": round(max(line.limit_usd - spent.usd, 0.0), 10),
            "incomplete": spent.incomplete, "soft_percent": budget.soft_percent, "soft_usd": soft, "state": state,
            "on_exceeded": budget.on_exceeded, "period_ends_at": iso(line.period.ends_at),
            "resets_in_s": max(math.ceil(line.period.ends_at - now), 0)}


def configured_scopes(task_budgets: dict[str, Budget], keys: Iterable[Any]) -> list[Scope]:
    """Task budgets first, then every key (objects with `name` and `budget`) that has one."""
    scopes = [Scope("task", name, budget) for name, budget in task_budgets.items()]
    seen: set[str] = set()
    for key in keys:
        if getattr(key, "budget", None) is not None and key.name not in seen:
            seen.add(key.name)
            scopes.append(Scope("key", key.name, key.budget))
    return scopes


def budgets_report(gateway: Any) -> dict[str, Any]:
    """GET /v1/budgets: task budgets from SWITCHBOARD_ROUTING and key budgets from the stored and environment
    keys. It reads the table (blocking): call it with `asyncio.to_thread` from a route."""
    from switchboard.policy import task_budgets

    keys = list(gateway.keys.static) + list(gateway.keys.stored())
    return report(gateway.budgets.counters, configured_scopes(task_budgets(gateway.settings), keys))

