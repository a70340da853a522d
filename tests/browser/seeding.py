"""Many calls into the ledger at once, as the store itself would hold them.

Each record goes through `CallStore.call_item` and `CallStore.rollup_updates`, the code every real call
takes; only the writing is batched (call items 25 to a request, each rollup item's counters summed and
written once), so 10,000 calls land in seconds rather than minutes on the embedded emulation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from switchboard.ledger.record import CallRecord
from switchboard.ledger.store import CallStore, RollupUpdate


def write_calls(store: CallStore, records: list[CallRecord]) -> None:
    items = [store._marshal(store.call_item(record)) for record in records]
    batches = [items[start:start + 25] for start in range(0, len(items), 25)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda batch: _write_batch(store, batch), batches))
        list(pool.map(store._apply, summed_rollups(store, records)))


def _write_batch(store: CallStore, items: list[dict]) -> None:
    requests = [{"PutRequest": {"Item": item}} for item in items]
    for _ in range(10):
        answer = store.db.batch_write_item(RequestItems={store.table: requests})
        requests = answer.get("UnprocessedItems", {}).get(store.table, [])
        if not requests:
            return
    raise AssertionError(f"{len(requests)} call items were never written")


def summed_rollups(store: CallStore, records: list[CallRecord]) -> list[RollupUpdate]:
    """The rollup updates of all `records`, one per item: what their ADDs would have left there."""
    merged: dict[tuple[str, str], RollupUpdate] = {}
    for record in records:
        for update in store.rollup_updates(record):
            key = (update.pk, update.sk)
            seen = merged.get(key)
            if seen is None:
                merged[key] = dataclasses.replace(update, adds=dict(update.adds),
                                                  set_if_absent=dict(update.set_if_absent))
                continue
            for name, value in update.adds.items():
                seen.adds[name] = seen.adds.get(name, 0) + value
            for name, value in update.set_if_absent.items():
                seen.set_if_absent[name] = min(seen.set_if_absent.get(name, value), value)
    return list(merged.values())


def synthetic_calls(count: int, *, environment: str, tasks: list[str], days: int = 7, seed: int = 12,
                    now: float | None = None) -> list[CallRecord]:
    """`count` finished calls spread over the last `days` days: three priced models, a few prompt versions,
    conversations of several turns, about one error in fifty."""
    rng = random.Random(seed)
    now = now if now is not None else time.time()
    models = [("openai", "gpt-4.1-mini", 0.4e-6, 1.6e-6), ("anthropic", "claude-haiku-4-5", 1e-6, 5e-6),
              ("groq", "llama-3.1-8b-instant", 0.05e-6, 0.08e-6)]
    records = []
    for index in range(count):
        provider, model, per_in, per_out = models[index % len(models)]
        failed = index % 50 == 49
        prompt, completion = rng.randint(200, 4000), rng.randint(10, 120)
        records.append(CallRecord(
            started_at=now - rng.random() * (days - 1) * 86400 - 60, task_id=tasks[index % len(tasks)],
            environment=environment, provider=provider, model=model, requested_model=f"{provider}/{model}",
            stream=True, status=502 if failed else 200, outcome="upstream_error" if failed else "stop",
            prompt_tokens=None if failed else prompt, completion_tokens=None if failed else completion,
            cost_usd=None if failed else round(prompt * per_in + completion * per_out, 9), priced=True,
            ttft_ms=None if failed else round(rng.lognormvariate(5.6, 0.4), 2), total_ms=900.0,
            metadata={"conversation-id": f"{environment}-conv-{index // 6}"},
            prompt_version=f"{(index % 4) + 1:012x}"))
    return records


@contextlib.contextmanager
def fresh_table(ledger_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Settings for a table of the caller's own in the embedded emulation, deleted afterwards: the test then
    sees exactly the calls it made (and the emulation, whose queries read the whole table, stays fast)."""
    from switchboard import aws
    from switchboard.config.settings import Settings
    from switchboard.ledger import schema

    dynamodb = aws.client("dynamodb", Settings.from_env(ledger_env))
    name = "switchboard-test-" + uuid.uuid4().hex[:8]
    schema.create_table(dynamodb, name)
    try:
        yield {**ledger_env, "SWITCHBOARD_TABLE": name}
    finally:
        dynamodb.delete_table(TableName=name)


def store_for(env: dict[str, str]) -> CallStore:
    from switchboard import aws
    from switchboard.config.settings import Settings

    settings = Settings.from_env(env)
    return CallStore(aws.client("dynamodb", settings), settings.table_name)
