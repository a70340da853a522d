"""GET /v1/usage grouped by day, model, task and prompt version, filtered by environment, over real sockets.

Figures are checked against the calls themselves: the records the gateway produced for calls made with the
OpenAI SDK, or records written through the store at chosen times. Each test has a table of its own, so it
knows exactly which calls are in range.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from switchboard.formats.chat_completions import prompt_version
from switchboard.ledger import usage
from switchboard.ledger.record import CallRecord
from switchboard.ledger.store import iso
from tests.browser.seeding import fresh_table, store_for, summed_rollups
from tests.conftest import ADMIN_KEY

SUPPORT = "You are the support line of Acme Energy."
BOOKING = "You book appointments for Acme Clinics."
TOOLS = [{"type": "function", "function": {"name": "book_slot", "parameters": {"type": "object"}}}]
TODAY = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
if datetime.now(UTC) < TODAY:  # before noon: the day's calls are placed in its morning instead
    TODAY -= timedelta(hours=10)


@pytest.fixture
def table(ledger_env) -> Iterator[dict[str, str]]:
    with fresh_table(ledger_env) as env:
        yield env


def get_usage(gateway, **params) -> httpx.Response:
    return httpx.get(gateway.base_url + "/usage", params={k: v for k, v in params.items() if v is not None},
                     headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)


def nearest_rank(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)), 1) - 1] if ordered else None


def expected_row(records: list[CallRecord]) -> dict:
    """A usage row computed straight from the records: what an exact report must say."""
    ttfts = [r.ttft_ms for r in records if r.ttft_ms is not None]
    costs = [r.cost_usd for r in records if r.cost_usd is not None]
    return {"calls": len(records), "errors": sum(r.is_error for r in records),
            "prompt_tokens": sum(r.prompt_tokens or 0 for r in records),
            "completion_tokens": sum(r.completion_tokens or 0 for r in records),
            "cost_usd": round(sum(costs), 6) if costs else None,
            "ttft_p50_ms": nearest_rank(ttfts, 0.5), "ttft_p95_ms": nearest_rank(ttfts, 0.95)}


def figures(row: dict) -> dict:
    return {name: row[name] for name in ("calls", "errors", "prompt_tokens", "completion_tokens", "cost_usd",
                                         "ttft_p50_ms", "ttft_p95_ms")}


def record(task: str, when: datetime, *, environment: str | None = "prod", model: str = "gpt-4.1-mini",
           version: str | None = "0000000000aa", ttft_ms: float | None = 300.0, status: int = 200,
           cost_usd: float | None = 0.001) -> CallRecord:
    return CallRecord(task_id=task, started_at=when.timestamp(), environment=environment, provider="openai",
                      model=model, status=status, outcome="stop" if status < 400 else "http_error",
                      prompt_tokens=100, completion_tokens=10, cost_usd=cost_usd, priced=cost_usd is not None,
                      ttft_ms=ttft_ms, prompt_version=version)


# -- through the gateway: the SDK's calls, grouped -------------------------------------------------------------


@pytest.fixture
def made(start_gateway, table):
    """Calls under two tasks, two environments and two prompt versions, one of them an error."""
    gateway = start_gateway(**table)
    client = gateway.client()
    plan = [("support", "prod", SUPPORT, None, "openai/gpt-4.1-mini")] * 4 + [
        ("support", "staging", SUPPORT, None, "openai/gpt-4.1-mini"),
        ("booking", "prod", BOOKING, TOOLS, "anthropic/claude-haiku-4-5"),
        ("booking", "prod", BOOKING, TOOLS, "anthropic/claude-haiku-4-5"),
        ("booking", "prod", BOOKING, TOOLS, "openai/fail-400")]
    for task, environment, system, tools, model in plan:
        try:
            for _ in client.chat.completions.create(
                    model=model, stream=True, stream_options={"include_usage": True},
                    messages=[{"role": "system", "content": system}, {"role": "user", "content": "Hi"}],
                    extra_headers={"x-inference-task-id": task, "x-inference-environment": environment},
                    **({"tools": tools} if tools else {})):
                pass
        except Exception as exc:  # the upstream 400: it must still count, as an error
            assert "400" in str(exc)
    assert len(gateway.records) == len(plan)
    return gateway


def test_grouped_by_task_the_figures_are_the_calls_themselves(made):
    answer = get_usage(made, group_by="task", environment="prod").json()
    assert answer["exact"] is True and answer["source"] == "calls" and answer["group_by"] == ["task"]
    rows = {row["task_id"]: row for row in answer["data"]}
    assert set(rows) == {"support", "booking"}
    for task, row in rows.items():
        mine = [r for r in made.records if r.task_id == task and r.environment == "prod"]
        assert figures(row) == expected_row(mine)
    assert rows["booking"]["errors"] == 1 and rows["support"]["errors"] == 0
    assert [row["task_id"] for row in answer["data"]] == sorted(rows, key=lambda t: -(rows[t]["cost_usd"] or 0))
    assert figures(answer["totals"]) == expected_row([r for r in made.records if r.environment == "prod"])


def test_grouped_by_prompt_version_each_prompt_has_its_row(made):
    answer = get_usage(made, group_by="prompt_version").json()
    support = prompt_version([{"role": "system", "content": SUPPORT}], None)
    booking = prompt_version([{"role": "system", "content": BOOKING}], TOOLS)
    rows = {row["prompt_version"]: row for row in answer["data"]}
    assert set(rows) == {support, booking}
    for version, row in rows.items():
        mine = [r for r in made.records if r.prompt_version == version]
        assert figures(row) == expected_row(mine)
        assert row["first_seen"] == iso(min(r.started_at for r in mine))
    # The version is on each stored call too, as the admin API shows it.
    calls = httpx.get(made.base_url + "/calls", params={"task_id": "booking"},
                      headers={"authorization": f"Bearer {ADMIN_KEY}"}).json()["data"]
    assert {call["prompt_version"] for call in calls} == {booking}


def test_grouped_by_model_and_by_day_and_model(made):
    by_model = get_usage(made, group_by="model").json()
    assert {(r["provider"], r["model"]): r["calls"] for r in by_model["data"]} == {
        ("openai", "gpt-4.1-mini"): 5, ("anthropic", "claude-haiku-4-5"): 2, ("openai", "fail-400"): 1}
    # group_by=model is the `models` list every answer carries.
    assert [figures(r) for r in by_model["data"]] == [figures(r) for r in by_model["models"]]
    by_day_model = get_usage(made, group_by="day,model").json()
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert {(r["day"], r["model"]) for r in by_day_model["data"]} == {
        (today, "gpt-4.1-mini"), (today, "claude-haiku-4-5"), (today, "fail-400")}


def test_the_environment_filter(made):
    staging = get_usage(made, environment="staging", group_by="task").json()
    assert [(r["task_id"], r["calls"]) for r in staging["data"]] == [("support", 1)]
    assert staging["environment"] == "staging" and staging["totals"]["calls"] == 1
    assert get_usage(made, environment="nowhere").json()["totals"]["calls"] == 0


# -- the rollups: the same counts when there are too many calls to read -----------------------------------------


def test_past_the_exact_limit_the_rollups_give_the_same_counts(made, monkeypatch):
    exact = {group: get_usage(made, group_by=group, environment="prod").json()
             for group in ("task", "prompt_version", "day,model")}
    monkeypatch.setattr(usage, "EXACT_CALL_LIMIT", 0)
    for group, answer in exact.items():
        rolled = get_usage(made, group_by=group, environment="prod").json()
        assert rolled["exact"] is False and rolled["source"] == "rollups" and rolled["granularity"] == "day (UTC)"
        assert len(rolled["data"]) == len(answer["data"])
        for mine, theirs in zip(rolled["data"], answer["data"], strict=True):
            counts = ("calls", "errors", "prompt_tokens", "completion_tokens", "cost_usd", "unpriced_calls")
            assert {k: mine[k] for k in counts} == {k: theirs[k] for k in counts}
            assert mine["histogram"] == theirs["histogram"]
            if theirs["ttft_p50_ms"] is not None:  # interpolated: inside the bucket holding the real value
                assert _same_bucket(mine["ttft_p50_ms"], theirs["ttft_p50_ms"])


def _same_bucket(interpolated: float, exact: float) -> bool:
    from switchboard.ledger import schema

    bounds = (0, *schema.TTFT_BUCKETS_MS)
    index = schema.bucket_index(exact)
    return index >= len(schema.TTFT_BUCKETS_MS) or bounds[index] <= interpolated <= bounds[index + 1]


# -- records at chosen times ------------------------------------------------------------------------------------


def test_exact_figures_keep_to_the_range_and_rollups_to_whole_days(start_gateway, table, monkeypatch):
    store = store_for(table)
    early, late = record("t", TODAY - timedelta(hours=2)), record("t", TODAY + timedelta(minutes=30), ttft_ms=700.0)
    for each in (early, late):
        store.put(each)
    gateway = start_gateway(**table)
    since = iso(TODAY.timestamp())
    exact = get_usage(gateway, since=since).json()
    assert exact["exact"] is True and exact["since"] == since and exact["totals"]["calls"] == 1
    assert exact["totals"]["ttft_p50_ms"] == 700.0  # the later call's own figure
    monkeypatch.setattr(usage, "EXACT_CALL_LIMIT", 0)
    assert get_usage(gateway, since=since).json()["totals"]["calls"] == 2  # the whole UTC day


def test_days_come_in_order_with_their_own_figures(start_gateway, table):
    store = store_for(table)
    days = [TODAY - timedelta(days=n) for n in (2, 1, 0)]
    records = [record("t", day, ttft_ms=100.0 * (n + 1), version=None)
               for n, day in enumerate(days) for _ in range(n + 1)]
    records.append(record("t", days[0], status=502, ttft_ms=None, cost_usd=None))
    for each in records:
        store.put(each)
    answer = get_usage(start_gateway(**table), group_by="day").json()
    assert [(r["day"], r["calls"], r["errors"], r["ttft_p50_ms"]) for r in answer["data"]] == [
        (days[0].strftime("%Y-%m-%d"), 2, 1, 100.0), (days[1].strftime("%Y-%m-%d"), 2, 0, 200.0),
        (days[2].strftime("%Y-%m-%d"), 3, 0, 300.0)]


def test_a_versions_first_seen_is_its_first_call_ever(start_gateway, table, monkeypatch):
    store = store_for(table)
    store.put(record("t", TODAY - timedelta(days=20), version="00000000beef"))
    store.put(record("t", TODAY, version="00000000beef"))
    store.put(record("t", TODAY, version=None))
    gateway = start_gateway(**table)
    since = iso((TODAY - timedelta(hours=1)).timestamp())
    for limit in (usage.EXACT_CALL_LIMIT, 0):  # read from the calls, then from the rollups
        monkeypatch.setattr(usage, "EXACT_CALL_LIMIT", limit)
        answer = get_usage(gateway, since=since, group_by="prompt_version").json()
        rows = {r["prompt_version"]: r for r in answer["data"]}
        assert rows["00000000beef"]["calls"] == 1
        assert rows["00000000beef"]["first_seen"] == iso((TODAY - timedelta(days=20)).timestamp())
        assert rows[None]["calls"] == 1 and rows[None]["first_seen"] == iso(TODAY.timestamp())


def test_names_cannot_pass_for_each_other_in_the_rollup_keys(start_gateway, table, monkeypatch):
    """A task, environment or model name holding the keys' separator stays its own row."""
    tricky = [record("a#ENV#b", TODAY, environment=None), record("a", TODAY, environment="b"),
              record("a", TODAY, environment="b#TASK#a"), record("a%23ENV%23b", TODAY, environment=None),
              record("#" * 256, TODAY, environment="€#" * 128, model="m" * 200)]  # keys stay under DynamoDB's 1 KB
    store = store_for(table)
    keys = [{(u.pk, u.sk) for u in store.rollup_updates(each) if not u.sk.startswith("VERSION#")} for each in tricky]
    assert all(not keys[i] & keys[j] for i in range(len(keys)) for j in range(i + 1, len(keys)))
    for each in tricky:
        store.put(each)  # raises if any of its writes failed
    monkeypatch.setattr(usage, "EXACT_CALL_LIMIT", 0)
    gateway = start_gateway(**table)
    rows = get_usage(gateway, group_by="task").json()["data"]
    assert sorted((r["task_id"], r["calls"]) for r in rows) == [
        ("#" * 256, 1), ("a", 2), ("a#ENV#b", 1), ("a%23ENV%23b", 1)]
    assert get_usage(gateway, environment="b#TASK#a").json()["totals"]["calls"] == 1


