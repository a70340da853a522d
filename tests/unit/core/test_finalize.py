"""The recorder never raises: garbage usage, a failing price or observer, or a cancelled call still leave one
record (in the embedded DynamoDB table, or the log) and free the rate-limit slot."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from switchboard import aws
from switchboard.config.settings import Settings
from switchboard.core.finalize import Finalizer
from switchboard.ledger.pricing import PriceCatalog, catalog
from switchboard.ledger.record import CallClock, CallRecord
from switchboard.ledger.store import CallStore
from switchboard.ledger.writer import FALLBACK_MESSAGE, LedgerWriter
from tests.conftest import LOGS

ABSURD = 10**400  # an upstream's usage block can hold any JSON integer


@pytest.fixture
def store(local_aws) -> CallStore:
    settings = Settings.from_env(local_aws.env())
    return CallStore(aws.client("dynamodb", settings), settings.table_name)


class Releases:
    """The rate limiter's release, as the recorder sees it: a coroutine taking the request id."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.released: list[str] = []
        self.delay_s = delay_s

    async def __call__(self, request_id: str) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.released.append(request_id)


def absurd_record(**fields) -> CallRecord:
    record = CallRecord(task_id="robust-" + uuid.uuid4().hex[:8], provider="openai", model="gpt-4.1-mini",
                        outcome="stop", **fields)
    record.prompt_tokens = record.completion_tokens = record.cached_tokens = ABSURD
    return record


def test_absurd_token_counts_are_dropped_and_the_record_is_stored(store):
    releases = Releases()
    record = absurd_record()
    asyncio.run(Finalizer(LedgerWriter(store, 5), catalog(), release=releases)(record, CallClock()))

    item = store.call(record.request_id)
    assert item is not None, "no call item in the table"
    assert item["task_id"] == record.task_id and item["outcome"] == "stop"
    assert "prompt_tokens" not in item and "completion_tokens" not in item and "cached_tokens" not in item
    assert "cost_usd" not in item  # no believable usage, so no price rather than a made-up one
    assert item["total_ms"] >= 0
    assert releases.released == [record.request_id]
    assert any(record.request_id in line for line in LOGS.records_with("implausible token counts"))


def test_absurd_token_counts_without_a_table_still_log_the_record_and_release(store):
    releases = Releases()
    record = absurd_record()
    asyncio.run(Finalizer(LedgerWriter(None), catalog(), release=releases)(record, CallClock()))
    assert [line for line in LOGS.records_with("call record") if record.request_id in line]
    assert releases.released == [record.request_id]


def test_a_number_dynamodb_cannot_hold_costs_that_field_not_the_item(store):
    record = CallRecord(task_id="robust-" + uuid.uuid4().hex[:8], provider="openai", model="gpt-4.1-mini",
                        outcome="stop", attempts=[{"provider": "openai", "status": 10**39}])
    asyncio.run(Finalizer(LedgerWriter(store, 5), catalog())(record, CallClock()))
    item = store.call(record.request_id)
    assert item is not None, "the whole item was lost to one 39-digit number"
    assert item["attempts"] == [{"provider": "openai", "status": None}]


class BrokenPrices(PriceCatalog):
    def by_key(self, *args, **kwargs):
        raise ZeroDivisionError("a bug in pricing (simulated)")


def broken_observer(record: CallRecord) -> None:
    raise RuntimeError("a bug in an observer (simulated)")


@pytest.mark.parametrize("with_table", [True, False], ids=["table", "log"])
def test_a_failing_price_or_observer_still_records_and_releases(store, with_table):
    releases = Releases()
    seen: list[CallRecord] = []
    record = CallRecord(task_id="robust-" + uuid.uuid4().hex[:8], provider="openai", model="gpt-4.1-mini",
                        prompt_tokens=10, completion_tokens=5)
    recorder = Finalizer(LedgerWriter(store if with_table else None, 5), BrokenPrices({}),
                         observers=[broken_observer, seen.append], release=releases)
    asyncio.run(recorder(record, CallClock()))
    assert seen == [record], "one failing observer kept the others from seeing the record"
    assert releases.released == [record.request_id]
    if with_table:
        assert store.call(record.request_id)["prompt_tokens"] == 10
    else:
        assert [line for line in LOGS.records_with("call record") if record.request_id in line]


def test_the_slot_is_released_even_when_the_call_is_cancelled_mid_write(store, monkeypatch):
    releases = Releases(delay_s=0.2)
    record = CallRecord(task_id="robust-" + uuid.uuid4().hex[:8])
    monkeypatch.setattr(store, "_put_call", lambda record: __import__("time").sleep(0.5))

    async def cancel_mid_write() -> None:
        task = asyncio.ensure_future(Finalizer(LedgerWriter(store, 2), catalog(), release=releases)(
            record, CallClock()))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.4)

    asyncio.run(cancel_mid_write())
    assert releases.released == [record.request_id], "a cancelled call kept its concurrency slot"


def test_the_fallback_log_line_is_written_when_the_table_is_missing(local_aws):
    settings = Settings.from_env(local_aws.env())
    missing = CallStore(aws.client("dynamodb", settings), "no-such-table-" + uuid.uuid4().hex[:6])
    releases = Releases()
    record = absurd_record()
    asyncio.run(Finalizer(LedgerWriter(missing, 5), catalog(), release=releases)(record, CallClock()))
    assert [line for line in LOGS.records_with(FALLBACK_MESSAGE) if record.request_id in line]
    assert releases.released == [record.request_id]
