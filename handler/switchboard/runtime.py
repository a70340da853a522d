"""Wiring: turn Settings into a ready Gateway (keys, provider keys, recorder)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from switchboard.auth import KeyStore, env_keys
from switchboard.gateway import Gateway
from switchboard.ledger.record import CallClock, CallRecord
from switchboard.settings import Settings


def build_gateway(settings: Settings, observers: Iterable[Callable[[CallRecord], None]] = ()) -> Gateway:
    """`observers` see every finished record (tests use it; so could an exporter)."""
    keys = KeyStore(env_keys(settings.api_keys, settings.admin_keys))

    def provider_key(name: str) -> str | None:
        config = settings.provider(name)
        return config.api_key if config else None

    async def recorder(record: CallRecord, clock: CallClock) -> None:
        finalize(record, clock)
        for observe in observers:
            observe(record)

    return Gateway(settings, keys, provider_key, recorder)


def finalize(record: CallRecord, clock: CallClock) -> None:
    """Fill in the timing fields from the clock; called once, just before the record is stored."""
    record.ttft_ms = clock.ms_since_start(clock.first_token)
    record.total_ms = clock.ms_since_start(CallClock.now())
    record.overhead_ms = clock.overhead_ms()