def test_the_rollups_many_instances_add_up_to_the_calls(table):
    """Seeding 300 calls summed per item gives what 300 separate ADDs give: the bulk tests' shortcut is sound."""
    store = store_for(table)
    records = [record(f"t{n % 3}", TODAY - timedelta(minutes=n), ttft_ms=float(n), version=f"{n % 2:012x}")
               for n in range(300)]
    updates = summed_rollups(store, records)
    assert sum(u.adds.get("calls", 0) for u in updates if u.pk == "ROLLUP#*" and "#PROMPT#" not in u.sk) == 300


# -- the API's surface --------------------------------------------------------------------------------------


@pytest.mark.parametrize("group_by, complaint", [
    ("week", "got 'week'"), ("day,day", "twice"), ("model,prompt_version", "not with model")])
def test_group_by_is_checked(start_gateway, table, group_by, complaint):
    response = get_usage(start_gateway(**table), group_by=group_by)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "group_by" and error["code"] == "invalid_parameter" and complaint in error["message"]


def test_without_group_by_the_answer_is_as_before(made):
    answer = get_usage(made, task_id="support").json()
    assert {"object", "task_id", "since", "until", "granularity", "totals", "models"} <= set(answer)
    assert answer["object"] == "usage" and answer["task_id"] == "support" and "data" not in answer
    [row] = answer["models"]
    assert (row["provider"], row["model"], row["calls"]) == ("openai", "gpt-4.1-mini", 5)
    assert row["cost_complete"] is True and row["ttft_p95_ms"] >= row["ttft_p50_ms"] > 0


def test_overlapping_reports_share_one_read(made, monkeypatch):
    """The dashboard asks for four groupings at once: the ledger is read once for them, not four times."""
    import threading

    store = made.server.app.state.gateway.store
    reads, gate = [], threading.Event()
    real = store.rollup_items

    def slow_rollup_items(*args):
        reads.append(args)
        gate.wait(2)
        return real(*args)

    monkeypatch.setattr(store, "rollup_items", slow_rollup_items)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        answers = [pool.submit(get_usage, made, group_by=g) for g in ("day,model", "day", "task", "prompt_version")]
        time.sleep(0.5)
        gate.set()
        results = [a.result() for a in answers]
    assert all(r.status_code == 200 for r in results)
    assert len(reads) == 1
    assert len({r.json()["totals"]["calls"] for r in results}) == 1
