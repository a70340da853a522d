"""Spend budgets over real sockets: refuse, downgrade, the figures, two instances on one table, a call
crossing the limit mid-stream, and the soft threshold.

Prices come from a test price file that makes each call cost cents: `openai/gpt-sim` at $1000 per
million tokens and the simulator asked for 10 prompt and 10 completion tokens, so every call costs
exactly $0.02 and a $0.05 budget lets three calls through (the third starts at $0.04, under it).
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pytest

from switchboard import aws
from switchboard.config.settings import Settings
from switchboard.limits.budgets.model import Budget, Scope, budget_lines, periods
from switchboard.limits.budgets.report import budgets_report
from switchboard.ops.secrets_admin import SecretsAdmin
from tests import sse
from tests.conftest import EXTRA_SECRETS, GATEWAY_KEY, LOGS, METRICS_OUTPUT

HELLO = [{"role": "user", "content": "hi"}]
CALL_USD = 0.02  # 10 prompt + 10 completion tokens at $1000 per million
PRICES = {"openai/gpt-sim": {"input": 1000, "output": 1000},
          "openai/slow-4000": {"input": 1000, "output": 1000},
          "openai/gpt-sim-mini": {"input": 10, "output": 10}}
DOWNGRADE = "openai/gpt-sim-mini"


@pytest.fixture
def prices(tmp_path) -> str:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": PRICES}))
    return str(path)


@pytest.fixture(autouse=True)
def stay_inside_one_day() -> None:
    """Every figure here is a daily one: do not straddle midnight UTC."""
    left = periods(time.time())[0].ends_at - time.time()
    if left < 20:
        time.sleep(left + 1)


def task_name(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"  # the embedded table is shared by the whole run


def routing(task: str, **budget: object) -> str:
    return json.dumps({"tasks": {task: {"budget": budget}}})


def post(gateway, task: str, *, model: str = "openai/gpt-sim", stream: bool = True, key: str = GATEWAY_KEY,
         **simulator: object) -> httpx.Response:
    body = {"model": model, "messages": HELLO, "stream": stream,
            "simulator": {"prompt_tokens": 10, "tokens": 10, **simulator}}
    return httpx.post(gateway.base_url + "/chat/completions", json=body, timeout=20,
                      headers={"authorization": f"Bearer {key}", "x-inference-task-id": task})


def the_gateway(running):
    """The Gateway object behind a running test server (for budgets_report and its tracker)."""
    return running.server.app.state.gateway


def report_of(running) -> dict:
    gateway = the_gateway(running)
    return budgets_report(gateway.budgets.counters, gateway.task_budgets, gateway.keys.known_keys())


def seconds_to_midnight() -> float:
    return periods(time.time())[0].ends_at - time.time()


def assert_budget_refusal(response: httpx.Response, scope: str) -> dict:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert error["message"].startswith(f"{scope} has spent $0.06 of its $0.05 daily budget")
    assert abs(int(response.headers["retry-after"]) - seconds_to_midnight()) < 5
    assert response.headers["x-should-retry"] == "false"  # the OpenAI SDKs would retry a 429 otherwise
    return error


def test_refuse_once_the_task_budget_is_spent(start_gateway, sim_app, prices):
    task = task_name("refuse")
    gateway = start_gateway(SWITCHBOARD_PRICES=prices, SWITCHBOARD_ROUTING=routing(task, daily_usd=0.05))

    statuses = [post(gateway, task, stream=i != 1).status_code for i in range(3)]
    streamed, plain = post(gateway, task), post(gateway, task, stream=False)

    assert statuses == [200, 200, 200]
    assert_budget_refusal(streamed, f"task '{task}'")
    assert_budget_refusal(plain, f"task '{task}'")
    assert len(sim_app.requests) == 3  # known over: decided before anything was sent upstream
    refused = gateway.records[-2:]
    assert len(gateway.records) == 5  # every refusal is still one record
    assert [(r.status, r.outcome, r.attempts) for r in refused] == [(429, "budget_exceeded", [])] * 2
    assert post(gateway, task_name("other")).status_code == 200  # a task without a budget is not affected


def test_over_budget_a_call_moves_to_the_downgrade_model(start_gateway, sim_app, prices):
    task = task_name("downgrade")
    gateway = start_gateway(SWITCHBOARD_PRICES=prices, SWITCHBOARD_ROUTING=routing(
        task, daily_usd=0.05, on_exceeded={"model": DOWNGRADE}))
    for _ in range(3):
        assert post(gateway, task).status_code == 200

    moved = post(gateway, task)
    plain = post(gateway, task, stream=False)

    assert moved.status_code == 200 and moved.text.rstrip().endswith("data: [DONE]")
    assert "(simulated)" in moved.text  # a live conversation keeps talking
    assert plain.status_code == 200 and plain.json()["choices"][0]["message"]["content"]
    assert [body["model"] for body in sim_app.requests] == ["gpt-sim"] * 3 + ["gpt-sim-mini"] * 2
    for record in gateway.records[-2:]:
        assert record.budget_downgraded and record.model == "gpt-sim-mini" and record.status == 200
        assert record.requested_model == "openai/gpt-sim"
    assert not any(record.budget_downgraded for record in gateway.records[:3])


def test_the_responses_api_is_refused_and_moved_the_same_way(start_gateway, sim_app, prices):
    refusing, moving = task_name("responses-refuse"), task_name("responses-move")
    config = {"tasks": {refusing: {"budget": {"daily_usd": 0.05}},
                        moving: {"budget": {"daily_usd": 0.05, "on_exceeded": {"model": DOWNGRADE}}}}}
    gateway = start_gateway(SWITCHBOARD_PRICES=prices, SWITCHBOARD_ROUTING=json.dumps(config))

    def respond(task: str) -> httpx.Response:
        body = {"model": "openai/gpt-sim", "input": "hi", "stream": True,
                "simulator": {"prompt_tokens": 10, "tokens": 10}}
        return httpx.post(gateway.base_url + "/responses", json=body, timeout=20,
                          headers={"authorization": f"Bearer {GATEWAY_KEY}", "x-inference-task-id": task})

    for task in (refusing, moving):
        assert [respond(task).status_code for _ in range(3)] == [200, 200, 200]
    refused, moved = respond(refusing), respond(moving)

    assert_budget_refusal(refused, f"task '{refusing}'")
    assert moved.status_code == 200 and "event: response.completed" in moved.text
    assert sim_app.requests[-1]["model"] == "gpt-sim-mini"
    assert gateway.records[-1].budget_downgraded and gateway.records[-1].api == "responses"


def test_budgets_report_shows_spend_remaining_and_period_end(start_gateway, prices):
    task, unpriced_task = task_name("report"), task_name("unpriced")
    config = {"tasks": {task: {"budget": {"daily_usd": 0.05, "monthly_usd": 1, "soft_percent": 80}},
                        unpriced_task: {"budget": {"monthly_usd": 2}}}}
    gateway = start_gateway(SWITCHBOARD_PRICES=prices, SWITCHBOARD_ROUTING=json.dumps(config))
    for _ in range(2):
        assert post(gateway, task).status_code == 200
    unpriced_call = post(gateway, unpriced_task, model="openai/not-in-the-price-list")
    assert unpriced_call.status_code == 400 and unpriced_call.json()["error"]["code"] == "model_unpriced"
    cut = post(gateway, unpriced_task, cut_after=3)  # usage never comes: the reservation stands as its spend
    assert cut.status_code == 200

    report = report_of(gateway)

    rows = {(row["name"], row["period"]): row for row in report["data"]}
    assert set(rows) == {(task, "day"), (task, "month"), (unpriced_task, "month")}
    day, month = periods(time.time())
    spent = sum(r.cost_usd for r in gateway.records if r.task_id == task)
    assert spent == pytest.approx(2 * CALL_USD)
    assert rows[(task, "day")]["spent_usd"] == pytest.approx(spent)
    assert rows[(task, "day")]["remaining_usd"] == pytest.approx(0.05 - spent)
    assert rows[(task, "day")]["period_ends_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(day.ends_at))
    assert rows[(task, "day")]["state"] == "soft"  # $0.04 is past 80% of $0.05
    assert rows[(task, "month")]["remaining_usd"] == pytest.approx(1 - spent)
    assert rows[(task, "month")]["period_ends_at"].endswith("-01T00:00:00Z")
    assert rows[(task, "month")]["state"] == "ok" and not rows[(task, "day")]["incomplete"]
    unpriced = rows[(unpriced_task, "month")]
    reserved = [r for r in gateway.records if r.task_id == unpriced_task][-1]
    assert reserved.cost_usd is None and reserved.usage_estimated
    assert unpriced["spent_usd"] > 0 and unpriced["incomplete"] is True  # its worst case, and says so
    assert unpriced["period_ends_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(month.ends_at))


def test_two_instances_share_one_table(start_gateway, sim_app, prices, ledger_env):
    task = task_name("shared")
    env = {**ledger_env, "SWITCHBOARD_PRICES": prices, "SWITCHBOARD_ROUTING": routing(task, daily_usd=0.05)}
    first, second = start_gateway(**env), start_gateway(**env)  # two instances, one table

    statuses = [post(instance, task).status_code for instance in (first, second, first)]

    assert statuses == [200, 200, 200]
    # The second instance spent only $0.02 itself; the shared counter holds $0.06.
    assert_budget_refusal(post(second, task), f"task '{task}'")
    assert_budget_refusal(post(first, task, stream=False), f"task '{task}'")
    for instance in (first, second):
        (row,) = [r for r in report_of(instance)["data"] if r["name"] == task]
        assert row["spent_usd"] == pytest.approx(3 * CALL_USD) and row["state"] == "exceeded"


def test_a_verdict_arriving_while_the_upstream_is_silent_moves_the_call(start_gateway, sim_app, prices, ledger_env):
    """A fresh instance knows nothing yet: the call starts on its model while the counters are read, and
    moves to the downgrade model the moment the verdict comes, without waiting for the slow first token."""
    task = task_name("race")
    env = {**ledger_env, "SWITCHBOARD_PRICES": prices,
           "SWITCHBOARD_ROUTING": routing(task, daily_usd=0.05, on_exceeded={"model": DOWNGRADE})}
    spender, fresh = start_gateway(**env), start_gateway(**env)
    for _ in range(3):
        assert post(spender, task).status_code == 200
    slow_reads(the_gateway(fresh), 0.3)  # the upstream request is surely on its way before the verdict
    sim_app.requests.clear()

    started = time.perf_counter()
    response = post(fresh, task, model="openai/slow-4000")
    elapsed = time.perf_counter() - started

    assert response.status_code == 200 and response.text.rstrip().endswith("data: [DONE]")
    assert elapsed < 2.0  # not 4 s: the slow model's first token was never waited for
    assert [body["model"] for body in sim_app.requests] == ["slow-4000", "gpt-sim-mini"]
    record = fresh.records[-1]
    assert record.budget_downgraded and record.model == "gpt-sim-mini"
    assert [(a["model"], a["outcome"]) for a in record.attempts] == [("slow-4000", "budget_downgraded"),
                                                                     ("gpt-sim-mini", "ok")]


def test_a_refusing_verdict_arriving_while_the_upstream_is_silent_is_a_429(start_gateway, sim_app, prices,
                                                                          ledger_env):
    task = task_name("race-refuse")
    env = {**ledger_env, "SWITCHBOARD_PRICES": prices, "SWITCHBOARD_ROUTING": routing(task, daily_usd=0.05)}
    spender, fresh = start_gateway(**env), start_gateway(**env)
    for _ in range(3):
        assert post(spender, task).status_code == 200
    slow_reads(the_gateway(fresh), 0.3)

    started = time.perf_counter()
    response = post(fresh, task, model="openai/slow-4000")

    assert time.perf_counter() - started < 2.0  # not 4 s: refused without waiting for the slow first token
    assert_budget_refusal(response, f"task '{task}'")
    record = fresh.records[-1]
    assert (record.status, record.outcome, record.completion_tokens) == (429, "budget_exceeded", None)


def test_a_first_token_before_the_verdict_waits_for_it(start_gateway, sim_app, prices, ledger_env):
    """The upstream answers before the table does: nothing reaches the client until the verdict is known,
    and an over-budget verdict then moves the call, the first model's token unsent."""
    task = task_name("race-late")
    env = {**ledger_env, "SWITCHBOARD_PRICES": prices,
           "SWITCHBOARD_ROUTING": routing(task, daily_usd=0.05, on_exceeded={"model": DOWNGRADE})}
    spender, fresh = start_gateway(**env), start_gateway(**env)
    for _ in range(3):
        assert post(spender, task).status_code == 200
    slow_reads(the_gateway(fresh), 0.3)
    sim_app.requests.clear()

    response = post(fresh, task)

    assert response.status_code == 200
    assert [body["model"] for body in sim_app.requests] == ["gpt-sim", "gpt-sim-mini"]
    record = fresh.records[-1]
    assert record.budget_downgraded and record.model == "gpt-sim-mini"
    assert record.cost_usd == pytest.approx(20 * 10 / 1e6)  # billed as the model that answered
    assert record.ttft_ms >= 300  # the first byte waited for the verdict


