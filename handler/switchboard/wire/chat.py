"""Chat shapes every layer shares: the route a call takes, the chunks an upstream yields, its failures.

The one definition of a visible delta lives here: what commits a call to its route and proves the upstream alive."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from switchboard.wire.errors import GatewayError


@dataclass(frozen=True)
class Route:
    provider: str  # a name from PROVIDERS, or "custom" for x-inference-provider-url
    adapter: str
    model: str  # what the upstream is asked for (provider prefix stripped)
    base_url: str
    api_key: str | None = field(repr=False)
    requested_model: str = ""
    verify_host: str | None = None  # a caller-named host to resolve and check before connecting
    billed_as: str | None = None  # a custom route to a provider's official host is priced as that provider
    priced_as: str | None = None  # the price catalog entry that prices it (set when the call is planned)

    @property
    def price_provider(self) -> str:
        return self.billed_as or self.provider

    @property
    def port(self) -> int:
        parts = urlsplit(self.base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)


Chunk = tuple[bytes, dict]


Batch = list[Chunk]


class UpstreamError(Exception):
    """The upstream failed. `status` is what the client gets: the upstream's own 4xx, else 502/504."""

    def __init__(self, status: int, message: str, *, kind: str, upstream_status: int | None = None,
                 retry_after: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind  # http_error | connect_error | timeout | stream_error | ...
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        self.usage: dict | None = None  # what the failing upstream still reported, for the record

    def to_gateway_error(self) -> GatewayError:
        headers = {"retry-after": self.retry_after} if self.retry_after else None
        code = f"upstream_{self.upstream_status}" if self.upstream_status else self.kind
        return GatewayError(self.status, self.message, code=code, headers=headers)


VISIBLE_DELTA_FIELDS = ("content", "tool_calls", "refusal", "reasoning_content", "reasoning", "thinking")


def is_visible(chunk: dict) -> bool:
    """Anything the client will see, or a finish: what commits the call to its route (and proves it alive)."""
    choices = chunk.get("choices")
    if not choices:
        return False
    choice = choices[0]
    if choice.get("finish_reason"):
        return True
    delta = choice.get("delta")
    return bool(delta) and any(delta.get(name) for name in VISIBLE_DELTA_FIELDS)


def chat_usage(uncached_input: int, output: int, cache_read: int, cache_write: int) -> dict:
    """OpenAI's usage from a provider that counts cache reads and writes apart from the rest of the input:
    OpenAI's prompt_tokens includes both (the ledger and the price catalog follow that convention)."""
    prompt = uncached_input + cache_read + cache_write
    return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output,
            "prompt_tokens_details": {"cached_tokens": cache_read, "cache_creation_tokens": cache_write}}


def token_count(usage: dict, name: str) -> int:
    """A count from an upstream's usage object; anything but a whole number from 0 up reads as 0."""
    value = usage.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
