"""The recorder the relay calls once per request, before the final `[DONE]`.

It finishes the record (timings, cost), emits the call's metrics, and writes it to DynamoDB within a
short budget. If the write fails or runs over, the whole record goes to the structured log instead,
so nothing is lost, and the response carries on either way. Beside the write, the priced cost is
added to the call's spend budgets (budgets.py), within the same budget of time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from switchboard.ledger.pricing import DEFAULT_KEY, PriceCatalog, cost_at
from switchboard.ledger.record import CallClock, CallRecord
from switchboard.ledger.store import CallStore
from switchboard.observability import SERVICE, call_fields, log_record, logger, metrics

FALLBACK_MESSAGE = "call record not stored; logged in full instead"
STORED_LATE = "call record stored after its fallback line; that line is superseded"


TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "cache_write_tokens",
                "reasoning_tokens")
MAX_TOKENS = 10**12  # no call comes near it; above it a count is garbage (and a 400-digit one breaks float math)


class Recorder:
    """Never raises: a record it cannot finish, price or store still goes to the log, and the caller's
    rate-limit slot is freed whatever happened."""

    def __init__(self, store: CallStore | None, prices: PriceCatalog, *, write_budget_s: float = 0.5,
                 emit_metrics: bool = False, observers: Iterable[Callable[[CallRecord], None]] = (),
                 release: Callable[[str], Awaitable[None]] | None = None,
                 spend: Callable[[CallRecord], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.release = release  # the rate limiter's slot, freed alongside the write
        self.spend = spend  # the budget tracker's counting, once the record is priced
        self.prices = prices
        self.write_budget_s = write_budget_s
        self.emit_metrics = emit_metrics
        self.observers = list(observers)

    async def __call__(self, record: CallRecord, clock: CallClock) -> None:
        release = asyncio.ensure_future(self._release(record.request_id)) if self.release else None
        spend: asyncio.Future | None = None
        try:
            self._finish(record, clock)
            spend = asyncio.ensure_future(self._spend(record)) if self.spend else None
            self._observe(record)
            if self.emit_metrics:
                emit_metrics(record)
            if self.store is None:
                log_record("info", "call record", record)
            else:
                await self._store(record)
        except Exception as exc:  # a bug of ours: the record still reaches the log
            _log_unrecorded(record, exc)
        finally:
            if release is not None:
                await asyncio.shield(release)  # even when cancelled, the slot is freed
            if spend is not None:
                await self._await_spend(spend, record)

    async def _spend(self, record: CallRecord) -> None:
        try:
            await self.spend(record)  # type: ignore[misc]
        except Exception as exc:
            logger.warning("budget spend not counted", extra={**call_fields(record), "cost_usd": record.cost_usd,
                                                               "error_type": type(exc).__name__})

    async def _await_spend(self, spend: asyncio.Future, record: CallRecord) -> None:
        """Counted before the stream closes (Lambda may freeze the process then), within the write budget."""
        done, _ = await asyncio.wait({asyncio.shield(spend)}, timeout=self.write_budget_s)
        if not done:
            logger.warning("budget spend not counted in time; it lands late", extra={
                **call_fields(record), "cost_usd": record.cost_usd})

    async def _release(self, request_id: str) -> None:
        try:
            await self.release(request_id)  # type: ignore[misc]
        except Exception as exc:
            logger.warning("rate-limit slot not released", extra={"request_id": request_id,
                                                                   "error_type": type(exc).__name__})

    def _finish(self, record: CallRecord, clock: CallClock) -> None:
        try:
            finish(record, clock, self.prices)
        except Exception as exc:  # the record is written unfinished rather than not at all
            logger.warning("call record not finished", extra={**call_fields(record), "error_type": type(exc).__name__})

    def _observe(self, record: CallRecord) -> None:
        for observe in self.observers:
            try:
                observe(record)
            except Exception as exc:
                logger.warning("call record observer failed", extra={**call_fields(record),
                                                                     "error_type": type(exc).__name__})

    async def _store(self, record: CallRecord) -> None:
        """The call item within the budget, else the full record to the log: exactly one of the two counts.

        When the budget runs out, writes still queued are cancelled. One already on the wire may land
        later; it then logs STORED_LATE, which marks the fallback line above it as superseded, so a
        reader still finds one record.
        """
        try:
            item, rollups = self.store.submit(record)
        except Exception as exc:
            log_record("error", FALLBACK_MESSAGE, record, reason=type(exc).__name__)
            return
        waiting = [asyncio.wrap_future(item)] + [asyncio.wrap_future(f) for f in rollups]
        done, _pending = await asyncio.wait(waiting, timeout=self.write_budget_s)
        for future in (item, *rollups):
            future.cancel()  # a write still queued behind others is dropped: it would only land late
        if waiting[0] in done and waiting[0].exception() is None:
            if any(f not in done or f.exception() is not None for f in waiting[1:]):
                logger.warning("usage rollup not updated in time", extra=call_fields(record))
            for future in waiting[1:]:
                future.add_done_callback(_quiet)
            return
        reason = type(waiting[0].exception()).__name__ if waiting[0] in done else "TimeoutError"
        log_record("error", FALLBACK_MESSAGE, record, reason=reason)
        if not item.cancelled():  # it was on the wire: it may land (or just have landed) after all
            item.add_done_callback(lambda future: _stored_late(future, record))
        for future in waiting:
            future.add_done_callback(_quiet)


def _quiet(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not complain about it


def _stored_late(future, record: CallRecord) -> None:
    if not future.cancelled() and future.exception() is None:
        logger.info(STORED_LATE, extra=call_fields(record))


def finish(record: CallRecord, clock: CallClock, prices: PriceCatalog) -> None:
    """Timings from the clock, then the price; called once, just before the record is stored."""
    drop_implausible_usage(record)
    record.ttft_ms = clock.ms_since_start(clock.first_token)
    record.first_chunk_ms = clock.ms_since_start(_earliest(clock.first_chunk, clock.first_token))
    record.total_ms = clock.ms_since_start(CallClock.now())
    record.overhead_ms = clock.overhead_ms()
    if record.priced_as is None:  # the route normally names its price; a record made elsewhere may not
        record.priced_as = prices.resolve(record.provider, record.model)
    price = prices.by_key(record.priced_as)
    record.cost_usd = cost_at(price, record.prompt_tokens, record.completion_tokens, record.cached_tokens,
                              cache_write_tokens=record.cache_write_tokens, total_tokens=record.total_tokens)
    record.priced = price is not None
    record.cost_estimated = record.priced_as == DEFAULT_KEY


def drop_implausible_usage(record: CallRecord) -> None:
    """Token counts that are not whole numbers in 0..MAX_TOKENS are the upstream's garbage: dropped, logged."""
    dropped = []
    for name in TOKEN_FIELDS:
        value = getattr(record, name)
        if value is not None and not (type(value) is int and 0 <= value <= MAX_TOKENS):
            setattr(record, name, None)
            dropped.append(name)
    if dropped:
        logger.warning("implausible token counts from the upstream dropped",
                       extra={**call_fields(record), "fields": dropped})