def test_a_call_crossing_the_limit_mid_stream_is_not_cut(start_gateway, sim_app, prices):
    """A call admitted under budget runs to its end, however much is spent meanwhile; only the next is refused."""
    task = task_name("mid-stream")
    gateway = start_gateway(SWITCHBOARD_PRICES=prices, SWITCHBOARD_ROUTING=routing(task, daily_usd=0.05))
    long_call: dict[str, httpx.Response] = {}
    # ~2 s and $0.05 on its own (10 prompt + 40 completion tokens): long enough to be in flight while the rest
    # of the budget is spent elsewhere.
    streaming = threading.Thread(target=lambda: long_call.setdefault(
        "response", post(gateway, task, tokens=40, gap_ms=50)))
    streaming.start()
    deadline = time.monotonic() + 5
    while not sim_app.requests and time.monotonic() < deadline:  # admitted once the upstream has it
        time.sleep(0.01)
    (line,) = budget_lines([Scope("task", task, Budget(daily_usd=0.05))], time.time())
    the_gateway(gateway).budgets.counters.add(line, 3 * CALL_USD, False)  # other calls spend $0.06 meanwhile

    refused = post(gateway, task)
    still_streaming = streaming.is_alive()
    streaming.join()

    assert refused.status_code == 429 and still_streaming
    response = long_call["response"]
    assert response.status_code == 200 and response.text.rstrip().endswith("data: [DONE]")
    content = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in sse.objects(response))
    assert len(content.split()) >= 40  # every token of it, although the budget ran out half-way
    record = next(r for r in gateway.records if r.completion_tokens == 40)
    assert record.status == 200 and record.outcome == "stop"
    (row,) = report_of(gateway)["data"]
    assert row["spent_usd"] == pytest.approx(3 * CALL_USD + 0.05)  # its cost still counts
    assert row["reserved_usd"] == 0  # and nothing is left reserved once it ended


