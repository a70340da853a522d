"""The budget tracker: admit a call against its budgets, then count what it spent.

Calls in flight count. A call is admitted while its line is under the limit, committed spend included, by
reserving its worst case at its routes' prices: its prompt, estimated from the request (a token per 3 bytes of
body), plus its `max_tokens` or SWITCHBOARD_BUDGET_RESERVE_OUTPUT_TOKENS. When the call ends, its reservation is
replaced by its cost; a call whose usage never came (a cut stream) keeps its reservation as its spend, marked
incomplete. Sequential calls therefore behave as if only spend counted, and concurrent ones overshoot by at most
about one call (counters.py holds the arithmetic).

Every budgeted call is priced (see ledger/pricing.py): a model the catalog cannot price, with no
SWITCHBOARD_DEFAULT_PRICE, is refused with 400 `model_unpriced` rather than spending unseen.

The check works like the rate limiter's: the reservation runs beside the upstream request, and the call
waits for its verdict only before its first byte, so it costs the first token nothing. A scope seen over
its limit is remembered for a few seconds (never past its period), so the next call is decided before
anything is sent upstream. Over the limit a budget either refuses (429 `budget_exceeded`, `retry-after`
until the period ends) or moves the call to a cheaper model; a call that started under budget is never
cut. A check that fails or takes longer than VERDICT_WAIT_S follows SWITCHBOARD_BUDGET_ON_ERROR: `open`
(the default) lets the call go, its spend still counted; `closed` refuses it (503 `budget_unavailable`).
Passing the soft threshold, and the limit, logs one warning and emits one metric per scope and period.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from switchboard.limits.budgets.counters import (
    EXCEEDED,
    SOFT,
    Counters,
    Hold,
    MemoryCounters,
    Spent,
    TableCounters,
    stale_holds,
)
from switchboard.limits.budgets.model import Key, Line, Scope, budget_lines, iso, usd
from switchboard.wire.errors import GatewayError

if TYPE_CHECKING:
    from switchboard.config.settings import Settings
    from switchboard.ledger.pricing import Price
    from switchboard.ledger.record import CallRecord

KNOWN_OVER_S = 10.0  # how long an over-limit figure decides calls without asking the table again
VERDICT_WAIT_S = 1.0  # the longest a first byte waits for a slow table; then the call is let through
MAX_HELD = 10_000  # calls in flight whose spend is still to count; a leak beyond it drops the oldest
PROMPT_BYTES_PER_TOKEN = 3  # a reservation's prompt estimate: generous for English, closer for other scripts


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


@dataclass
class BudgetCheck:
    """One call's budgets: what is known at admission, and the shared reservation still on its way, if any."""

    lines: list[Line]
    known: Verdict = UNDER
    pending: asyncio.Future[Verdict] | None = None  # never raises (a failed check follows budget_on_error)


def spend_of(record: CallRecord) -> tuple[float | None, bool]:
    """(dollars the call cost, or None when unknown; whether it produced anything). Unknown with output: a
    stream cut before its usage came. A refused or failed call produced nothing and costs nothing."""
    produced = record.status < 400 or bool(record.completion_tokens)
    if record.cost_usd is not None:
        return max(float(record.cost_usd), 0.0), produced
    return (None if produced else 0.0), produced


def reservation_usd(prices: Iterable[Price], body_bytes: int, output_tokens: int) -> float:
    """A call's worst case: its prompt (a token per PROMPT_BYTES_PER_TOKEN bytes of request) plus its output
    limit, at the dearest of the routes it may take (prices in USD per million tokens)."""
    prompt = math.ceil(body_bytes / PROMPT_BYTES_PER_TOKEN)
    return max((prompt * price.input + output_tokens * price.output) / 1_000_000 for price in prices)


class BudgetTracker:
    """Every call's budget checks and spend, for one process: reservations held, calls seen over their limit."""

    def __init__(self, counters: Counters | None = None, *, emit_metrics: bool = False,
                 clock: Callable[[], float] = time.time, on_error: str = "open") -> None:
        self.counters: Counters = counters or MemoryCounters()
        self.emit_metrics = emit_metrics
        self.clock = clock
        self.on_error = on_error  # SWITCHBOARD_BUDGET_ON_ERROR: "open" or "closed"
        self.held: dict[str, list[Hold]] = {}  # request id -> its reservations, one per budget line
        self.pending: dict[str, asyncio.Future[Verdict]] = {}  # request id -> its shared reservation, until it lands
        self.known_over: dict[Key, tuple[float, float]] = {}  # key -> (dollars seen, forget at, monotonic)

    @classmethod
    def from_settings(cls, settings: Settings) -> BudgetTracker:
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

    async def spend(self, record: CallRecord) -> None:
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


def _log_not_counted(record: CallRecord, line: Line, cost: float, exc: BaseException) -> None:
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
