"""Every setting, read from the environment in one place and validated once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from switchboard.providers.registry import PROVIDERS, ProviderSpec, base_url


class SettingsError(ValueError):
    """A setting has a value switchboard cannot use; the message names it."""


@dataclass(frozen=True)
class ProviderConfig:
    spec: ProviderSpec
    base_url: str | None
    api_key: str | None = field(repr=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def configured(self) -> bool:
        """Usable without a per-request key: it has a base URL and, where one is needed, a key."""
        return bool(self.base_url) and (bool(self.api_key) or not self.spec.needs_key)


@dataclass(frozen=True)
class Settings:
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    admin_keys: tuple[str, ...] = field(default=(), repr=False)
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    allowed_provider_hosts: frozenset[str] = frozenset()
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 30.0
    trust_env: bool = False  # SWITCHBOARD_TRUST_ENV: let the upstream hop use HTTPS_PROXY and friends
    first_token_timeout_s: float | None = 10.0
    total_timeout_s: float = 120.0
    buffer_after_s: float | None = None
    max_retries: int = 1
    retry_max_wait_s: float = 1.0
    routing_config: str | None = None
    rate_limit_rpm: int = 0
    rate_limit_concurrent: int = 0
    max_body_bytes: int = 4 * 1024 * 1024
    capture_traces: bool = False
    trace_max_chars: int = 8000
    prices_file: str | None = None
    default_price: tuple[float, float] | None = None  # SWITCHBOARD_DEFAULT_PRICE: USD per million in, out
    budget_reserve_output_tokens: int = 1024  # a budgeted call's output reserved when it sets no max_tokens
    budget_on_error: str = "open"  # a failed or slow budget check: "open" lets the call go, "closed" refuses
    table_name: str | None = None
    provider_keys_secret: str | None = None
    gateway_keys_secret: str | None = None
    secrets_max_age_s: int = 300
    secrets_fetch_timeout_s: float = 3.0  # longest wait for a secret never read yet (refreshes are background)
    record_retention_days: int = 90
    ledger_write_budget_s: float = 0.5
    aws_endpoint_url: str | None = None
    metrics: bool = False  # EMF to stdout: on under Lambda, or with SWITCHBOARD_METRICS=true
    service_name: str = "switchboard"
    # The variables these settings were read from: each provider family reads its own configuration from
    # them (providers/<family>/config.py), at start-up too.
    family_env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Every setting, checked: a bad value raises SettingsError naming it (SWITCHBOARD_ROUTING included)."""
        env = dict(os.environ if env is None else env)
        settings = cls._read(env)
        if settings.routing_config:
            from switchboard.config.routing import routing_config

            routing_config(settings.routing_config)
        return settings

    @classmethod
    def _read(cls, env: dict[str, str]) -> Settings:
        return cls(
            api_keys=_csv(env.get("SWITCHBOARD_API_KEYS")),
            admin_keys=_csv(env.get("SWITCHBOARD_ADMIN_KEYS")),
            providers={name: _provider(spec, env) for name, spec in PROVIDERS.items()},
            allowed_provider_hosts=frozenset(
                h.lower() for h in _csv(env.get("SWITCHBOARD_ALLOWED_PROVIDER_HOSTS"))
            ),
            connect_timeout_s=_ms(env, "SWITCHBOARD_CONNECT_TIMEOUT_MS", 2000),
            read_timeout_s=_ms(env, "SWITCHBOARD_READ_TIMEOUT_MS", 30000),
            trust_env=_bool(env, "SWITCHBOARD_TRUST_ENV"),
            first_token_timeout_s=_ms(env, "SWITCHBOARD_FIRST_TOKEN_TIMEOUT_MS", 10000) or None,
            total_timeout_s=_ms(env, "SWITCHBOARD_TOTAL_TIMEOUT_MS", 120000),
            buffer_after_s=_ms(env, "SWITCHBOARD_BUFFER_AFTER_MS", 0) or None,
            max_retries=_int(env, "SWITCHBOARD_MAX_RETRIES", 1),
            retry_max_wait_s=_ms(env, "SWITCHBOARD_RETRY_MAX_WAIT_MS", 1000),
            routing_config=env.get("SWITCHBOARD_ROUTING") or None,
            rate_limit_rpm=_int(env, "SWITCHBOARD_RATE_LIMIT_RPM", 0),
            rate_limit_concurrent=_int(env, "SWITCHBOARD_RATE_LIMIT_CONCURRENT", 0),
            max_body_bytes=_int(env, "SWITCHBOARD_MAX_BODY_BYTES", 4 * 1024 * 1024),
            capture_traces=_bool(env, "SWITCHBOARD_CAPTURE_TRACES"),
            trace_max_chars=_int(env, "SWITCHBOARD_TRACE_MAX_CHARS", 8000),
            prices_file=env.get("SWITCHBOARD_PRICES") or None,
            default_price=_price_pair(env.get("SWITCHBOARD_DEFAULT_PRICE")),
            budget_reserve_output_tokens=_int(env, "SWITCHBOARD_BUDGET_RESERVE_OUTPUT_TOKENS", 1024),
            budget_on_error=_choice(env, "SWITCHBOARD_BUDGET_ON_ERROR", ("open", "closed")),
            table_name=env.get("SWITCHBOARD_TABLE") or None,
            provider_keys_secret=env.get("SWITCHBOARD_PROVIDER_KEYS_SECRET") or None,
            gateway_keys_secret=env.get("SWITCHBOARD_GATEWAY_KEYS_SECRET") or None,
            secrets_max_age_s=_int(env, "SWITCHBOARD_SECRETS_MAX_AGE", 300),
            secrets_fetch_timeout_s=_ms(env, "SWITCHBOARD_SECRETS_FETCH_TIMEOUT_MS", 3000),
            record_retention_days=_int(env, "SWITCHBOARD_RECORD_RETENTION_DAYS", 90),
            ledger_write_budget_s=_ms(env, "SWITCHBOARD_LEDGER_WRITE_BUDGET_MS", 500),
            aws_endpoint_url=env.get("SWITCHBOARD_AWS_ENDPOINT_URL") or None,
            metrics=_bool(env, "SWITCHBOARD_METRICS") if "SWITCHBOARD_METRICS" in env
            else bool(env.get("AWS_LAMBDA_FUNCTION_NAME")),
            service_name=env.get("POWERTOOLS_SERVICE_NAME") or "switchboard",
            family_env=MappingProxyType(env),
        )

    def provider(self, name: str) -> ProviderConfig | None:
        return self.providers.get(name)