def test_the_soft_threshold_warns_once_across_instances(start_gateway, prices, ledger_env, capsys):
    task = task_name("soft")
    env = {**ledger_env, "SWITCHBOARD_PRICES": prices, "SWITCHBOARD_METRICS": "true",
           "SWITCHBOARD_ROUTING": routing(task, daily_usd=0.05, soft_percent=50)}
    first, second = start_gateway(**env), start_gateway(**env)
    capsys.readouterr()

    # $0.02 (under $0.025), $0.04 (past it), $0.06 (past the limit too), then refused.
    statuses = [post(instance, task).status_code for instance in (first, second, first, second)]

    assert statuses == [200, 200, 200, 429]
    soft = [line for line in LOGS.records_with("budget soft threshold passed") if task in line]
    exhausted = [line for line in LOGS.records_with("budget exhausted") if task in line]
    assert len(soft) == 1 and len(exhausted) == 1
    assert f"task '{task}' has spent $0.04, past 50% of its $0.05 daily budget" in soft[0]
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"CloudWatchMetrics"' in line]
    METRICS_OUTPUT.extend(json.dumps(blob) for blob in emf)
    budget_blobs = [blob for blob in emf if blob.get("budget_name") == task]
    assert sorted(name for blob in budget_blobs for name in ("BudgetSoftThreshold", "BudgetExceeded")
                  if name in blob) == ["BudgetExceeded", "BudgetSoftThreshold"]
    assert all(blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]] for blob in budget_blobs)


