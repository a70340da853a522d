"""The call plan: which routes to try in order, and the clocks that decide when to give up on one.

A route is resolved from the model name and the request headers: which provider, which upstream model, which key.
Two ways to name an upstream:
  * `model` as `provider/model` (or a bare name with a well-known prefix), resolved against the
    configured providers;
  * Inference Catalyst's `x-inference-provider-url` (a bare host the caller picks), checked by `egress`.

The clocks' defaults come from settings; SWITCHBOARD_ROUTING (config/routing.py) refines them per task and
defines model aliases; request headers refine them per call: `x-switchboard-fallbacks` (comma-separated
models), `x-switchboard-first-token-timeout-ms`, `x-switchboard-timeout-ms`, `x-switchboard-buffer-after-ms`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from switchboard.config.routing import MAX_FALLBACKS, MAX_TIMEOUT_MS, NOTHING, Knobs, routing_config
from switchboard.config.settings import Settings
from switchboard.core.egress import check_provider_host, parse_provider_url
from switchboard.ledger.pricing import PriceCatalog, configured_catalog
from switchboard.providers.registry import OFFICIAL_HOSTS, PROVIDERS
from switchboard.wire.chat import Route
from switchboard.wire.errors import GatewayError

_OPENAI_BARE = re.compile(r"^(gpt-|chatgpt-|o[1-4]($|-))")
ACCEPTED_FORMS = (
    "use 'provider/model' (for example 'openai/gpt-4.1-mini', 'anthropic/claude-sonnet-4-6', "
    "'groq/llama-3.3-70b-versatile'), or a bare OpenAI or Anthropic name starting with "
    "'gpt-', 'chatgpt-', 'o1'..'o4' or 'claude-'. Providers: " + ", ".join(sorted(PROVIDERS))
)


KeyLookup = Callable[[str], "str | None"]


def resolve(model: object, headers: dict[str, str], settings: Settings, provider_key: KeyLookup) -> Route:
    """Pick the upstream for one request. `headers` has lower-case names."""
    if not isinstance(model, str) or not model.strip():
        raise GatewayError(400, "'model' is required and must be a non-empty string; " + ACCEPTED_FORMS,
                           param="model", code="invalid_model")
    model = model.strip()
    caller_key = headers.get("x-inference-provider-api-key") or None
    provider_url = headers.get("x-inference-provider-url")
    if provider_url:
        return _custom_route(model, provider_url, caller_key, settings, provider_key)

    hint = (headers.get("x-inference-provider") or "").strip().lower()
    provider, upstream_model = _hinted(model, hint) if hint else split_model(model)
    config = settings.provider(provider)
    if config is None or not config.base_url:
        fix = ("set AWS_REGION (or BEDROCK_REGION), or AWS_ENDPOINT_URL_BEDROCK_RUNTIME" if provider == "bedrock"
               else f"set {provider.upper()}_BASE_URL")
        raise GatewayError(400, f"Provider '{provider}' has no base URL configured: {fix}.", param="model",
                           code="provider_not_configured")
    api_key = caller_key or provider_key(provider)
    if config.spec.needs_key and not api_key:
        raise GatewayError(400, f"Provider '{provider}' has no API key configured: set "
                           f"{config.spec.env_prefix}_API_KEY (or store one with 'switchboard providers set "
                           f"{provider}'), or send your own in x-inference-provider-api-key.",
                           param="model", code="provider_not_configured")
    return Route(provider, config.spec.adapter, upstream_model, config.base_url, api_key, model,
                 priced_as=prices(settings).resolve(provider, upstream_model))


def prices(settings: Settings) -> PriceCatalog:
    """The price catalog the settings name (SWITCHBOARD_PRICES, SWITCHBOARD_DEFAULT_PRICE)."""
    return configured_catalog(settings.prices_file, settings.default_price)


def _hinted(model: str, hint: str) -> tuple[str, str]:
    """Inference Catalyst's `x-inference-provider`: the named provider gets the model name as sent (a
    `provider/` prefix naming that same provider is dropped), so 'gpt-4o-mini' or Groq's own
    'openai/gpt-oss-120b' reach the provider the caller chose."""
    if hint not in PROVIDERS:
        raise GatewayError(400, f"x-inference-provider names an unknown provider '{hint[:64]}'. Providers: "
                           + ", ".join(sorted(PROVIDERS)), param="x-inference-provider", code="invalid_provider")
    prefix, slash, rest = model.partition("/")
    return hint, rest if slash and rest and prefix.lower() == hint else model


def split_model(model: str) -> tuple[str, str]:
    """'groq/llama-3.3-70b' -> ('groq', 'llama-3.3-70b'); bare names by well-known prefix."""
    prefix, slash, rest = model.partition("/")
    if slash and prefix.lower() in PROVIDERS:
        if not rest:
            raise GatewayError(400, f"Model '{model}' names no model after the provider; " + ACCEPTED_FORMS,
                               param="model", code="invalid_model")
        return prefix.lower(), rest
    if _OPENAI_BARE.match(model):
        return "openai", model
    if model.startswith("claude-"):
        return "anthropic", model
    raise GatewayError(400, f"Unknown model '{model}': " + ACCEPTED_FORMS, param="model", code="invalid_model")


def _custom_route(model: str, raw_url: str, caller_key: str | None, settings: Settings,
                  provider_key: KeyLookup) -> Route:
    scheme, host, port, prefix = parse_provider_url(raw_url)
    must_verify = check_provider_host(host, port, scheme, settings)
    netloc = f"[{host}]" if ":" in host else host
    if port:
        netloc += f":{port}"
    provider, slash, rest = model.partition("/")
    upstream_model = rest if slash and provider.lower() in PROVIDERS and rest else model
    api_key = caller_key or _configured_key_for(scheme, host, port, settings, provider_key)
    billed_as = OFFICIAL_HOSTS.get(host)
    return Route("custom", "openai_compat", upstream_model, f"{scheme}://{netloc}{prefix}/v1", api_key, model,
                 verify_host=host if must_verify else None, billed_as=billed_as,
                 priced_as=prices(settings).resolve(billed_as or "custom", upstream_model))


def _configured_key_for(scheme: str, host: str, port: int | None, settings: Settings,
                        provider_key: KeyLookup) -> str | None:
    """A caller naming the host of a provider's configured base URL, without a key of its own, uses the
    gateway's key for that provider. Only that host: an operator who pointed OPENAI_BASE_URL at a proxy
    never has the key sent to api.openai.com because a caller named it."""
    default_port = 443 if scheme == "https" else 80
    for config in settings.providers.values():
        if not config.base_url or not config.spec.needs_key:
            continue
        parts = urlsplit(config.base_url)
        if parts.hostname == host and parts.scheme == scheme and (parts.port or default_port) == (port or default_port):
            return provider_key(config.name)
    return None

@dataclass(frozen=True)
class CallPlan:
    routes: list[Route]
    first_token_timeout_s: float | None
    total_timeout_s: float
    buffer_after_s: float | None
    max_retries: int
    retry_max_wait_s: float


def plan(model: str, task_id: str, headers: dict[str, str], settings: Settings, provider_key: KeyLookup) -> CallPlan:
    config = routing_config(settings.routing_config)
    alias = config.aliases.get(model) or NOTHING
    task = config.tasks.get(task_id) or NOTHING
    fallbacks = _fallback_models(headers.get("x-switchboard-fallbacks"), alias, task)
    routes = [resolve(alias.model or model, headers, settings, provider_key)]
    # Caller-named provider URLs and keys belong to the primary route only; fallbacks use the gateway's.
    plain_headers = {k: v for k, v in headers.items() if not k.startswith("x-inference-provider")}
    for fallback in fallbacks:
        route = resolve(fallback, plain_headers, settings, provider_key)
        if route not in routes:
            routes.append(route)

    def knob(header: str, name: str, default: float | None) -> float | None:
        """The header's value, else the task's, else the alias's, else the setting (0 ms: no clock)."""
        value = _header_ms(headers, header)
        if value is None:
            value = getattr(task, name) if getattr(task, name) is not None else getattr(alias, name)
        return default if value is None else (value / 1000 or None)

    return CallPlan(
        routes=routes,
        first_token_timeout_s=knob("x-switchboard-first-token-timeout-ms", "first_token_timeout_ms",
                                   settings.first_token_timeout_s),
        total_timeout_s=knob("x-switchboard-timeout-ms", "total_timeout_ms", settings.total_timeout_s)
        or settings.total_timeout_s,
        buffer_after_s=knob("x-switchboard-buffer-after-ms", "buffer_after_ms", settings.buffer_after_s),
        max_retries=settings.max_retries,
        retry_max_wait_s=settings.retry_max_wait_s,
    )


def _fallback_models(header: str | None, alias: Knobs, task: Knobs) -> list[str]:
    if header is not None:
        models = [m.strip() for m in header.split(",") if m.strip()]
        if len(models) > MAX_FALLBACKS:
            raise GatewayError(400, f"x-switchboard-fallbacks names more than {MAX_FALLBACKS} models.",
                               param="x-switchboard-fallbacks", code="too_many_fallbacks")
        return models
    return list(alias.fallbacks or task.fallbacks)


def _header_ms(headers: dict[str, str], name: str) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    value = raw.strip()
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_TIMEOUT_MS:
        raise GatewayError(400, f"{name} must be a whole number of milliseconds from 0 to {MAX_TIMEOUT_MS}.",
                           param=name, code="invalid_header")
    return int(value)


