"""A record's last fields, set once as the call ends: its timings from the clock, then its price.

Token counts an upstream reports are checked first: garbage is dropped (and logged), never priced."""

from __future__ import annotations

from switchboard.ledger.pricing import DEFAULT_KEY, PriceCatalog, cost_at
from switchboard.ledger.record import CallClock, CallRecord
from switchboard.observability import call_fields, logger

TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "cache_write_tokens",
                "reasoning_tokens")


MAX_TOKENS = 10**12  # no call comes near it; above it a count is garbage (and a 400-digit one breaks float math)


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
