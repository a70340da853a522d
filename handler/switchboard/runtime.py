"""Wiring: turn Settings into a ready Gateway (keys, secrets, store, recorder)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from switchboard.auth import KeyStore, env_keys
from switchboard.budgets import BudgetTracker
from switchboard.gateway import Gateway
from switchboard.ledger.pricing import configured_catalog
from switchboard.ledger.record import CallRecord
from switchboard.ledger.recorder import Recorder
from switchboard.ledger.store import CallStore
from switchboard.ratelimit import RateLimiter
from switchboard.secrets import Secrets
from switchboard.settings import Settings


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
    recorder = Recorder(store, prices, write_budget_s=settings.ledger_write_budget_s, emit_metrics=settings.metrics,
                        observers=observers, release=limiter.release, spend=budgets.spend)
    return Gateway(settings, keys, secrets.provider_key, recorder, store=store, secrets=secrets, limiter=limiter,
                   budgets=budgets)


def warm_in_background(gateway: Gateway) -> threading.Thread:
    """After start-up, off the request path: AWS clients, both secrets, the logger."""

    def warm() -> None:
        from switchboard import aws
        from switchboard.observability import logger

        try:
            logger.warm()
            if gateway.settings.table_name or gateway.secrets.provider_secret or gateway.secrets.gateway_secret:
                aws.client("dynamodb", gateway.settings)
                aws.client("secretsmanager", gateway.settings)
            gateway.secrets.warm()
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
    from switchboard.providers import adapter

    bedrock = adapter("bedrock")
    try:
        bedrock.CREDENTIALS.load()
    except bedrock.CredentialsUnavailable:
        pass  # no credentials here: Bedrock is simply not listed, and a call says why
