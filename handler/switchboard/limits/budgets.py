"""Spend budgets in USD, per gateway key and per task, per UTC day and per calendar month.

Spend is counted with DynamoDB `ADD` counters in the calls table: one item per scope and period (pk
`BUDGET#task#<task>` or `BUDGET#key#<name>`, sk `DAY#<yyyy-mm-dd>` or `MONTH#<yyyy-mm>`, with a TTL), so
every Lambda instance sees every other's spend. Without a table the counters live in this process. Only
scopes that have a budget are counted.

Calls in flight count. An item holds `spent_usd` (what ended calls cost) and `committed_nusd` (that plus
what calls in flight have reserved, in nano-dollars). A call is admitted while its line is under the limit, which means
committed, and admitting it is one conditional ADD of its reservation (condition: `committed_nusd` below
the limit), atomic across instances. The reservation is the call's worst case at its routes' prices:
its prompt, estimated from the request (a token per 3 bytes of body), plus its `max_tokens` or
SWITCHBOARD_BUDGET_RESERVE_OUTPUT_TOKENS. When the call ends, its reservation is replaced by its cost;
a call whose usage never came (a cut stream) keeps its reservation as its spend, marked incomplete.
Sequential calls therefore behave as if only spend counted, and concurrent ones overshoot by at most
about one call. Each reservation is also written to a per-minute attribute (`held_<minute>`) that its
release takes back; one still held RESERVATION_EXPIRES_S later belonged to a process that died mid-call,
and the next admission hands it back, so a leak never blocks a budget for long.

Every budgeted call is priced (see ledger/pricing.py): a model the catalog cannot price, with no
SWITCHBOARD_DEFAULT_PRICE, is refused with 400 `model_unpriced` rather than spending unseen.

The check works like the rate limiter's: the reservation runs beside the upstream request, and the call
waits for its verdict only before its first byte, so it costs the first token nothing. A scope seen over
its limit is remembered for a few seconds (never past its period), so the next call is decided before
anything is sent upstream. Over the limit a budget either refuses (429 `budget_exceeded`, `retry-after`
until the period ends) or moves the call to a cheaper model; a call that started under budget is never
cut. A check that fails or takes longer than VERDICT_WAIT_S follows SWITCHBOARD_BUDGET_ON_ERROR: `open`
(the default) lets the call go, its spend still counted; `closed` refuses it (503 `budget_unavailable`).
Passing the soft threshold, and the limit, logs one warning and emits one metric per scope and period:
the counter item is stamped with a conditional update, so only one instance speaks.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

from switchboard.wire.errors import GatewayError

REFUSE = "refuse"
PERIODS = ("day", "month")
ADJECTIVE = {"day": "daily", "month": "monthly"}
BUDGET_FIELDS = frozenset({"daily_usd", "monthly_usd", "soft_percent", "on_exceeded"})
KNOWN_OVER_S = 10.0  # how long an over-limit figure decides calls without asking the table again
VERDICT_WAIT_S = 1.0  # the longest a first byte waits for a slow table; then the call is let through
KEEP_COUNTERS_S = {"day": 40 * 86400, "month": 400 * 86400}  # counters outlive their period, for reports
MAX_HELD = 10_000  # calls in flight whose spend is still to count; a leak beyond it drops the oldest
RESERVATION_EXPIRES_S = 900  # longer than any call (the function's timeout is 300 s, a call's deadline 600 s)
HELD_PREFIX = "held_"  # + the minute (epoch // 60) a reservation was made in
NANO = 1_000_000_000  # reservations and committed spend are whole nano-dollars in the table
PROMPT_BYTES_PER_TOKEN = 3  # a reservation's prompt estimate: generous for English, closer for other scripts
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
    held_usd: float = 0.0  # reserved by calls still in flight on that line
    unavailable: str | None = None  # the check failed and SWITCHBOARD_BUDGET_ON_ERROR is closed: why

    @property
    def over(self) -> bool:
        return self.line is not None or self.unavailable is not None

    @property
    def downgrade_model(self) -> str | None:
        return None if self.line is None or self.unavailable else self.line.scope.budget.downgrade_model

    @property
    def refuses(self) -> bool:
        return self.over and self.downgrade_model is None

    def describe(self) -> str:
        """"task 'support-line' has spent $5.02 of its $5.00 daily budget"."""
        assert self.line is not None
        held = f", and calls in flight hold {usd(self.held_usd)} more" if self.held_usd > 0 else ""
        return (f"{self.line.scope.describe()} has spent {usd(self.spent_usd)} of its "
                f"{usd(self.line.limit_usd)} {self.line.period.adjective} budget{held}")

    def error(self, now: float | None = None) -> GatewayError:
        """The 429 for a refused call: retry-after is when the period ends, or in a few seconds when it is the
        calls in flight that fill it; the 503 when the check itself failed (SWITCHBOARD_BUDGET_ON_ERROR=closed)."""
        if self.unavailable is not None:
            return GatewayError(503, "The gateway could not check this call's budget, and refuses unchecked calls "
                                f"(SWITCHBOARD_BUDGET_ON_ERROR=closed): {self.unavailable}.",
                                code="budget_unavailable", headers={"retry-after": "1"})
        assert self.line is not None
        now = time.time() if now is None else now
        resets = self.line.period.ends_at
        if self.spent_usd < self.line.limit_usd:  # full only with calls in flight: they end soon
            return GatewayError(429, f"{self.describe()}; retry once they end.", type="insufficient_quota",
                                code="budget_exceeded", headers={"retry-after": "5"})
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


def decide_full(full: list[tuple[Line, Spent]]) -> Verdict:
    """The lines that refused a reservation (committed at the limit): over, as `decide` ranks them."""
    if not full:
        return UNDER
    refusing = [entry for entry in full if entry[0].scope.budget.downgrade_model is None]
    line, spent = max(refusing, key=lambda entry: entry[0].period.ends_at) if refusing else full[0]
    return Verdict(line, spent.usd, spent.reserved_usd)


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
    """A counter as read: dollars so far, what calls in flight hold, whether any call's cost was unknown,
    which notes were made, and the reservations by minute (for handing back those a dead process left)."""

    usd: float = 0.0
    incomplete: bool = False
    noted: frozenset[str] = frozenset()
    committed: float | None = None  # usd plus what is reserved; None on an item older than reservations
    held: dict[int, float] | None = None  # minute -> reserved that minute

    @property
    def reserved_usd(self) -> float:
        return max((self.committed if self.committed is not None else self.usd) - self.usd, 0.0)


@dataclass(frozen=True)
class Hold:
    """One call's reservation on one line: how much, and in which minute (0 usd: nothing reserved)."""

    line: Line
    usd: float = 0.0
    minute: int = 0


