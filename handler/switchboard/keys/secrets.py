"""Provider keys and gateway keys in Secrets Manager, read through Powertools Parameters.

Two JSON secrets:
  * provider keys: `{"openai": "sk-...", "anthropic": "..."}`
  * gateway keys:  `{"keys": [{"name": "...", "sha256": "<hex>", ...}]}`, one entry per key (see records.py:
    only a key's SHA-256 is stored), parsed once per value fetched rather than on every request.

Caching (`SWITCHBOARD_SECRETS_MAX_AGE`, default 300 s) is stale-while-revalidate: a read never waits
on Secrets Manager once a value exists. Past 80% of the age a thread of its own refreshes the value
behind the reader; while Secrets Manager is slow or failing the last good value keeps serving and the
fetch is retried with backoff, each failure logged. So a created or revoked key takes effect within
the cache age while Secrets Manager answers (a revoked key outlives it only while it does not). Only
a secret never read is waited for, by `Secrets.ensure_fresh`, off the event loop and for at most
`SWITCHBOARD_SECRETS_FETCH_TIMEOUT_MS`. Environment variables override the secrets (`OPENAI_API_KEY`
and the rest, `SWITCHBOARD_API_KEYS`, `SWITCHBOARD_ADMIN_KEYS`) and never wait at all.

Writing the secrets is the CLI's (ops/secrets_admin.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from switchboard.config.settings import Settings
from switchboard.keys.auth import StoredKey
from switchboard.wire.errors import GatewayError

REFRESH_AHEAD = 0.8
DEFAULT_FETCH_TIMEOUT_S = 3.0
RETRY_BASE_S = 1.0
RETRY_MAX_S = 60.0


class SecretUnavailable(Exception):
    """The secret has never been read: Secrets Manager failed, or has not answered yet."""


class CachedSecret:
    """One JSON secret, cached; `fetch` returns the parsed value (or {} when the secret has none).

    `get()` only ever reads memory. Fetches run on a thread of their own, one at a time; after a
    failure the next one waits `retry_base_s`, doubling up to `retry_max_s`.
    """

    def __init__(self, fetch: Callable[[], dict], max_age_s: float, *, label: str = "secret",
                 retry_base_s: float = RETRY_BASE_S, retry_max_s: float = RETRY_MAX_S) -> None:
        self._fetch = fetch
        self.max_age_s = max_age_s
        self.label = label  # for log lines: which secret, never its name or value
        self.retry_base_s, self.retry_max_s = retry_base_s, retry_max_s
        self._value: dict | None = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()
        self._inflight: Future | None = None
        self._failures = 0
        self._retry_at = 0.0
        # Run on each value fetched, before it is served: its parsing (and pydantic's import) stays off the loop.
        self.parse_ahead: Callable[[dict], object] | None = None

    @property
    def age_s(self) -> float:
        return time.monotonic() - self._fetched_at

    @property
    def has_value(self) -> bool:
        return self._value is not None

    def fresh_enough(self) -> bool:
        return self._value is not None and self.age_s < self.max_age_s

    def get(self) -> dict:
        """The value in memory, however old; a refresh starts behind the caller when it is due."""
        value = self._value
        if value is None or self.age_s >= self.max_age_s * REFRESH_AHEAD:
            self.refresh_in_background()
        if value is None:
            raise SecretUnavailable(self.label)
        return value

    def refresh_in_background(self) -> Future | None:
        """The fetch under way, or a new one; None while backing off after a failure."""
        with self._lock:
            if self._inflight is not None:
                return self._inflight
            if time.monotonic() < self._retry_at:
                return None
            future: Future = Future()
            future.set_running_or_notify_cancel()  # a waiter giving up cannot cancel it
            self._inflight = future
        threading.Thread(target=self._fetch_into, args=(future,), name="secret-refresh", daemon=True).start()
        return future

    def _fetch_into(self, future: Future) -> None:
        try:
            future.set_result(self.refresh())
        except BaseException as exc:  # logged by refresh(); the value in memory keeps serving
            future.set_exception(exc)
        finally:
            with self._lock:
                self._inflight = None

    def refresh(self) -> dict:
        """Fetch now, on this thread (warm-up, the background refresh); a failure is logged and re-raised."""
        try:
            value = self._fetch()
            if self.parse_ahead is not None:
                self.parse_ahead(value)
        except Exception as exc:
            self._note_failure(exc)
            raise
        with self._lock:
            self._value, self._fetched_at = value, time.monotonic()
            self._failures, self._retry_at = 0, 0.0
        return value

    def _note_failure(self, exc: Exception) -> None:
        from switchboard.observability import logger

        with self._lock:
            self._failures += 1
            delay = min(self.retry_base_s * 2 ** min(self._failures - 1, 30), self.retry_max_s)
            self._retry_at = time.monotonic() + delay
        serving = "serving the last good value" if self._value is not None else "nothing to serve yet"
        logger.warning(f"secret fetch failed; {serving}", extra={
            "secret": self.label, "error_type": type(exc).__name__, "failures": self._failures,
            "retry_in_s": delay})

    async def wait_until_read(self, timeout_s: float) -> None:
        """For a secret never read: wait for its fetch, off the event loop, at most `timeout_s`. Never raises."""
        if self._value is not None:
            return
        future = self.refresh_in_background()
        if future is None:
            return  # backing off after a failure: fail fast rather than queue every request behind it
        waiting = asyncio.wrap_future(future)
        waiting.add_done_callback(_retrieve)
        done, _ = await asyncio.wait({waiting}, timeout=timeout_s)
        if not done:
            from switchboard.observability import logger

            logger.warning("secret fetch slow; carrying on without it", extra={
                "secret": self.label, "timeout_s": timeout_s})


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # already logged; retrieved so asyncio does not report it again


def secrets_fetcher(settings: Settings, name: str) -> Callable[[], dict]:
    """Read one JSON secret through Powertools Parameters; a secret with no value yet reads as {}."""

    def fetch() -> dict:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        from switchboard.aws import client

        provider = SecretsProvider(boto3_client=client("secretsmanager", settings))
        try:
            value = provider.get(name, transform="json", force_fetch=True)
        except GetParameterError as exc:
            if "ResourceNotFoundException" in str(exc) or "AWSCURRENT" in str(exc):
                return {}  # created by the stack, no value stored yet
            raise
        return value if isinstance(value, dict) else {}

    return fetch


class Secrets:
    """The gateway's view of both secrets, with environment overrides applied."""

    def __init__(self, settings: Settings, provider_keys: CachedSecret | None,
                 gateway_keys: CachedSecret | None, fetch_timeout_s: float = DEFAULT_FETCH_TIMEOUT_S) -> None:
        self.settings = settings
        self.provider_secret = provider_keys
        self.gateway_secret = gateway_keys
        self.fetch_timeout_s = fetch_timeout_s
        self._parsed: tuple[dict, list[StoredKey]] | None = None  # the gateway keys' last value, and its keys
        if gateway_keys is not None:
            gateway_keys.parse_ahead = self._gateway_keys

    @classmethod
    def from_settings(cls, settings: Settings) -> Secrets:
        def cached(name: str | None, label: str) -> CachedSecret | None:
            if not name:
                return None
            return CachedSecret(secrets_fetcher(settings, name), settings.secrets_max_age_s, label=label)

        return cls(settings, cached(settings.provider_keys_secret, "provider keys"),
                   cached(settings.gateway_keys_secret, "gateway keys"), settings.secrets_fetch_timeout_s)

    def provider_key(self, provider: str) -> str | None:
        """From the environment, else the secret in memory; 503 when the secret was never read."""
        config = self.settings.provider(provider)
        if config and config.api_key:
            return config.api_key
        if self.provider_secret is None:
            return None
        value = _read(self.provider_secret).get(provider)
        return value if isinstance(value, str) and value else None

    def stored_gateway_keys(self) -> list[StoredKey]:
        if self.gateway_secret is None:
            return []
        return self._gateway_keys(_read(self.gateway_secret))

    def _gateway_keys(self, value: dict) -> list[StoredKey]:
        """The keys in one fetched value, parsed once, on the fetch's thread (`parse_ahead`), not per request."""
        parsed = self._parsed
        if parsed is None or parsed[0] is not value:
            from switchboard.keys.records import parse_gateway_keys

            parsed = self._parsed = (value, parse_gateway_keys(value))
        return parsed[1]

    async def ensure_fresh(self, *, provider_keys: bool = True, gateway_keys: bool = True) -> None:
        """Before a request: wait, bounded, only for a secret never read (normally none). Never raises.

        A caller holding an environment key waits for no gateway keys (`gateway_keys=False`).
        """
        wanted = [secret for secret, needed in ((self.provider_secret, provider_keys),
                                                (self.gateway_secret, gateway_keys)) if needed and secret]
        if wanted:
            await asyncio.gather(*(secret.wait_until_read(self.fetch_timeout_s) for secret in wanted))

    def warm(self) -> None:
        """Fetch both secrets now and wait for them (the start-up thread calls this); failures are logged."""
        for future in [secret.refresh_in_background() for secret in (self.provider_secret, self.gateway_secret)
                       if secret is not None]:
            if future is not None:
                future.exception()  # waits; a failure was logged, and reads retry in the background


def _read(secret: CachedSecret) -> dict:
    try:
        return secret.get()
    except SecretUnavailable:
        raise GatewayError(503, f"The gateway could not read its {secret.label} from Secrets Manager yet; "
                           "retry shortly.", code="secrets_unavailable", headers={"retry-after": "1"}) from None