def test_a_key_budget_refuses_that_key_only(start_gateway, prices, ledger_env):
    settings = Settings.from_env(ledger_env)
    admin = SecretsAdmin(aws.client("secretsmanager", settings), settings.provider_keys_secret,
                         settings.gateway_keys_secret)
    name = "budgeted-" + uuid.uuid4().hex[:8]
    key = admin.create_key(name, budget=Budget(daily_usd=0.03))
    EXTRA_SECRETS.append(key)
    gateway = start_gateway(**ledger_env, SWITCHBOARD_PRICES=prices)
    task = task_name("keyed")

    statuses = [post(gateway, task, key=key).status_code for _ in range(2)]
    refused = post(gateway, task, key=key)

    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused.json()["error"]["message"].startswith(f"key '{name}' has spent $0.04 of its $0.03 daily budget")
    assert post(gateway, task).status_code == 200  # another key, the same task: not affected
    rows = [r for r in report_of(gateway)["data"] if r["name"] == name]
    assert [(r["scope"], r["period"], r["spent_usd"]) for r in rows] == [("key", "day", pytest.approx(0.04))]


def slow_reads(gateway, seconds: float) -> None:
    """Make this instance's budget checks (its reservations) take `seconds` (a slow table), to force the race
    with the upstream."""
    counters = gateway.budgets.counters
    reserve = counters.reserve

    def slow(line, usd, minute):
        time.sleep(seconds)
        return reserve(line, usd, minute)

    counters.reserve = slow