def _earliest(*marks: float | None) -> float | None:
    """The first content delta is itself a chunk the client sees, so it bounds the first chunk."""
    present = [mark for mark in marks if mark is not None]
    return min(present) if present else None


def _log_unrecorded(record: CallRecord, exc: Exception) -> None:
    try:
        log_record("error", FALLBACK_MESSAGE, record, reason=type(exc).__name__)
    except Exception:  # the record itself cannot be rendered: at least say which call it was
        logger.exception("call record lost", extra={"request_id": record.request_id})


def emit_metrics(record: CallRecord) -> None:
    """One EMF blob per call, flushed at once: under the web adapter no handler decorator flushes it."""
    try:
        add_dimensions = getattr(metrics, "add_dimensions", None)
        if add_dimensions is not None and record.provider:
            add_dimensions(service=SERVICE, provider=record.provider, model=record.model or "none")
        metrics.add_metric(name="Calls", unit="Count", value=1)
        metrics.add_metric(name="Errors", unit="Count", value=int(record.is_error))
        if record.ttft_ms is not None:
            metrics.add_metric(name="TTFT", unit="Milliseconds", value=record.ttft_ms)
        if record.total_ms is not None:
            metrics.add_metric(name="Latency", unit="Milliseconds", value=record.total_ms)
        if record.overhead_ms is not None:
            metrics.add_metric(name="GatewayOverhead", unit="Milliseconds", value=record.overhead_ms)
        for name, value in (("PromptTokens", record.prompt_tokens), ("CompletionTokens", record.completion_tokens)):
            if value is not None:
                metrics.add_metric(name=name, unit="Count", value=value)
        if record.cost_usd is not None:
            metrics.add_metric(name="CostUSD", unit="None", value=record.cost_usd)
        metrics.flush_metrics(raise_on_empty_metrics=False)
    except Exception as exc:  # metrics must never break a call
        logger.warning("metrics not emitted", extra={"error_type": type(exc).__name__,
                                                     "request_id": record.request_id})
