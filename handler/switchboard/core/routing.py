"""Model name and request headers -> Route: which provider, which upstream model, which key.

Two ways to name an upstream:
  * `model` as `provider/model` (or a bare name with a well-known prefix), resolved against the
    configured providers;
  * Inference Catalyst's `x-inference-provider-url` (a bare host the caller picks), accepted only
    for allowlisted hosts and never for loopback, private or link-local addresses unless the
    operator allowlisted them explicitly.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from switchboard.config.settings import Settings
from switchboard.ledger.pricing import PriceCatalog, configured_catalog
from switchboard.providers import OFFICIAL_HOSTS, PROVIDERS
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


def parse_provider_url(raw: str) -> tuple[str, str, int | None, str]:
    """'api.groq.com' | 'https://host:port/prefix' -> (scheme, host, port, path prefix)."""
    value = raw.strip()
    if len(value) > 512 or any(ch in value for ch in " \t\r\n\\@?#"):
        raise _bad_url("it contains characters a host name cannot")
    if "://" not in value:
        value = "https://" + value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise _bad_url("it is not a host name") from None
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise _bad_url("only https:// hosts are accepted")
    prefix = parts.path.rstrip("/")
    if prefix.endswith("/v1/chat/completions"):
        prefix = prefix[: -len("/v1/chat/completions")]
    elif prefix.endswith("/v1"):
        prefix = prefix[:-3]
    return parts.scheme, parts.hostname.lower().rstrip("."), port, prefix


def check_provider_host(host: str, port: int | None, scheme: str, settings: Settings) -> bool:
    """Refuse hosts off the allowlist; True when the host must still be resolved and checked."""
    explicitly_allowed = host in settings.allowed_provider_hosts or (
        port is not None and f"{host}:{port}" in settings.allowed_provider_hosts
    )
    if explicitly_allowed:
        return False
    if is_internal_address(host):
        raise GatewayError(400, f"x-inference-provider-url points at a loopback, private or link-local "
                           f"address ({host}); refused.", param="x-inference-provider-url",
                           code="provider_url_refused")
    if host not in OFFICIAL_HOSTS and not _wildcard_allowed(host, settings.allowed_provider_hosts):
        raise GatewayError(400, f"x-inference-provider-url host '{host}' is not on the gateway's allowlist "
                           "(the providers' official hosts plus SWITCHBOARD_ALLOWED_PROVIDER_HOSTS).",
                           param="x-inference-provider-url", code="provider_url_refused")
    if scheme != "https":
        raise _bad_url("only https:// is accepted for this host")
    return True


def _wildcard_allowed(host: str, allowed: frozenset[str]) -> bool:
    """`*.example.com` allows any subdomain of example.com (resolved and checked like official hosts)."""
    return any(entry.startswith("*.") and host.endswith(entry[1:]) for entry in allowed)


async def verify_resolved(host: str, resolve_addresses) -> None:
    """Refuse a host whose DNS answer includes a loopback, private, link-local or metadata address.

    Names on the allowlist are checked too, unless listed exactly: a public name can be pointed at
    169.254.169.254 by whoever controls its DNS.
    """
    try:
        addresses = await resolve_addresses(host)
    except OSError:
        raise GatewayError(502, f"x-inference-provider-url host '{host}' does not resolve.",
                           code="connect_error") from None
    for address in addresses:
        if is_internal_address(address):
            raise GatewayError(400, f"x-inference-provider-url host '{host}' resolves to an internal address; "
                               "refused.", param="x-inference-provider-url", code="provider_url_refused")


def is_internal_address(host: str) -> bool:
    """Loopback, private, link-local, metadata or any other non-global address (or a localhost name)."""
    if host in {"localhost", "localhost.localdomain"} or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not address.is_global


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


def _bad_url(why: str) -> GatewayError:
    return GatewayError(400, f"x-inference-provider-url is not usable: {why}.",
                        param="x-inference-provider-url", code="provider_url_refused")
