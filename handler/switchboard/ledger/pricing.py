"""The price catalog: USD per million input, output, cache-read and cache-write tokens, per `provider/model`.

Shipped as a dated data file (prices.json beside this module); `SWITCHBOARD_PRICES` names a file
whose entries override and extend it. A model is found by its own name, else as the model it is a
snapshot of: OpenAI's dated names (`gpt-4.1-mini-2025-04-14`), Anthropic's (`claude-sonnet-4-5-20250929`)
and Bedrock's versions, profiles and ARNs. `SWITCHBOARD_DEFAULT_PRICE` ("3,15": input and output USD per
million tokens) prices whatever is still unknown, marked as an estimate. Without it an unknown model costs
`None`, never 0: a report that says a call was free when it was merely unpriced would mislead whoever pays
the bill (and a call under a budget is refused instead, see budgets.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

BUILTIN = Path(__file__).with_name("prices.json")
# The simulator and local models run on hardware the operator already pays for.
FREE_PROVIDERS = frozenset({"simulator", "local"})
DEFAULT_KEY = "default"  # `priced_as` of a call priced by SWITCHBOARD_DEFAULT_PRICE
_DATED = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")  # OpenAI's -2025-04-14, Anthropic's -20250929
_BEDROCK_VERSION = re.compile(r"(-\d{8})?(-v\d+(:\d+)?)?$")  # ...-20250929-v1:0, ...-v1, ...-v2:0


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None


class PriceCatalog:
    def __init__(self, prices: dict[str, Price], as_of: str | None = None, default: Price | None = None) -> None:
        self.prices = prices
        self.as_of = as_of
        self.default = default  # SWITCHBOARD_DEFAULT_PRICE: what an unknown model costs, as an estimate
        self._bedrock_bases = {_bedrock_family(name[len("bedrock/"):]): name for name in prices
                               if name.startswith("bedrock/")}
        self._resolved: dict[tuple[str, str], str | None] = {}

    @classmethod
    def load(cls, override_file: str | None = None, default: Price | None = None) -> PriceCatalog:
        data = json.loads(BUILTIN.read_text())
        prices = _parse(data.get("models", {}), str(BUILTIN))
        as_of = data.get("as_of")
        if override_file:
            extra = json.loads(Path(override_file).read_text())
            models = extra.get("models", extra) if isinstance(extra, dict) else {}
            prices.update(_parse(models, override_file))
            as_of = extra.get("as_of", as_of) if isinstance(extra, dict) else as_of
        return cls(prices, as_of, default)

    def resolve(self, provider: str | None, model: str | None) -> str | None:
        """The catalog entry that prices `provider/model` ("openai/gpt-4.1-mini" for a dated snapshot of it,
        DEFAULT_KEY when only the operator's default does), or None: unpriced. Cached: the hot path asks."""
        if not provider or not model:
            return None
        cached = self._resolved.get((provider, model), _MISSING)
        if cached is not _MISSING:
            return cached  # type: ignore[return-value]
        key = self._find(provider, model)
        if key is None and self.default is not None:
            key = DEFAULT_KEY
        if len(self._resolved) > 10_000:
            self._resolved.clear()
        self._resolved[(provider, model)] = key
        return key

    def _find(self, provider: str, model: str) -> str | None:
        if provider in FREE_PROVIDERS:
            return f"{provider}/{model}"
        key = f"{provider}/{model}"
        if key in self.prices:
            return key
        if provider == "bedrock":
            base = bedrock_base_model(model)
            if f"bedrock/{base}" in self.prices:
                return f"bedrock/{base}"
            return self._bedrock_bases.get(_bedrock_family(base))
        undated = _DATED.sub("", model)
        return f"{provider}/{undated}" if undated != model and f"{provider}/{undated}" in self.prices else None

    def by_key(self, key: str | None) -> Price | None:
        """The price a `resolve` answer names."""
        if key is None:
            return None
        if key == DEFAULT_KEY:
            return self.default
        if key.partition("/")[0] in FREE_PROVIDERS:
            return FREE
        return self.prices.get(key)

    def price(self, provider: str | None, model: str | None) -> Price | None:
        return self.by_key(self.resolve(provider, model))

    def cost(self, provider: str | None, model: str | None, prompt_tokens: int | None,
             completion_tokens: int | None, cached_tokens: int | None = None, *,
             cache_write_tokens: int | None = None, total_tokens: int | None = None) -> float | None:
        """USD for one call; None when the model has no price or the upstream reported no usage."""
        return cost_at(self.price(provider, model), prompt_tokens, completion_tokens, cached_tokens,
                       cache_write_tokens=cache_write_tokens, total_tokens=total_tokens)

    def models(self, provider: str) -> list[str]:
        prefix = provider + "/"
        return sorted(name[len(prefix):] for name in self.prices if name.startswith(prefix))


def cost_at(price: Price | None, prompt_tokens: int | None, completion_tokens: int | None,
            cached_tokens: int | None = None, *, cache_write_tokens: int | None = None,
            total_tokens: int | None = None) -> float | None:
    """USD for one call at `price`; None without a price or without usage.

    `prompt_tokens` includes cached and cache-write tokens (OpenAI's convention, which the
    Anthropic adapter follows), so both are taken out of the full-price input and billed at their
    own rates. Tokens a provider counts only in `total_tokens` (xAI's reasoning) are output too.
    """
    if price is None or prompt_tokens is None or completion_tokens is None:
        return None
    cached = min(cached_tokens or 0, prompt_tokens)
    cache_write = min(cache_write_tokens or 0, prompt_tokens - cached)
    unreported_output = max(0, (total_tokens or 0) - prompt_tokens - completion_tokens)
    usd = ((prompt_tokens - cached - cache_write) * price.input + cached * _or(price.cached_input, price.input)
           + cache_write * _or(price.cache_write, price.input)
           + (completion_tokens + unreported_output) * price.output)
    return round(usd / 1_000_000, 10)


FREE = Price(0.0, 0.0, 0.0)
_MISSING = object()
_PROFILE_PREFIX = re.compile(r"^(us|eu|apac|global|au|jp|ca|us-gov)\.")


def bedrock_base_model(model: str) -> str:
    """A cross-region inference profile ('us.anthropic.claude-…') or its ARN, as the model it serves."""
    if model.startswith("arn:"):
        model = model.rsplit("/", 1)[-1]
    return _PROFILE_PREFIX.sub("", model)


def _bedrock_family(model: str) -> str:
    """A Bedrock model id without its date and version: another version of it is priced as the one listed."""
    return _BEDROCK_VERSION.sub("", model)


def _parse(models: dict, source: str) -> dict[str, Price]:
    prices = {}
    for name, entry in models.items():
        try:
            prices[name] = Price(float(entry["input"]), float(entry["output"]),
                                 _optional(entry.get("cached_input")), _optional(entry.get("cache_write")))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{source}: price for '{name}' needs numeric 'input' and 'output'") from None
    return prices


def _or(rate: float | None, fallback: float) -> float:
    return fallback if rate is None else rate


def _optional(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


@lru_cache(maxsize=4)
def catalog(override_file: str | None = None, default: Price | None = None) -> PriceCatalog:
    return PriceCatalog.load(override_file, default)


def configured_catalog(prices_file: str | None, default_price: tuple[float, float] | None) -> PriceCatalog:
    """The catalog SWITCHBOARD_PRICES and SWITCHBOARD_DEFAULT_PRICE describe (one per process)."""
    return catalog(prices_file, None if default_price is None else Price(*default_price))
