"""Per-gateway-key limits: requests per minute and concurrent streams.

Each process enforces the limits at once from its own counters; with a table, DynamoDB counters
(conditional atomic ADDs) enforce them across Lambda instances. That check runs alongside the
upstream request instead of before it: the relay waits for its verdict only before sending the first
byte, by which time it has long arrived, so it costs the first token nothing. Over a limit: 429 with
`retry-after`. Limits come from settings (`SWITCHBOARD_RATE_LIMIT_RPM`, `..._CONCURRENT`; 0 is off)
or per key from the gateway keys secret (`"rpm"`, `"concurrent"`).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from switchboard.wire.errors import GatewayError

COUNTER_TTL_S = 180
STALE_AFTER_S = 900  # longer than any call: the function's timeout is 300 s


@dataclass(frozen=True)
class Limits:
    rpm: int = 0
    concurrent: int = 0

    @property
    def active(self) -> bool:
        return bool(self.rpm or self.concurrent)


def too_many(message: str, retry_after: int) -> GatewayError:
    return GatewayError(429, message, code="rate_limit_exceeded", headers={"retry-after": str(max(retry_after, 1))})


class RateLimiter:
    def __init__(self, dynamodb: Callable[[], Any] | None = None, table: str | None = None) -> None:
        self._dynamodb = dynamodb
        self.table = table
        self.minute_counts: dict[tuple[str, int], int] = defaultdict(int)
        self.active: dict[str, int] = defaultdict(int)
        self.held: dict[str, tuple[str, bool]] = {}  # request id -> (key name, holds a shared slot)

    def admit(self, request_id: str, key_name: str, limits: Limits) -> asyncio.Task | None:
        """Check this process's counters now (raises 429); returns the shared check still running, if any."""
        if not limits.active:
            return None
        minute = int(time.time() // 60)
        if limits.rpm and self.minute_counts[(key_name, minute)] >= limits.rpm:
            raise too_many(f"Rate limit reached: {limits.rpm} requests per minute for this key.",
                           60 - int(time.time()) % 60)
        if limits.concurrent and self.active[key_name] >= limits.concurrent:
            raise too_many(f"Rate limit reached: {limits.concurrent} concurrent streams for this key.", 1)
        self._forget_old_minutes(minute)
        self.minute_counts[(key_name, minute)] += 1
        self.active[key_name] += 1
        self.held[request_id] = (key_name, False)
        if self._dynamodb is None or self.table is None:
            return None
        return asyncio.ensure_future(self._admit_shared(request_id, key_name, limits, minute))

    async def release(self, request_id: str) -> None:
        """At the end of the call (before the response closes): free the concurrent-stream slot."""
        held = self.held.pop(request_id, None)
        if held is None:
            return
        key_name, shared = held
        self.active[key_name] -= 1
        if shared:
            try:
                await asyncio.to_thread(self._add_active, key_name, -1, None)
            except Exception as exc:  # a leaked slot is reset once the counter goes quiet (see _add_active)
                from switchboard.observability import logger

                logger.warning("rate limit slot not released", extra={"error_type": type(exc).__name__,
                                                                      "request_id": request_id})

    async def _admit_shared(self, request_id: str, key_name: str, limits: Limits, minute: int) -> None:
        try:
            await asyncio.to_thread(self._check_shared, request_id, key_name, limits, minute)
        except GatewayError:
            raise
        except Exception as exc:  # DynamoDB unreachable: fail open on the shared limit; local limits held
            from switchboard.observability import logger

            logger.warning("shared rate limit check failed", extra={"error_type": type(exc).__name__,
                                                                    "request_id": request_id})

    def _check_shared(self, request_id: str, key_name: str, limits: Limits, minute: int) -> None:
        db = self._db()
        conditional = db.exceptions.ConditionalCheckFailedException
        if limits.rpm:
            try:
                db.update_item(
                    TableName=self.table, Key={"pk": {"S": f"LIMIT#{key_name}"}, "sk": {"S": f"MINUTE#{minute}"}},
                    UpdateExpression="ADD #n :one SET expires_at = :ttl",
                    ConditionExpression="attribute_not_exists(#n) OR #n < :limit",
                    ExpressionAttributeNames={"#n": "requests"},
                    ExpressionAttributeValues={":one": {"N": "1"}, ":limit": {"N": str(limits.rpm)},
                                               ":ttl": {"N": str(int(time.time()) + COUNTER_TTL_S)}})
            except conditional:
                raise too_many(f"Rate limit reached: {limits.rpm} requests per minute for this key.",
                               60 - int(time.time()) % 60) from None
        if limits.concurrent:
            try:
                self._add_active(key_name, 1, limits.concurrent)
            except conditional:
                raise too_many(f"Rate limit reached: {limits.concurrent} concurrent streams for this key.",
                               1) from None
            if request_id in self.held:
                self.held[request_id] = (key_name, True)
            else:  # the call already ended: give the slot straight back
                self._add_active(key_name, -1, None)

    def _add_active(self, key_name: str, delta: int, limit: int | None) -> None:
        """ADD to the key's active-stream counter, conditionally when taking a slot.

        A process killed mid-call (a Lambda timeout) never gives its slot back. Every take and release
        stamps the counter, so one untouched for STALE_AFTER_S while showing streams has leaked: the
        next take then resets it instead of being refused forever.
        """
        db = self._db()
        key = {"pk": {"S": f"LIMIT#{key_name}"}, "sk": {"S": "ACTIVE"}}
        now = int(time.time())
        values = {":delta": {"N": str(delta)}, ":now": {"N": str(now)}}
        options: dict[str, Any] = {}
        if limit is not None:
            options["ConditionExpression"] = "attribute_not_exists(#a) OR #a < :limit"
            values[":limit"] = {"N": str(limit)}
        try:
            db.update_item(TableName=self.table, Key=key, UpdateExpression="ADD #a :delta SET updated_at = :now",
                           ExpressionAttributeNames={"#a": "active"}, ExpressionAttributeValues=values, **options)
        except db.exceptions.ConditionalCheckFailedException:
            db.update_item(TableName=self.table, Key=key, UpdateExpression="SET #a = :one, updated_at = :now",
                           ConditionExpression="updated_at < :stale", ExpressionAttributeNames={"#a": "active"},
                           ExpressionAttributeValues={":one": {"N": "1"}, ":now": {"N": str(now)},
                                                      ":stale": {"N": str(now - STALE_AFTER_S)}})

    def _db(self) -> Any:
        """The shared counters' DynamoDB client (asked for only when there is a table)."""
        assert self._dynamodb is not None
        return self._dynamodb()

    def _forget_old_minutes(self, minute: int) -> None:
        if len(self.minute_counts) > 1000:
            for key in [k for k in self.minute_counts if k[1] < minute]:
                del self.minute_counts[key]