class Counters(Protocol):
    shared: bool  # True: other processes count into the same counters (a table)

    def read(self, keys: list[Key]) -> dict[Key, Spent]: ...
    def reserve(self, line: Line, usd: float, minute: int) -> tuple[bool, Spent]: ...
    def settle(self, hold: Hold, usd: float, unknown: bool) -> Spent: ...
    def add(self, line: Line, usd: float, unknown: bool) -> Spent: ...
    def reclaim(self, line: Line, held: dict[int, float]) -> None: ...
    def claim(self, line: Line, note: str) -> bool: ...


def stale_holds(spent: Spent, now: float) -> dict[int, float]:
    """Reservations older than RESERVATION_EXPIRES_S: left by a process that died mid-call (or already 0)."""
    oldest = int((now - RESERVATION_EXPIRES_S) // 60)
    return {minute: usd for minute, usd in (spent.held or {}).items() if minute < oldest}


class MemoryCounters:
    """This process's own counters: no table configured (a local run without the embedded stack)."""

    shared = False

    def __init__(self) -> None:
        self.items: dict[Key, tuple[float, Spent]] = {}  # key -> (period end, figure)

    def read(self, keys: list[Key]) -> dict[Key, Spent]:
        return {key: self.items[key][1] for key in keys if key in self.items}

    def _get(self, line: Line) -> Spent:
        return self.items.get(line.key, (0.0, Spent()))[1]

    def _put(self, line: Line, spent: Spent) -> Spent:
        self._forget_ended()
        self.items[line.key] = (line.period.ends_at, spent)
        return spent

    def reserve(self, line: Line, usd: float, minute: int) -> tuple[bool, Spent]:
        before = self._get(line)
        committed = before.usd if before.committed is None else before.committed
        if committed >= line.limit_usd:
            return False, before
        held = dict(before.held or {})
        held[minute] = held.get(minute, 0.0) + usd
        return True, self._put(line, Spent(before.usd, before.incomplete, before.noted, committed + usd, held))

    def settle(self, hold: Hold, usd: float, unknown: bool) -> Spent:
        before = self._get(hold.line)
        committed = (before.usd if before.committed is None else before.committed) + usd - hold.usd
        held = dict(before.held or {})
        if hold.usd:
            held[hold.minute] = held.get(hold.minute, 0.0) - hold.usd
            if abs(held[hold.minute]) < 1e-12:
                del held[hold.minute]
        return self._put(hold.line, Spent(before.usd + usd, before.incomplete or unknown, before.noted,
                                          committed, held))

    def add(self, line: Line, usd: float, unknown: bool) -> Spent:
        """Spend with nothing reserved first."""
        return self.settle(Hold(line), usd, unknown)

    def reclaim(self, line: Line, held: dict[int, float]) -> None:
        before = self._get(line)
        kept = {m: v for m, v in (before.held or {}).items() if m not in held}
        committed = (before.committed or 0.0) - sum(v for m, v in (before.held or {}).items() if m in held)
        self._put(line, Spent(before.usd, before.incomplete, before.noted, committed, kept))

    def claim(self, line: Line, note: str) -> bool:
        ends_at, spent = self.items.get(line.key, (line.period.ends_at, Spent()))
        if note in spent.noted:
            return False
        self.items[line.key] = (ends_at, Spent(spent.usd, spent.incomplete, spent.noted | {note}, spent.committed,
                                               spent.held))
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

    def _key(self, line: Line) -> dict[str, Any]:
        return {"pk": {"S": line.scope.pk}, "sk": {"S": line.period.sk}}

    def _stamps(self, line: Line) -> dict[str, Any]:
        return {":end": {"S": iso(line.period.ends_at)},
                ":ttl": {"N": str(int(line.period.ends_at + KEEP_COUNTERS_S[line.period.kind]))}}

    def reserve(self, line: Line, usd: float, minute: int) -> tuple[bool, Spent]:
        """ADD the reservation to `committed_nusd` if that is below the limit: (admitted, the item after, or as
        it stood when refused). Reservations are whole nano-dollars: sums that return to zero stay exact."""
        db = self.db
        for _ in range(2):
            try:
                answer = db.update_item(
                    TableName=self.table, Key=self._key(line),
                    UpdateExpression="ADD committed_nusd :n, #h :n SET expires_at = :ttl, period_ends_at = :end",
                    ConditionExpression="(attribute_not_exists(committed_nusd) AND attribute_not_exists(spent_usd))"
                                        " OR committed_nusd < :limit",
                    ExpressionAttributeNames={"#h": f"{HELD_PREFIX}{minute}"},
                    ExpressionAttributeValues={":n": {"N": str(nano(usd))}, ":limit": {"N": str(nano(line.limit_usd))},
                                               **self._stamps(line)},
                    ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD")
            except db.exceptions.ConditionalCheckFailedException as exc:
                item = exc.response.get("Item") or {}
                if "committed_nusd" not in item and "spent_usd" in item and self._seed(line, item["spent_usd"]):
                    continue  # an item counted before reservations existed: committed starts at its spend
                return False, _spent(item)
            return True, _spent(answer.get("Attributes", {}))
        return False, Spent()

    def _seed(self, line: Line, spent: dict[str, str]) -> bool:
        db = self.db
        try:
            db.update_item(TableName=self.table, Key=self._key(line), UpdateExpression="SET committed_nusd = :n",
                           ConditionExpression="attribute_not_exists(committed_nusd) AND spent_usd = :spent",
                           ExpressionAttributeValues={":spent": spent, ":n": {"N": str(nano(float(spent["N"])))}})
        except db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def settle(self, hold: Hold, usd: float, unknown: bool) -> Spent:
        """The call's cost in place of its reservation (or added, when it reserved nothing)."""
        line = hold.line
        adds = ["spent_usd :usd", "committed_nusd :delta", "calls :one"] + (["unpriced_calls :one"] if unknown else [])
        names: dict[str, str] = {}
        values = {":usd": {"N": f"{usd:.10f}"}, ":delta": {"N": str(nano(usd) - nano(hold.usd))}, ":one": {"N": "1"},
                  **self._stamps(line)}
        if hold.usd:
            adds.append("#h :back")
            names["#h"] = f"{HELD_PREFIX}{hold.minute}"
            values[":back"] = {"N": str(-nano(hold.usd))}
        answer = self.db.update_item(
            TableName=self.table, Key=self._key(line),
            UpdateExpression="ADD " + ", ".join(adds) + " SET expires_at = :ttl, period_ends_at = :end",
            ExpressionAttributeValues=values, ReturnValues="ALL_NEW", **({"ExpressionAttributeNames": names}
                                                                         if names else {}))
        return _spent(answer.get("Attributes", {}))

    def add(self, line: Line, usd: float, unknown: bool) -> Spent:
        """Spend with nothing reserved first."""
        return self.settle(Hold(line), usd, unknown)

    def reclaim(self, line: Line, held: dict[int, float]) -> None:
        """Hand back reservations nobody will release; each only if it is still what was seen (else: next time)."""
        db = self.db
        for minute, usd in held.items():
            try:
                db.update_item(TableName=self.table, Key=self._key(line),
                               UpdateExpression="ADD committed_nusd :back REMOVE #h", ConditionExpression="#h = :seen",
                               ExpressionAttributeNames={"#h": f"{HELD_PREFIX}{minute}"},
                               ExpressionAttributeValues={":back": {"N": str(-nano(usd))},
                                                          ":seen": {"N": str(nano(usd))}})
            except db.exceptions.ConditionalCheckFailedException:
                continue

    def claim(self, line: Line, note: str) -> bool:
        """Stamp the note on the counter unless another instance did first: True for the one that did."""
        db = self.db
        try:
            db.update_item(TableName=self.table, Key=self._key(line),
                           UpdateExpression="SET #n = :now", ConditionExpression="attribute_not_exists(#n)",
                           ExpressionAttributeNames={"#n": NOTE_ATTRIBUTE[note]},
                           ExpressionAttributeValues={":now": {"S": iso(time.time())}})
        except db.exceptions.ConditionalCheckFailedException:
            return False
        return True


def nano(usd: float) -> int:
    """Dollars as whole nano-dollars, how reservations are counted (exact when they are handed back)."""
    return round(usd * NANO)


def _spent(item: dict[str, Any]) -> Spent:
    noted = frozenset(note for note, attribute in NOTE_ATTRIBUTE.items() if attribute in item)
    held = {int(name[len(HELD_PREFIX):]): float(value["N"]) / NANO for name, value in item.items()
            if name.startswith(HELD_PREFIX) and name[len(HELD_PREFIX):].isdigit() and "N" in value}
    committed = float(item["committed_nusd"]["N"]) / NANO if "N" in item.get("committed_nusd", {}) else None
    return Spent(float(item.get("spent_usd", {}).get("N", "0")), int(item.get("unpriced_calls", {}).get("N", "0")) > 0,
                 noted, committed, held)


# -- the tracker: admit, then count -----------------------------------------------------------------------


@dataclass
class BudgetCheck:
    """One call's budgets: what is known at admission, and the shared reservation still on its way, if any."""

    lines: list[Line]
    known: Verdict = UNDER
    pending: asyncio.Future | None = None  # -> Verdict; never raises (a failed check follows budget_on_error)


def spend_of(record: Any) -> tuple[float | None, bool]:
    """(dollars the call cost, or None when unknown; whether it produced anything). Unknown with output: a
    stream cut before its usage came. A refused or failed call produced nothing and costs nothing."""
    produced = record.status < 400 or bool(record.completion_tokens)
    if record.cost_usd is not None:
        return max(float(record.cost_usd), 0.0), produced
    return (None if produced else 0.0), produced


def reservation_usd(prices: Iterable[Any], body_bytes: int, output_tokens: int) -> float:
    """A call's worst case: its prompt (a token per PROMPT_BYTES_PER_TOKEN bytes of request) plus its output
    limit, at the dearest of the routes it may take. `prices` are ledger Price objects (input, output USD per
    million tokens)."""
    prompt = math.ceil(body_bytes / PROMPT_BYTES_PER_TOKEN)
    return max((prompt * price.input + output_tokens * price.output) / 1_000_000 for price in prices)


class BudgetTracker:
    def __init__(self, counters: Counters | None = None, *, emit_metrics: bool = False,
                 clock: Callable[[], float] = time.time, on_error: str = "open") -> None:
        self.counters: Counters = counters or MemoryCounters()
        self.emit_metrics = emit_metrics
        self.clock = clock
        self.on_error = on_error  # SWITCHBOARD_BUDGET_ON_ERROR: "open" or "closed"
        self.held: dict[str, list[Hold]] = {}  # request id -> its reservations, one per budget line
        self.pending: dict[str, asyncio.Future] = {}  # request id -> its shared reservation, until it lands
        self.known_over: dict[Key, tuple[float, float]] = {}  # key -> (dollars seen, forget at, monotonic)

    @classmethod
    def from_settings(cls, settings: Any) -> BudgetTracker:
        """Counters in the calls table when there is one, else in memory."""
        counters: Counters | None = None
        if settings.table_name:
            from switchboard import aws

            counters = TableCounters(lambda: aws.client("dynamodb", settings), settings.table_name)
        return cls(counters, emit_metrics=settings.metrics, on_error=settings.budget_on_error)

    # -- admission ----------------------------------------------------------------------------------

    def admit(self, request_id: str, scopes: Iterable[Scope], reserve_usd: float = 0.0) -> BudgetCheck | None:
        """Reserve the call's worst case on each of its budgets; None when it has no budget at all.

        In memory the verdict is immediate. With a table, a scope known to be over decides now and the
        reservation runs beside the upstream request (`pending`).
        """
        now = self.clock()
        lines = budget_lines(scopes, now)
        if not lines:
            return None
        self._hold(request_id, [Hold(line) for line in lines])
        if not self.counters.shared:
            return BudgetCheck(lines, self._reserved(request_id, lines, [
                self.counters.reserve(line, reserve_usd, int(now // 60)) for line in lines], reserve_usd, now))
        remembered = self._remembered()
        known = decide(lines, remembered)
        if known.refuses:
            return BudgetCheck(lines, known)
        pending = asyncio.ensure_future(self._reserve_shared(request_id, lines, reserve_usd, now))
        self.pending[request_id] = pending
        return BudgetCheck(lines, known, pending)

    def _hold(self, request_id: str, holds: list[Hold]) -> None:
        if len(self.held) >= MAX_HELD:
            del self.held[next(iter(self.held))]
        self.held[request_id] = holds

    def _reserved(self, request_id: str, lines: list[Line], results: list[tuple[bool, Spent] | BaseException],
                  reserve_usd: float, now: float) -> Verdict:
        """Note what was reserved where, and decide: the lines that refused their reservation are over. A line
        whose reservation failed holds nothing; the failure is for SWITCHBOARD_BUDGET_ON_ERROR to judge."""
        minute = int(now // 60)
        holds, full = [], []
        for line, result in zip(lines, results, strict=True):
            if isinstance(result, BaseException):
                holds.append(Hold(line))
                continue
            admitted, spent = result
            holds.append(Hold(line, reserve_usd, minute) if admitted else Hold(line))
            if not admitted:
                full.append((line, spent))
            self._remember(line, spent.usd)
            stale = stale_holds(spent, now)
            if stale:
                self._reclaim(line, stale)
        if request_id in self.held:
            self.held[request_id] = holds
        return decide_full(full)

    async def _reserve_shared(self, request_id: str, lines: list[Line], reserve_usd: float, now: float) -> Verdict:
        minute = int(now // 60)
        results = await asyncio.gather(*(asyncio.to_thread(self.counters.reserve, line, reserve_usd, minute)
                                         for line in lines), return_exceptions=True)
        verdict = self._reserved(request_id, lines, results, reserve_usd, now)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None and not verdict.refuses:  # DynamoDB unreachable: SWITCHBOARD_BUDGET_ON_ERROR decides
            return self.check_failed(failure)
        return verdict

    def check_failed(self, exc: BaseException | None) -> Verdict:
        """A budget check that failed (or, with None, took longer than VERDICT_WAIT_S): the call goes ahead under
        SWITCHBOARD_BUDGET_ON_ERROR=open, and is refused under closed."""
        from switchboard.observability import logger

        reason = "DynamoDB did not answer in time" if exc is None else f"the check failed ({type(exc).__name__})"
        fields = {"budget_on_error": self.on_error} | (_error_fields(exc) if exc is not None else {})
        if self.on_error == "closed":
            logger.warning("budget check failed; the call is refused", extra=fields)
            return Verdict(unavailable=reason)
        logger.warning("budget check failed; the call goes ahead", extra=fields)
        return UNDER

    def _reclaim(self, line: Line, stale: dict[int, float]) -> None:
        """Hand back reservations a dead process left, off the call's path."""
        if not self.counters.shared:
            self.counters.reclaim(line, stale)
            return

        def reclaim() -> None:
            try:
                self.counters.reclaim(line, stale)
            except Exception as exc:
                from switchboard.observability import logger

                logger.warning("stale budget reservations not handed back", extra=_error_fields(exc))

        threading.Thread(target=reclaim, name="budget-reclaim", daemon=True).start()

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
        """At the call's end, once it is priced: its cost replaces its reservations. Never raises."""
        pending = self.pending.pop(record.request_id, None)
        if pending is not None and not pending.done():
            await asyncio.wait((pending,))  # a late reservation must land before it can be given back
        holds = self.held.pop(record.request_id, None)
        if not holds:
            return
        cost, produced = spend_of(record)
        work = []
        for hold in holds:
            usd = cost if cost is not None else hold.usd  # usage never came: the worst case stands as spent
            if usd or hold.usd or cost is None:
                work.append((hold, usd, cost is None))
        if self.counters.shared:
            results = await asyncio.gather(*(asyncio.to_thread(self.counters.settle, hold, usd, unknown)
                                             for hold, usd, unknown in work), return_exceptions=True)
        else:
            results = [self.counters.settle(hold, usd, unknown) for hold, usd, unknown in work]
        for (hold, usd, _), after in zip(work, results, strict=True):
            if isinstance(after, BaseException):
                _log_not_counted(record, hold.line, usd, after)
                continue
            self._remember(hold.line, after.usd)
            await self._note_crossings(hold.line, after)

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
            "spent_usd": round(spent.usd, 10), "reserved_usd": round(spent.reserved_usd, 10),
            "remaining_usd": round(max(line.limit_usd - spent.usd, 0.0), 10),
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
    from switchboard.core.plan import task_budgets

    keys = list(gateway.keys.static) + list(gateway.keys.stored())
    return report(gateway.budgets.counters, configured_scopes(task_budgets(gateway.settings), keys))

