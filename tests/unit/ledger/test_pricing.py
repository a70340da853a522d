"""What a call costs and what its record keeps: cache writes at their own rate, reasoning outside
completion_tokens billed as output, the new token and timing fields stored, and the admin API showing
every field of a record (null where unknown) over a real socket."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid

import httpx
import pytest

from switchboard import aws
from switchboard.config.settings import Settings
from switchboard.core.finalize import Finalizer
from switchboard.ledger.pricing import Price, PriceCatalog, catalog
from switchboard.ledger.record import CallClock, CallRecord
from switchboard.ledger.store import CallStore
from switchboard.ledger.usage import report
from switchboard.ledger.writer import LedgerWriter
from tests.conftest import ADMIN_KEY, GATEWAY_KEY

NEW_FIELDS = ("total_tokens", "cache_write_tokens", "reasoning_tokens", "first_chunk_ms", "api",
              "upstream_latency_ms")


def recorded(record: CallRecord, prices: PriceCatalog | None = None, clock: CallClock | None = None) -> CallRecord:
    """The record as the recorder finishes it (no table: it goes to the log)."""
    asyncio.run(Finalizer(LedgerWriter(None), prices or catalog())(record, clock or CallClock()))
    return record


def usage(record: CallRecord, **tokens: int) -> CallRecord:
    for name, value in tokens.items():
        setattr(record, name, value)
    return record


def test_anthropic_cache_writes_cost_the_cache_write_rate_not_the_input_rate():
    # anthropic/claude-sonnet-4-6: 3.00 input, 0.30 cache read, 3.75 cache write, 15.00 output per million
    record = usage(CallRecord(provider="anthropic", model="claude-sonnet-4-6"), prompt_tokens=10_000,
                   cached_tokens=2_000, cache_write_tokens=6_000, completion_tokens=500)
    assert recorded(record).cost_usd == pytest.approx((2_000 * 3.00 + 2_000 * 0.30 + 6_000 * 3.75 + 500 * 15.00) / 1e6)


def test_reasoning_tokens_outside_completion_tokens_are_billed_as_output():
    # xai/grok-4.7: 2.00 input, 6.00 output per million; total_tokens counts 300 reasoning tokens on top
    record = usage(CallRecord(provider="xai", model="grok-4.7"), prompt_tokens=1_000, completion_tokens=200,
                   total_tokens=1_500, reasoning_tokens=300)
    assert recorded(record).cost_usd == pytest.approx((1_000 * 2.00 + 500 * 6.00) / 1e6)


def test_reasoning_inside_completion_tokens_is_not_billed_twice():
    # OpenAI counts reasoning inside completion_tokens; total = prompt + completion
    record = usage(CallRecord(provider="openai", model="gpt-4.1-mini"), prompt_tokens=1_000, completion_tokens=400,
                   total_tokens=1_400, reasoning_tokens=300)
    assert recorded(record).cost_usd == pytest.approx((1_000 * 0.40 + 400 * 1.60) / 1e6)


def test_cache_writes_fall_back_to_the_input_rate_and_never_exceed_the_prompt():
    prices = PriceCatalog({"x/y": Price(input=2.0, output=4.0, cached_input=0.5)})
    record = usage(CallRecord(provider="x", model="y"), prompt_tokens=100, cached_tokens=30, cache_write_tokens=50,
                   completion_tokens=10)
    assert recorded(record, prices).cost_usd == pytest.approx((20 * 2.0 + 30 * 0.5 + 50 * 2.0 + 10 * 4.0) / 1e6)
    overcounted = usage(CallRecord(provider="anthropic", model="claude-sonnet-4-6"), prompt_tokens=100,
                        cached_tokens=80, cache_write_tokens=80, completion_tokens=0)
    assert recorded(overcounted).cost_usd == pytest.approx((80 * 0.30 + 20 * 3.75) / 1e6)


def test_first_chunk_counts_reasoning_while_ttft_waits_for_content():
    clock = CallClock()
    clock.first_chunk = clock.start + 0.120  # a reasoning delta
    clock.first_token = clock.start + 0.480  # the first content delta
    record = recorded(CallRecord(provider="simulator", model="echo"), clock=clock)
    assert record.first_chunk_ms == pytest.approx(120, abs=0.01)
    assert record.ttft_ms == pytest.approx(480, abs=0.01)

    content_only = CallClock()
    content_only.first_token = content_only.start + 0.2
    assert recorded(CallRecord(), clock=content_only).first_chunk_ms == pytest.approx(200, abs=0.01)


@pytest.fixture
def store(local_aws) -> CallStore:
    settings = Settings.from_env(local_aws.env())
    return CallStore(aws.client("dynamodb", settings), settings.table_name)


def test_the_new_fields_are_stored_and_counted_in_the_rollups(store):
    task = "pricing-" + uuid.uuid4().hex[:8]
    record = usage(CallRecord(task_id=task, provider="anthropic", model="claude-sonnet-4-6", outcome="stop"),
                   prompt_tokens=1_000, completion_tokens=50, total_tokens=1_050, cached_tokens=100,
                   cache_write_tokens=800, reasoning_tokens=20)
    record.upstream_latency_ms = 312.5
    clock = CallClock()
    clock.first_chunk = clock.first_token = clock.start + 0.05
    asyncio.run(Finalizer(LedgerWriter(store, 5), catalog())(record, clock))

    item = store.call(record.request_id)
    assert {name: item.get(name) for name in NEW_FIELDS} == {
        "total_tokens": 1_050, "cache_write_tokens": 800, "reasoning_tokens": 20,
        "first_chunk_ms": record.first_chunk_ms, "api": "chat", "upstream_latency_ms": 312.5}
    assert item["cost_usd"] == pytest.approx((100 * 3.00 + 100 * 0.30 + 800 * 3.75 + 50 * 15.00) / 1e6)
    totals = report(store.rollups(task, None, None))["totals"]
    assert totals["cache_write_tokens"] == 800 and totals["reasoning_tokens"] == 20


# -- the admin API: every field, null where unknown ----------------------------------------------------------


def old_item(store: CallStore, task: str) -> str:
    """A call item as the table held it before the new fields existed."""
    record = CallRecord(task_id=task, provider="openai", model="gpt-4.1-mini", outcome="stop", prompt_tokens=9,
                        completion_tokens=3, started_at=time.time() - 5)
    item = {k: v for k, v in store.call_item(record).items() if k not in NEW_FIELDS}
    store.db.put_item(TableName=store.table, Item=store._marshal(item))
    return record.request_id


def test_calls_api_shows_every_record_field_with_null_for_unknowns(start_gateway, ledger_env, store):
    gateway = start_gateway(**ledger_env)
    task = "fields-" + uuid.uuid4().hex[:8]
    answer = httpx.post(gateway.base_url + "/chat/completions", timeout=20, json={
        "model": "openai/gpt-unknown-sim", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {GATEWAY_KEY}", "x-inference-task-id": task})
    assert answer.status_code == 200
    unpriced_id = answer.headers["x-request-id"]
    legacy_id = old_item(store, task)

    listed = httpx.get(gateway.base_url + "/calls", params={"task_id": task}, timeout=20,
                       headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert listed.status_code == 200
    calls = {call["request_id"]: call for call in listed.json()["data"]}
    assert set(calls) == {unpriced_id, legacy_id}
    every_field = {f.name for f in dataclasses.fields(CallRecord)}
    for call in calls.values():
        assert every_field <= set(call), f"missing: {sorted(every_field - set(call))}"
        assert not {"pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"} & set(call)
    unpriced = calls[unpriced_id]
    assert unpriced["cost_usd"] is None and unpriced["priced"] is False
    assert unpriced["error"] is None and unpriced["trace"] is None and unpriced["tool_calls"] == []
    legacy = calls[legacy_id]
    assert legacy["prompt_tokens"] == 9 and legacy["total_tokens"] is None and legacy["cache_write_tokens"] is None
    assert legacy["first_chunk_ms"] is None and legacy["api"] == "chat"
    assert '"cost_usd":null' in listed.text.replace(" ", "")
