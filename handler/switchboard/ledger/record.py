"""CallRecord: everything the ledger keeps about one request, and the clock that fills it in.

Never a key, never message contents unless trace capture is switched on.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

DISCONNECTED = "client_disconnected"
UNAUTHENTICATED_TASK = "unauthenticated"  # the task of every record whose caller had no valid gateway key


@dataclass
class CallRecord:
    request_id: str = field(default_factory=lambda: "req_" + uuid.uuid4().hex)
    started_at: float = field(default_factory=time.time)  # epoch seconds
    key_name: str | None = None
    task_id: str = "default"
    environment: str | None = None
    provider: str | None = None
    model: str | None = None  # upstream model
    requested_model: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    stream: bool = False
    status: int = 200
    outcome: str = "pending"  # finish_reason, an error type, or client_disconnected
    error: str | None = None
    api: str = "chat"  # the client-facing API: "chat" (Chat Completions), later "responses"
    prompt_tokens: int | None = None  # includes cached and cache-write tokens (OpenAI's convention)
    completion_tokens: int | None = None
    total_tokens: int | None = None  # as the upstream reported it; above prompt + completion: unbilled reasoning
    cached_tokens: int | None = None  # cache reads
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    usage_estimated: bool = False  # no usage from the upstream: completion tokens counted from deltas
    cost_usd: float | None = None
    priced: bool = False
    priced_as: str | None = None  # the price catalog entry that priced the call ("default": SWITCHBOARD_DEFAULT_PRICE)
    cost_estimated: bool = False  # priced by the operator's default price, not the model's own
    ttft_ms: float | None = None  # first content or tool-call delta
    first_chunk_ms: float | None = None  # first chunk the client sees, reasoning included
    upstream_latency_ms: float | None = None  # the upstream's own figure, where it reports one
    total_ms: float | None = None
    overhead_ms: float | None = None
    tool_calls: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    buffer_words: bool = False
    budget_downgraded: bool = False  # over a budget whose on_exceeded names a model: answered on that model
    prompt_version: str | None = None  # short hash of the instructions and tool definitions (request.py)
    trace: dict[str, Any] | None = None

    @property
    def conversation_id(self) -> str | None:
        return self.metadata.get("conversation-id") or self.metadata.get("conversation_id")

    @property
    def is_error(self) -> bool:
        return self.status >= 400 or self.outcome == DISCONNECTED

    def to_dict(self) -> dict[str, Any]:
        """Every field, by name (the lists and maps themselves, not copies: the record is done by then)."""
        return dict(self.__dict__)

    def to_json(self) -> str:
        """The record as one compact JSON object, encoded once (the log line and the tests read it)."""
        return json.dumps(self.__dict__, separators=(",", ":"), default=str)


class CallClock:
    """Monotonic marks for one call; the record gets milliseconds, rounded to 0.01."""

    __slots__ = ("start", "upstream_sent", "upstream_first", "client_first", "first_chunk", "first_token")

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.upstream_sent: float | None = None
        self.upstream_first: float | None = None  # first chunk from the upstream
        self.client_first: float | None = None  # that chunk handed to the server
        self.first_chunk: float | None = None  # first chunk carrying anything the client sees (reasoning too)
        self.first_token: float | None = None  # first content or tool-call delta handed over

    @staticmethod
    def now() -> float:
        return time.perf_counter()

    def ms_since_start(self, mark: float | None) -> float | None:
        return None if mark is None else round((mark - self.start) * 1000, 2)

    def overhead_ms(self) -> float | None:
        """Time switchboard itself spent before the first byte: routing, plus relaying the first chunk."""
        if self.upstream_sent is None:
            return None
        spent = self.upstream_sent - self.start
        if self.upstream_first is not None and self.client_first is not None:
            spent += max(self.client_first - self.upstream_first, 0.0)
        return round(spent * 1000, 3)
