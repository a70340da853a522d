"""The price catalog: USD per million input, output, cache-read and cache-write tokens, per `provider/model`.

Shipped as a dated data file (prices.json beside this module); `SWITCHBOARD_PRICES` names a file
whose entries override and extend it. An unknown model costs `None`, never 0: a report that says a
call was free when it was merely unpriced would mislead whoever pays the bill.
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


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None


class PriceCatalog:
    def __init__(self, prices: dict[str, Price], as_of: str | None = None) -> None:
        self.prices = prices
        self.as_of = as_of

    @classmethod
    def load(cls, override_file: str | None = None) -> PriceCatalog:
        data = json.loads(BUILTIN.read_text())
        prices = _parse(data.get("models", {}), str(BUILTIN))
        as_of = data.get("as_of")
        if override_file:
            extra = json.loads(Path(override_file).read_text())
            models = extra.get("models", extra) if isinstance(extra, dict) else {}
            prices.update(_parse(models, override_file))
            as_of = extra.get("as_of", as_of) if isinstance(extra, dict) else as_of
        return cls(prices, as_of)

    def price(self, provider: str | None, model: str | None) -> Price | None:
        if not provider or not model:
            return None
        if provider in FREE_PROVIDERS:
            return Price(0.0, 0.0, 0.0)
        price = self.prices.get(f"{provider}/{model}")
        if price is None and provider == "bedrock":
            price = self.prices.get(f"bedrock/{bedrock_base_model(model)}")
        return price

    def cost(self, provider: str | None, model: str | None, prompt_tokens: int | None,
             completion_tokens: int | None, cached_tokens: int | None = None, *,
             cache_write_tokens: int | None = None, total_tokens: int | None = None) -> float | None:
        """USD for one call; None when the model has no price or the upstream reported no usage.

        `prompt_tokens` includes cached and cache-write tokens (OpenAI's convention, which the
        Anthropic adapter follows), so both are taken out of the full-price input and billed at their
        own rates. Tokens a provider counts only in `total_tokens` (xAI's reasoning) are output too.
        """
        price = self.price(provider, model)
        if price is None or prompt_tokens is None or completion_tokens is None:
            return None
        cached = min(cached_tokens or 0, prompt_tokens)
        cache_write = min(cache_write_tokens or 0, prompt_tokens - cached)
        unreported_output = max(0, (total_tokens or 0) - prompt_tokens - completion_tokens)
        usd = ((prompt_tokens - cached - cache_write) * price.input + cached * _or(price.cached_input, price.input)
               + cache_write * _or(price.cache_write, price.input)
               + (completion_tokens + unreported_output) * price.output)
        return round(usd / 1_000_000, 10)

    def models(self, provider: str) -> list[str]:
        prefix = provider + "/"
        return sorted(name[len(prefix):] for name in self.prices if name.startswith(prefix))


_PROFILE_PREFIX = re.compile(r"^(us|eu|apac|global|au|jp|ca|us-gov)\.")


def bedrock_base_model(model: str) -> str:
    """A cross-region inference profile ('us.anthropic.claude-…') or its ARN, as the model it serves."""
    if model.startswith("arn:"):
        model = model.rsplit("/", 1)[-1]
    return _PROFILE_PREFIX.sub("", model)


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
def catalog(override_file: str | None = None) -> PriceCatalog:
    return PriceCatalog.load(override_file)