def _provider(spec: ProviderSpec, env: dict[str, str]) -> ProviderConfig:
    try:
        found = base_url(spec, env)
    except ValueError as exc:  # the family's ConfigError: it names the variable
        raise SettingsError(str(exc)) from None
    base = (found or "").rstrip("/")
    return ProviderConfig(spec=spec, base_url=base or None, api_key=env.get(f"{spec.env_prefix}_API_KEY") or None)


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative, got {raw!r}")
    return value


def _ms(env: dict[str, str], name: str, default_ms: int) -> float:
    return _int(env, name, default_ms) / 1000.0


def _price_pair(text: str | None) -> tuple[float, float] | None:
    """"3,15": input and output USD per million tokens."""
    if text is None or not text.strip():
        return None
    try:
        pair = tuple(float(part) for part in text.split(","))
    except ValueError:
        pair = ()
    if len(pair) != 2 or not all(0 <= n < 1e6 for n in pair):
        raise SettingsError("SWITCHBOARD_DEFAULT_PRICE must be 'input,output' in USD per million tokens, for "
                            f"example '3,15', got {text!r}")
    return pair[0], pair[1]


def _choice(env: dict[str, str], name: str, allowed: tuple[str, ...]) -> str:
    """One of `allowed` (the first is the default)."""
    value = (env.get(name) or "").strip().lower() or allowed[0]
    if value not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {env.get(name)!r}")
    return value


def _bool(env: dict[str, str], name: str) -> bool:
    return (env.get(name) or "").strip().lower() in {"1", "true", "yes", "on"}


def state_dir() -> Path:
    """Where a local `switchboard serve` leaves the address of its embedded AWS emulation."""
    return Path(os.environ.get("SWITCHBOARD_HOME") or Path.home() / ".switchboard")
