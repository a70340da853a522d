"""Call records and rollups in DynamoDB (the same boto3 code against AWS or the embedded emulation)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from switchboard.ledger import schema
from switchboard.ledger.record import UNAUTHENTICATED_TASK, CallRecord

MAX_LIMIT = 1000
MAX_ROLLUP_ITEMS = 50_000  # a day holds one per task, environment and model (or prompt version) seen that day
MAX_DAYS_WITHOUT_TASK = 31  # one query per day: a bounded walk
TABLE_KEYS = frozenset({"pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"})
RECORD_FIELDS = tuple(f.name for f in fields(CallRecord))
# What an item lacking a field held: the store leaves empty lists and maps out, and every record
# written before `api` existed was a Chat Completions call. Any other missing field is unknown: null.
MISSING_MEANS: dict[str, Callable[[], object]] = {"attempts": list, "tool_calls": list, "metadata": dict,
                                                  "api": lambda: "chat"}
# What a usage report reads of each call when it counts the calls themselves.
USAGE_FIELDS = ("started_at", "task_id", "environment", "provider", "model", "status", "outcome", "prompt_tokens",
                "completion_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd",
                "ttft_ms", "prompt_version")
MAX_VERSIONS_REMEMBERED = 10_000  # prompt versions whose first-seen item this process has written


@dataclass(frozen=True)
class RollupUpdate:
    """One aggregate item's update: counters to ADD, labels to SET, and labels set only on its first write."""

    pk: str
    sk: str
    adds: dict[str, Any]
    sets: dict[str, Any]
    set_if_absent: dict[str, Any] = field(default_factory=dict)
    seen: str | None = None  # the prompt version this update records as seen, once it has landed


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
        self._versions_seen: set[str] = set()

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
        """The call item and its rollups, written in parallel; raises if any write failed."""
        for future in self._submit(record):
            future.result()

    def submit(self, record: CallRecord) -> tuple[Future, list[Future]]:
        """Start the writes on the store's own threads: (the call item, the rollup updates).

        The call item is the record; the rollups are aggregates kept beside it.
        """
        futures = self._submit(record)
        return futures[0], futures[1:]

    def _submit(self, record: CallRecord) -> list[Future]:
        if record.task_id == UNAUTHENTICATED_TASK:  # refused before authentication: one write, no rollups
            return [self._pool.submit(self._put_call, record)]
        return [self._pool.submit(self._put_call, record)] + [
            self._pool.submit(self._apply, update) for update in self.rollup_updates(record)]

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

    def rollup_updates(self, record: CallRecord) -> list[RollupUpdate]:
        """Every aggregate one call adds to, kept with atomic ADDs so any number of instances can count:

        * its task's model rollup: ROLLUP#<task>, DAY#<day>#<provider/model>[#ENV#<environment>];
        * the all-tasks model rollup: ROLLUP#*, DAY#<day>#<provider/model>#TASK#<task>[#ENV#<environment>];
        * the all-tasks prompt rollup: ROLLUP#*, DAY#<day>#PROMPT#<version>#TASK#<task>[#ENV#<environment>];
        * the first time this process sees a prompt version, its first-seen item: ROLLUP#*, VERSION#<version>.

        Task and environment are in the all-tasks keys, so one partition answers any grouping or filter.
        """
        day = day_of(record.started_at)
        model = f"{record.provider or 'none'}/{record.model or 'none'}"
        version = record.prompt_version
        counters = _rollup_counters(record)
        labels: dict[str, Any] = {"task_id": record.task_id, "day": day}
        if record.environment is not None:
            labels["environment"] = record.environment
        model_labels = {**labels, "provider": record.provider or "none", "model": record.model or "none"}
        first_seen = {"first_seen": record.started_at}
        everyone = schema.rollup_pk(schema.ALL_TASKS)
        where = _rollup_sk_suffix(record.task_id, record.environment)
        updates = []
        if record.task_id != schema.ALL_TASKS:  # a task literally named "*" has only the all-tasks items
            updates.append(RollupUpdate(schema.rollup_pk(record.task_id), _model_rollup_sk(day, model)
                                        + _rollup_sk_suffix(None, record.environment), counters, model_labels))
        updates.append(RollupUpdate(everyone, _model_rollup_sk(day, model) + where, counters, model_labels))
        updates.append(RollupUpdate(everyone, _prompt_rollup_sk(day, version) + where, counters,
                                    {**labels, "prompt_version": version or "none"}, first_seen))
        if version is not None and version not in self._versions_seen:
            updates.append(RollupUpdate(everyone, _version_sk(version), {}, {"prompt_version": version},
                                        first_seen, seen=version))
        return updates

    def _apply(self, update: RollupUpdate) -> None:
        expression, names, values = _update_expression(update)
        self.db.update_item(TableName=self.table, Key=self._marshal({"pk": update.pk, "sk": update.sk}),
                            UpdateExpression=expression, ExpressionAttributeNames=names,
                            ExpressionAttributeValues=self._marshal(values))
        if update.seen is not None:  # landed: no need to write it again from this process
            if len(self._versions_seen) >= MAX_VERSIONS_REMEMBERED:
                self._versions_seen.clear()
            self._versions_seen.add(update.seen)

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
        """The per-model rollups of the UTC days from `since` to `until`, for one task or for all."""
        return [item for item in self.rollup_items(task_id, since, until) if not is_prompt_rollup(item)]

    def rollup_items(self, task_id: str | None, since: float | None, until: float | None) -> list[dict[str, Any]]:
        """Every rollup item of those days in one query: per model and, for all tasks, per prompt version."""
        low = day_of(since) if since is not None else "0000"
        high = day_of(until) if until is not None else "9999"
        return self._query(MAX_ROLLUP_ITEMS, KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
                           ExpressionAttributeValues=self._marshal({
                               ":p": schema.rollup_pk(task_id or schema.ALL_TASKS), ":lo": f"DAY#{low}",
                               ":hi": f"DAY#{high}#~"}))

    def first_seen(self, versions: list[str]) -> dict[str, float]:
        """When each prompt version was first recorded, from the versions' own items (one read per 100)."""
        found: dict[str, float] = {}
        for start in range(0, len(versions), 100):
            keys = [self._marshal({"pk": schema.rollup_pk(schema.ALL_TASKS), "sk": _version_sk(version)})
                    for version in versions[start:start + 100]]
            for _ in range(5):  # unprocessed keys come back under load: ask again, a few times
                answer = self.db.batch_get_item(RequestItems={self.table: {"Keys": keys}})
                for item in answer.get("Responses", {}).get(self.table, []):
                    plain = self._unmarshal(item)
                    found[plain["prompt_version"]] = plain["first_seen"]
                keys = answer.get("UnprocessedKeys", {}).get(self.table, {}).get("Keys", [])
                if not keys:
                    break
        return found

    def usage_calls(self, task_id: str | None, since: float | None, until: float | None, days: list[str],
                    limit: int) -> list[dict[str, Any]] | None:
        """The fields a usage report needs from each call in the range (of `days`, when no task is given), or
        None when there are more than `limit`: the caller then reports from the rollups instead."""
        low = iso(since) if since is not None else "0"
        high = iso(until) if until is not None else "~"
        projection = {f"#u{i}": name for i, name in enumerate(USAGE_FIELDS)}
        shape = {"ProjectionExpression": ", ".join(projection), "ExpressionAttributeNames": projection}
        if task_id:
            queries = [{"KeyConditionExpression": "pk = :p AND sk BETWEEN :lo AND :hi", **shape,
                        "ExpressionAttributeValues": self._marshal({
                            ":p": schema.task_pk(task_id), ":lo": f"CALL#{low}", ":hi": f"CALL#{high}~"})}]
        else:
            queries = [{"IndexName": schema.DAY_INDEX, **shape,
                        "KeyConditionExpression": "gsi2pk = :p AND gsi2sk BETWEEN :lo AND :hi",
                        "ExpressionAttributeValues": self._marshal({":p": f"DAY#{day}", ":lo": low,
                                                                    ":hi": high + "~"})} for day in days]
        found: list[dict[str, Any]] = []
        for query in queries:
            found += self._query(limit + 1 - len(found), **query)
            if len(found) > limit:
                return None
        return found

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


