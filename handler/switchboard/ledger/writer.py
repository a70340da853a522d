"""The ledger's writer: one call record to DynamoDB within a short budget of time, or to the log in full.

If the write fails or runs over, the whole record goes to the structured log instead, so nothing is lost and
the response carries on either way. It has no callbacks: what else happens as a call ends (its price, the
rate-limit slot, the budget's spend) is core/finalize's, in order.
"""

from __future__ import annotations

import asyncio

from switchboard.ledger.record import CallRecord
from switchboard.ledger.store import CallStore
from switchboard.observability import call_fields, log_record, logger

FALLBACK_MESSAGE = "call record not stored; logged in full instead"
STORED_LATE = "call record stored after its fallback line; that line is superseded"


class LedgerWriter:
    """Never raises: a record it cannot store still goes to the log."""

    def __init__(self, store: CallStore | None, write_budget_s: float = 0.5) -> None:
        self.store = store
        self.write_budget_s = write_budget_s

    async def write(self, record: CallRecord) -> None:
        if self.store is None:
            log_record("info", "call record", record)
        else:
            await self._store(record)

    async def _store(self, record: CallRecord) -> None:
        """The call item within the budget, else the full record to the log: exactly one of the two counts.

        When the budget runs out, writes still queued are cancelled. One already on the wire may land
        later; it then logs STORED_LATE, which marks the fallback line above it as superseded, so a
        reader still finds one record.
        """
        assert self.store is not None
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
            for waiter in waiting[1:]:
                waiter.add_done_callback(_quiet)
            return
        reason = type(waiting[0].exception()).__name__ if waiting[0] in done else "TimeoutError"
        log_record("error", FALLBACK_MESSAGE, record, reason=reason)
        if not item.cancelled():  # it was on the wire: it may land (or just have landed) after all
            item.add_done_callback(lambda future: _stored_late(future, record))
        for waiter in waiting:
            waiter.add_done_callback(_quiet)


def _quiet(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not complain about it


def _stored_late(future, record: CallRecord) -> None:
    if not future.cancelled() and future.exception() is None:
        logger.info(STORED_LATE, extra=call_fields(record))


def log_unrecorded(record: CallRecord, exc: Exception) -> None:
    try:
        log_record("error", FALLBACK_MESSAGE, record, reason=type(exc).__name__)
    except Exception:  # the record itself cannot be rendered: at least say which call it was
        logger.exception("call record lost", extra={"request_id": record.request_id})


