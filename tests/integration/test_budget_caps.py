"""Budgets are caps, over real sockets: calls in flight count, and no budgeted call spends unpriced.

A budget admits a call while its line is under the limit, counting what calls in flight have reserved
(their worst case), so eight concurrent calls cannot spend eight times what one may; and a call under a
budget on a model nothing prices is priced (its dated base, its official host's provider, the operator's
default) or refused, never free.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import httpx
import pytest

from switchboard.http.serving import BackgroundServer
from switchboard.limits.budgets.model import periods
from switchboard.providers.registry import OFFICIAL_HOSTS
from switchboard.simulator import Script, SimulatorApp
from tests.conftest import GATEWAY_KEY

CALL_USD = 0.60  # 10 output tokens at $60,000 per million, input free: what every call below costs
PRICES = {"openai/gpt-cap": {"input": 0, "output": 60_000}}


@pytest.fixture
def prices(tmp_path) -> str:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": PRICES}))
    return str(path)


@pytest.fixture(autouse=True)
def stay_inside_one_day() -> None:
    left = periods(time.time())[0].ends_at - time.time()
    if left < 30:
        time.sleep(left + 1)


def budgeted(task: str, daily_usd: float = 1.0) -> str:
    return json.dumps({"tasks": {task: {"budget": {"daily_usd": daily_usd}}}})


def post(gateway, task: str, model: str = "openai/gpt-cap", headers: dict | None = None, **simulator: object):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 10,
            "simulator": {"prompt_tokens": 10, "tokens": 10, **simulator}}
    return httpx.post(gateway.base_url + "/chat/completions", json=body, timeout=30,
                      headers={"authorization": f"Bearer {GATEWAY_KEY}", "x-inference-task-id": task,
                               **(headers or {})})


def spent(gateway, task: str) -> float:
    return sum(r.cost_usd or 0 for r in gateway.records if r.task_id == task)


@pytest.mark.parametrize("shared", [False, True], ids=["in-memory", "table"])
def test_eight_concurrent_calls_cannot_spend_more_than_about_one_call_over_the_limit(start_gateway, prices,
                                                                                   ledger_env, shared):
    task = f"concurrent-{uuid.uuid4().hex[:8]}"
    env = {"SWITCHBOARD_PRICES": prices, "SWITCHBOARD_ROUTING": budgeted(task, 1.0), **(ledger_env if shared else {})}
    gateway = start_gateway(**env)
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def caller() -> None:
        barrier.wait()
        statuses.append(post(gateway, task, gap_ms=100).status_code)  # about a second each: they overlap

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses).count(200) >= 1 and set(statuses) <= {200, 429}, statuses
    assert spent(gateway, task) <= 1.60 + 1e-9, f"spent ${spent(gateway, task):.2f} against a $1.00 limit"
    refused = [r for r in gateway.records if r.task_id == task and r.status == 429]
    assert refused and all(r.outcome == "budget_exceeded" for r in refused)


def test_once_the_calls_in_flight_end_the_next_call_is_admitted_as_before(start_gateway, prices):
    task = f"sequential-{uuid.uuid4().hex[:8]}"
    gateway = start_gateway(SWITCHBOARD_PRICES=prices, SWITCHBOARD_ROUTING=budgeted(task, 1.0))

    statuses = [post(gateway, task).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]  # $0.00 and $0.60 are under $1.00; $1.20 is not
    assert spent(gateway, task) == pytest.approx(2 * CALL_USD)


def test_an_unpriced_model_under_a_budget_is_refused_and_never_sent(start_gateway, prices, sim_app):
    task = f"unpriced-{uuid.uuid4().hex[:8]}"
    gateway = start_gateway(SWITCHBOARD_PRICES=prices, SWITCHBOARD_ROUTING=budgeted(task, 0.5))

    responses = [post(gateway, task, model="openai/not-in-the-price-list") for _ in range(4)]

    assert [r.status_code for r in responses] == [400] * 4
    error = responses[0].json()["error"]
    assert error["code"] == "model_unpriced" and "SWITCHBOARD_PRICES" in error["message"]
    assert not sim_app.requests, "an unpriced call under a budget reached the upstream"
    assert post(gateway, "no-budget-here", model="openai/not-in-the-price-list").status_code == 200  # unchanged


def test_a_dated_snapshot_is_priced_as_its_base_model_and_counts(start_gateway, prices, sim_app):
    task = f"dated-{uuid.uuid4().hex[:8]}"
    gateway = start_gateway(SWITCHBOARD_PRICES=prices, SWITCHBOARD_ROUTING=budgeted(task, 1.0))

    statuses = [post(gateway, task, model="openai/gpt-cap-2025-04-14").status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    record = gateway.records[0]
    assert record.model == "gpt-cap-2025-04-14" and record.priced_as == "openai/gpt-cap"
    assert record.cost_usd == pytest.approx(CALL_USD) and not record.cost_estimated
    assert [body["model"] for body in sim_app.requests] == ["gpt-cap-2025-04-14"] * 2


def test_a_custom_route_to_an_official_host_is_priced_as_that_provider(start_gateway, prices, monkeypatch):
    """x-inference-provider-url naming OpenAI's host is OpenAI's prices (127.0.0.2 stands in for api.openai.com)."""
    official = BackgroundServer(SimulatorApp(Script()), host="127.0.0.2").start()
    try:
        monkeypatch.setitem(OFFICIAL_HOSTS, "127.0.0.2", "openai")
        task = f"custom-{uuid.uuid4().hex[:8]}"
        gateway = start_gateway(SWITCHBOARD_PRICES=prices, SWITCHBOARD_ROUTING=budgeted(task, 1.0),
                                SWITCHBOARD_ALLOWED_PROVIDER_HOSTS=f"127.0.0.2:{official.port}")
        caller = {"x-inference-provider-url": f"http://127.0.0.2:{official.port}",
                  "x-inference-provider-api-key": "sk-caller-own-key-fake-123"}

        statuses = [post(gateway, task, model="gpt-cap", headers=caller).status_code for _ in range(3)]
    finally:
        official.stop()

    assert statuses == [200, 200, 429]
    record = gateway.records[0]
    assert record.provider == "custom" and record.priced_as == "openai/gpt-cap"
    assert record.cost_usd == pytest.approx(CALL_USD)


def test_the_operators_default_price_prices_an_unknown_model_as_an_estimate(start_gateway, prices):
    task = f"default-price-{uuid.uuid4().hex[:8]}"
    gateway = start_gateway(SWITCHBOARD_PRICES=prices, SWITCHBOARD_ROUTING=budgeted(task, 1.0),
                            SWITCHBOARD_DEFAULT_PRICE="0,60000")

    statuses = [post(gateway, task, model="openai/brand-new-model").status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    record = gateway.records[0]
    assert record.priced_as == "default" and record.cost_estimated and record.cost_usd == pytest.approx(CALL_USD)


def test_a_failing_budget_check_refuses_the_call_when_budgets_fail_closed(start_gateway, prices, ledger_env, sim_app):
    task = f"closed-{uuid.uuid4().hex[:8]}"
    gateway = start_gateway(SWITCHBOARD_PRICES=prices, SWITCHBOARD_ROUTING=budgeted(task, 1.0),
                            SWITCHBOARD_BUDGET_ON_ERROR="closed", **ledger_env)

    def unreachable(line, usd, minute):
        raise ConnectionError("no route to DynamoDB (simulated)")

    gateway.server.app.state.gateway.budgets.counters.reserve = unreachable
    response = post(gateway, task)

    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "budget_unavailable"
    record = gateway.records[-1]
    assert record.status == 503 and record.outcome == "budget_unavailable"