def _update_expression(update: RollupUpdate) -> tuple[str, dict[str, str], dict[str, Any]]:
    """`ADD counters SET labels, first = if_not_exists(first, value)`, every name and value a placeholder."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    clauses: dict[str, list[str]] = {"a": [], "s": [], "f": []}
    for kind, fields_ in (("a", update.adds), ("s", update.sets), ("f", update.set_if_absent)):
        for i, (name, value) in enumerate(fields_.items()):
            names[f"#{kind}{i}"], values[f":{kind}{i}"] = name, value
            clauses[kind].append({"a": f"#a{i} :a{i}", "s": f"#s{i} = :s{i}",
                                  "f": f"#f{i} = if_not_exists(#f{i}, :f{i})"}[kind])
    expression = ("ADD " + ", ".join(clauses["a"]) + " " if clauses["a"] else "") + "SET " + ", ".join(
        clauses["s"] + clauses["f"])
    return expression, names, values


# Rollup item keys. Labels are escaped, so no task, environment or model name can pass for another's key, and
# a long one is replaced by its hash ("%%" never appears in an escaped label), so a key stays under 1 KB.
MAX_KEY_PART_BYTES = 256


def _key_part(label: str) -> str:
    escaped = label.replace("%", "%25").replace("#", "%23")
    if len(escaped.encode("utf-8", "surrogatepass")) <= MAX_KEY_PART_BYTES:
        return escaped
    return "%%" + hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()


def _model_rollup_sk(day: str, model: str) -> str:
    return f"DAY#{day}#{_key_part(model)}"


def _prompt_rollup_sk(day: str, version: str | None) -> str:
    """Beside the day's model rollups (a model key always holds a "/"), so one query reads both."""
    return f"DAY#{day}#PROMPT#{version or 'none'}"


def is_prompt_rollup(item: dict[str, Any]) -> bool:
    return "prompt_version" in item


def _rollup_sk_suffix(task_id: str | None, environment: str | None) -> str:
    return (f"#TASK#{_key_part(task_id)}" if task_id is not None else "") + (
        f"#ENV#{_key_part(environment)}" if environment is not None else "")


def _version_sk(version: str) -> str:
    return f"VERSION#{version}"


def _rollup_counters(record: CallRecord) -> dict[str, Any]:
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
        adds.update({"ttft_sum_ms": record.ttft_ms, "ttft_count": 1, f"h{schema.bucket_index(record.ttft_ms)}": 1})
    return adds


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
