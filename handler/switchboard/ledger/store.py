"""Call records and rollups in DynamoDB (the same boto3 code against AWS or the embedded emulation)."""

from __future__ import annotations

import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from switchboard.ledger import schema
from switchboard.ledger.record import CallRecord

MAX_LIMIT = 1000
MAX_DAYS_WITHOUT_TASK = 31  # one query per day: a bounded walk
TABLE_KEYS = frozenset({"pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"})
RECORD_FIELDS = tuple(f.name for f in fields(CallRecord))
# What an item lacking a field held: the store leaves empty lists and maps out, and every record
# written before `api` existed was a Chat Completions call. Any other missing field is unknown: null.
MISSING_MEANS = {"attempts": list, "tool_calls": list, "metadata": dict, "api": lambda: "chat"}


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def day_of(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def to_epoch(value: str | float | None) -> float | None:
    """ISO-8601 (a trailing Z, an offset, or a bare date) or epoch seconds -> epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def public_record(item: dict[str, Any]) -> dict[str, Any]:
    """A stored call as the admin API and CLI show it: every CallRecord field, whatever the item's age,
    then the item's own extras (time, expiry), never the table's keys."""
    shown = {name: item[name] if name in item else MISSING_MEANS.get(name, _none)() for name in RECORD_FIELDS}
    shown.update({k: v for k, v in item.items() if k not in shown and k not in TABLE_KEYS})
    return shown


def _none() -> None:
    return None


class CallStore:
    def __init__(self, dynamodb: Any, table_name: str, retention_days: int = 90) -> None:
        """`dynamodb` is a client, or a function returning one (so boto3 loads only when first used)."""
        self._db = dynamodb
        self.table = table_name
        self.retention_days = retention_days
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="ledger")

    @property
    def db(self) -> Any:
        if callable(self._db) and not hasattr(self._db, "put_item"):
            self._db = self._db()
        return self._db

    def warm(self) -> None:
        """Load boto3's serializers and the client now rather than during the first call."""
        _ = self.db, _serializer()

    # -- writing ---------------------------------------------------------------------------------

    def put(self, record: CallRecord) -> None:
        """The call item and both rollups, written in parallel; raises if any write failed."""
        for future in self._submit(record):
            future.result()

    def submit(self, record: CallRecord) -> tuple[Future, list[Future]]:
        """Start the writes on the store's own threads: (the call item, the rollup updates).

        The call item is the record; the rollups are aggregates kept beside it.
        """
        futures = self._submit(record)
        return futures[0], futures[1:]

    def _submit(self, record: CallRecord) -> list[Future]:
        tasks = {record.task_id, schema.ALL_TASKS}
        return [self._pool.submit(self._put_call, record)] + [
            self._pool.submit(self._add_rollup, record, task) for task in tasks]

    def _put_call(self, record: CallRecord) -> None:
        self.db.put_item(TableName=self.table, Item=self._marshal(self.call_item(record)))

    def call_item(self, record: CallRecord) -> dict[str, Any]:
        when = iso(record.started_at)
        item = {k: v for k, v in record.to_dict().items() if v is not None and v != {} and v != []}
        item.update(pk=schema.task_pk(record.task_id), sk=schema.call_sk(when, record.request_id), time=when,
                    gsi2pk=f"DAY#{day_of(record.started_at)}", gsi2sk=f"{when}#{record.request_id}")
        if record.conversation_id:
            item.update(gsi1pk=f"CONV#{record.conversation_id}", gsi1sk=f"{when}#{record.request_id}")
        if self.retention_days:
            item[schema.TTL_ATTRIBUTE] = int(record.started_at + self.retention_days * 86400)
        return item

    def _add_rollup(self, record: CallRecord, task_id: str) -> None:
        model = f"{record.provider or 'none'}/{record.model or 'none'}"
        day = day_of(record.started_at)
        adds: dict[str, Any] = {
            "calls": 1, "errors": int(record.is_error),
            "prompt_tokens": record.prompt_tokens or 0, "completion_tokens": record.completion_tokens or 0,
            "cached_tokens": record.cached_tokens or 0, "cache_write_tokens": record.cache_write_tokens or 0,
            "reasoning_tokens": record.reasoning_tokens or 0,
        }
        if record.cost_usd is not None:
            adds["cost_usd"] = record.cost_usd
        elif record.status < 400:
            adds["unpriced_calls"] = 1
        if record.ttft_ms is not None:
            adds.update({"ttft_sum_ms": record.ttft_ms, "ttft_count": 1,
                         f"h{schema.bucket_index(record.ttft_ms)}": 1})
        sets = {"task_id": task_id, "day": day, "provider": record.provider or "none",
                "model": record.model or "none"}
        names, values, add_parts, set_parts = {}, {}, [], []
        for i, (name, value) in enumerate(adds.items()):
            names[f"#a{i}"], values[f":a{i}"] = name, value
            add_parts.append(f"#a{i} :a{i}")
        for i, (name, value) in enumerate(sets.items()):
            names[f"#s{i}"], values[f":s{i}"] = name, value
            set_parts.append(f"#s{i} = :s{i}")
        self.db.update_item(
            TableName=self.table,
            Key=self._marshal({"pk": schema.rollup_pk(task_id), "sk": f"DAY#{day}#{model}"}),
            UpdateExpression="ADD " + ", ".join(add_parts) + " SET " + ", ".join(set_parts),
            ExpressionAttributeNames=names, ExpressionAttributeValues=self._marshal(values))

    # -- reading ---------------------------------------------------------------------------------

    def calls(self, task_id: str | None = None, conversation_id: str | None = None, since: float | None = None,
              until: float | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Call records, newest first."""
        limit = max(1, min(limit, MAX_LIMIT))
        low = iso(since) if since is not None else "0"
        high = iso(until) if until is not None else "~"
        if conversation_id:
            items = self._query(limit, IndexName=schema.CONVERSATION_INDEX,
                                KeyConditionExpression="gsi1pk = :p AND gsi1sk BETWEEN :lo AND :hi",
                                ExpressionAttributeValues=self._marshal(
                                    {":p": f"CONV#{conversation_id}", ":lo": low, ":hi": high + "~"}))
            if task_id:
                items = [i for i in items if i.get("task_id") == task_id]
            return items
        if task_id:
            return self._query(limit, KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
                               ExpressionAttributeValues=self._marshal({
                                   ":p": schema.task_pk(task_id), ":lo": f"CALL#{low}", ":hi": f"CALL#{high}~"}))
        return self._calls_by_day(since, until, limit)

    def _calls_by_day(self, since: float | None, until: float | None, limit: int) -> list[dict[str, Any]]:
        last = until if until is not None else time.time()
        first = since if since is not None else last - 6 * 86400  # a week back unless told otherwise
        if last - first > MAX_DAYS_WITHOUT_TASK * 86400:
            raise ValueError(f"without a task or conversation, a range of at most {MAX_DAYS_WITHOUT_TASK} days")
        low, high = (iso(since) if since is not None else "0"), (iso(until) if until is not None else "~")
        found: list[dict[str, Any]] = []
        day = datetime.fromtimestamp(last, UTC).date()
        while len(found) < limit and day >= datetime.fromtimestamp(first, UTC).date():
            found += self._query(limit - len(found), IndexName=schema.DAY_INDEX,
                                 KeyConditionExpression="gsi2pk = :p AND gsi2sk BETWEEN :lo AND :hi",
                                 ExpressionAttributeValues=self._marshal(
                                     {":p": f"DAY#{day.isoformat()}", ":lo": low, ":hi": high + "~"}))
            day -= timedelta(days=1)
        return found

    def call(self, request_id: str) -> dict[str, Any] | None:
        items = self._query(1, IndexName=schema.REQUEST_INDEX, KeyConditionExpression="request_id = :r",
                            ExpressionAttributeValues=self._marshal({":r": request_id}))
        return items[0] if items else None

    def rollups(self, task_id: str | None, since: float | None, until: float | None) -> list[dict[str, Any]]:
        low = day_of(since) if since is not None else "0000"
        high = day_of(until) if until is not None else "9999"
        return self._query(MAX_LIMIT * 10, KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
                           ExpressionAttributeValues=self._marshal({
                               ":p": schema.rollup_pk(task_id or schema.ALL_TASKS), ":lo": f"DAY#{low}",
                               ":hi": f"DAY#{high}#~"}))

    def _query(self, limit: int, **query: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while len(items) < limit:
            page = self.db.query(TableName=self.table, ScanIndexForward=False, Limit=limit - len(items), **query)
            items += [self._unmarshal(item) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                break
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items

    # -- conversion ------------------------------------------------------------------------------

    def _marshal(self, values: dict[str, Any]) -> dict[str, Any]:
        serialize = _serializer().serialize
        plain = json.loads(json.dumps(values, default=str), parse_float=_dynamo_number, parse_int=_dynamo_number,
                           parse_constant=lambda _: None)
        return {k: serialize(v) for k, v in plain.items()}

    def _unmarshal(self, item: dict[str, Any]) -> dict[str, Any]:
        deserialize = _deserializer().deserialize
        return {k: _plain(deserialize(v)) for k, v in item.items()}


def _dynamo_number(text: str) -> Decimal | None:
    """A number as DynamoDB holds it (38 digits, exponents -130..125); None (stored as NULL) when it cannot.

    Such a number only comes from a misbehaving upstream; one bad field must not cost the whole item.
    """
    try:
        return _dynamodb_context().create_decimal(text)
    except ArithmeticError:  # decimal's Inexact, Rounded, Overflow, Underflow
        return None


@lru_cache(maxsize=1)
def _dynamodb_context() -> Any:
    from boto3.dynamodb.types import DYNAMODB_CONTEXT

    return DYNAMODB_CONTEXT


@lru_cache(maxsize=1)
def _serializer() -> Any:
    from boto3.dynamodb.types import TypeSerializer

    return TypeSerializer()


@lru_cache(maxsize=1)
def _deserializer() -> Any:
    from boto3.dynamodb.types import TypeDeserializer

    return TypeDeserializer()


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_plain(v) for v in value]
    return value
