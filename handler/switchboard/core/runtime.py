"""Wiring: turn Settings into a ready Gateway (keys, secrets, store, recorder)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable

from switchboard.config.settings import Settings
from switchboard.core.finalize import Finalizer
from switchboard.core.gateway import Gateway
from switchboard.keys.auth import KeyStore, env_keys
from switchboard.keys.secrets import Secrets
from switchboard.ledger.pricing import configured_catalog
from switchboard.ledger.record import CallRecord
from switchboard.ledger.store import CallStore
from switchboard.ledger.writer import LedgerWriter
from switchboard.limits.budgets.tracker import BudgetTracker
from switchboard.limits.ratelimit import RateLimiter


def build_gateway(settings: Settings, observers: Iterable[Callable[[CallRecord], None]] = ()) -> Gateway:
    """`observers` see every finished record (tests use it; so could an exporter)."""
    from switchboard import aws

    secrets = Secrets.from_settings(settings)
    keys = KeyStore(env_keys(settings.api_keys, settings.admin_keys), stored=secrets.stored_gateway_keys)
    store = None
    if settings.table_name:
        store = CallStore(lambda: aws.client("dynamodb", settings), settings.table_name,
                          settings.record_retention_days)
    limiter = RateLimiter(lambda: aws.client("dynamodb", settings), settings.table_name) if store else RateLimiter()
    budgets = BudgetTracker.from_settings(settings)
    prices = configured_catalog(settings.prices_file, settings.default_price)
    recorder = Finalizer(LedgerWriter(store, settings.ledger_write_budget_s), prices, emit_metrics=settings.metrics,
                         observers=observers, release=limiter.release, spend=budgets.spend)
    return Gateway(settings, keys, secrets.provider_key, recorder, store=store, secrets=secrets, limiter=limiter,
                   budgets=budgets)


WARM_IDLE_S = 2.0  # with no call by then, warm up anyway


def warm_after_first_call(gateway: Gateway) -> None:
    """Warm up (AWS clients, both secrets, the logger, Bedrock's signer) once the first call's first byte is out,
    or WARM_IDLE_S after start-up if no call came: a warm-up thread holding the interpreter while the first call
    waits for its first token would add to the very latency it is meant to save. What the first call's record
    needs is then loading beside its stream, not after it."""
    started = threading.Event()

    def start() -> None:
        if not started.is_set():
            started.set()
            warm_in_background(gateway)

    gateway.relay.after_first_byte = start
    asyncio.get_running_loop().call_later(WARM_IDLE_S, start)


def warm_in_background(gateway: Gateway) -> threading.Thread:
    """Off the request path: AWS clients, both secrets, the logger."""

    def warm() -> None:
        from switchboard import aws
        from switchboard.observability import logger

        secrets = gateway.secrets
        try:
            logger.warm()
            if gateway.settings.table_name or (secrets and (secrets.provider_secret or secrets.gateway_secret)):
                aws.client("dynamodb", gateway.settings)
                aws.client("secretsmanager", gateway.settings)
            if secrets is not None:
                secrets.warm()
            if gateway.store is not None:
                gateway.store.warm()
            warm_bedrock(gateway)
        except Exception as exc:  # the request path fetches again and reports properly
            logger.warning("background warm-up failed", extra={"error_type": type(exc).__name__})

    thread = threading.Thread(target=warm, name="warm-up", daemon=True)
    thread.start()
    return thread


def warm_bedrock(gateway: Gateway) -> None:
    """Bedrock's adapter (botocore's signer and event-stream parser) and the credential chain, loaded after
    start-up so neither the cold start nor the first Bedrock call pays for them."""
    config = gateway.settings.provider("bedrock")
    if config is None or not config.base_url:
        return
    gateway.adapters("bedrock").warm()
