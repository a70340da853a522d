"""The end of a call, in order: its price, the rate-limit slot freed, the budget's spend, the ledger's write.

Called once per request, before the final `[DONE]` (on Lambda the process may be frozen the moment the
response ends). It never raises: a record it cannot finish, price or store still reaches the log, and the
caller's rate-limit slot is freed whatever happened. The spend is counted beside the write, within the
same budget of time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from switchboard.ledger.finish import finish
from switchboard.ledger.metrics import emit_metrics
from switchboard.ledger.pricing import PriceCatalog
from switchboard.ledger.record import CallClock, CallRecord
from switchboard.ledger.writer import LedgerWriter, log_unrecorded
from switchboard.observability import call_fields, logger

Release = Callable[[str], Awaitable[None]]
Spend = Callable[[CallRecord], Awaitable[None]]


class Finalizer:
    def __init__(self, writer: LedgerWriter, prices: PriceCatalog, *, emit_metrics: bool = False,
                 observers: Iterable[Callable[[CallRecord], None]] = (), release: Release | None = None,
                 spend: Spend | None = None) -> None:
        self.writer = writer
        self.prices = prices
        self.emit_metrics = emit_metrics
        self.observers = list(observers)
        self.release = release  # the rate limiter's slot, freed alongside the write
        self.spend = spend  # the budget tracker's counting, once the record is priced

    async def __call__(self, record: CallRecord, clock: CallClock) -> None:
        release = asyncio.ensure_future(self._release(self.release, record.request_id)) if self.release else None
        spend: asyncio.Future | None = None
        try:
            self._finish(record, clock)
            spend = asyncio.ensure_future(self._spend(self.spend, record)) if self.spend else None
            self._observe(record)
            if self.emit_metrics:
                emit_metrics(record)
            await self.writer.write(record)
        except Exception as exc:  # a bug of ours: the record still reaches the log
            log_unrecorded(record, exc)
        finally:
            if release is not None:
                await asyncio.shield(release)  # even when cancelled, the slot is freed
            if spend is not None:
                await self._await_spend(spend, record)

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

    @staticmethod
    async def _spend(spend: Spend, record: CallRecord) -> None:
        try:
            await spend(record)
        except Exception as exc:
            logger.warning("budget spend not counted", extra={**call_fields(record), "cost_usd": record.cost_usd,
                                                               "error_type": type(exc).__name__})

    async def _await_spend(self, spend: asyncio.Future, record: CallRecord) -> None:
        """Counted before the stream closes (Lambda may freeze the process then), within the write budget."""
        done, _ = await asyncio.wait({asyncio.shield(spend)}, timeout=self.writer.write_budget_s)
        if not done:
            logger.warning("budget spend not counted in time; it lands late", extra={
                **call_fields(record), "cost_usd": record.cost_usd})

    @staticmethod
    async def _release(release: Release, request_id: str) -> None:
        try:
            await release(request_id)
        except Exception as exc:
            logger.warning("rate-limit slot not released", extra={"request_id": request_id,
                                                                   "error_type": type(exc).__name__})
