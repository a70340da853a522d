"""Budgets without a gateway: the configuration and its errors, periods, verdicts, counting in memory and
in the embedded table, stored key budgets, and the operator's commands (`keys create/update`, `budgets`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from switchboard import aws
from switchboard.config.budget import is_soft_percent, is_usd_limit
from switchboard.config.routing import routing_config
from switchboard.config.settings import Settings, SettingsError
from switchboard.core.admission import task_budgets
from switchboard.core.runtime import build_gateway
from switchboard.keys.records import parse_gateway_keys
from switchboard.limits.budgets.counters import MemoryCounters, TableCounters
from switchboard.limits.budgets.model import Budget, Scope, budget_lines, parse_budget, periods, usd
from switchboard.limits.budgets.report import configured_scopes, report
from switchboard.limits.budgets.tracker import UNDER, BudgetTracker, Verdict, decide
from switchboard.ops.cli.budgets import INCOMPLETE_NOTE
from switchboard.ops.cli.main import register
from switchboard.ops.secrets_admin import SecretsAdmin
from tests.conftest import EXTRA_SECRETS, LOGS

NOON = datetime(2026, 12, 1, 12, tzinfo=UTC).timestamp()


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def record(cost: float | None, status: int = 200, request_id: str = "req_1", completion_tokens: int | None = 10):
    return SimpleNamespace(request_id=request_id, cost_usd=cost, status=status, completion_tokens=completion_tokens,
                           task_id="t", conversation_id=None)


# -- configuration ------------------------------------------------------------------------------------


def task_budgets_in(routing: dict) -> dict[str, Budget]:
    """The task budgets a gateway reads from this SWITCHBOARD_ROUTING value at start-up (every model priced)."""
    return task_budgets(Settings.from_env({"SWITCHBOARD_ROUTING": json.dumps(routing),
                                           "SWITCHBOARD_DEFAULT_PRICE": "1,2"}))


def test_a_task_budget_is_read_from_the_routing_config():
    routing = {"tasks": {"support-line": {"fallbacks": ["openai/gpt-4.1-mini"], "budget": {
        "daily_usd": 5, "monthly_usd": 100, "soft_percent": 80,
        "on_exceeded": {"model": "groq/llama-3.1-8b-instant"}}}, "plain": {"first_token_timeout_ms": 900}}}
    config = routing_config(json.dumps(routing))

    assert task_budgets_in(routing) == {"support-line": Budget(5.0, 100.0, 80.0, "groq/llama-3.1-8b-instant")}
    assert config.tasks["support-line"].fallbacks == ("openai/gpt-4.1-mini",)  # the rest of the entry stays


@pytest.mark.parametrize(("budget", "message"), [
    ({"daily_usd": -1}, "tasks.t.budget.daily_usd must be a positive number of US dollars, got -1"),
    ({"daily_usd": "5"}, "tasks.t.budget.daily_usd must be a positive number of US dollars, got '5'"),
    ({"daily_usd": True}, "daily_usd must be a positive number"),
    ({"monthly": 100}, "tasks.t.budget has unknown field(s) monthly"),
    ({"soft_percent": 80}, "tasks.t.budget needs daily_usd and/or monthly_usd"),
    ({"daily_usd": 5, "soft_percent": 100}, "soft_percent must be a number between 0 and 100"),
    ({"daily_usd": 5, "on_exceeded": "downgrade"}, 'on_exceeded must be "refuse" or {"model": "provider/model"}'),
    ({"daily_usd": 5, "on_exceeded": {"model": ""}}, "on_exceeded must be"),
    ({"daily_usd": 5, "on_exceeded": {"model": "llama-nowhere"}}, "on_exceeded.model: Unknown model 'llama-nowhere'"),
    ("5 dollars", "tasks.t.budget must be an object"),
])
def test_a_bad_budget_is_a_settings_error_naming_the_field(budget, message):
    with pytest.raises(SettingsError) as error:
        task_budgets_in({"tasks": {"t": {"budget": budget}}})

    assert str(error.value).startswith("SWITCHBOARD_ROUTING: ")
    assert message in str(error.value)


def test_a_budget_reads_back_the_shape_it_is_stored_in():
    stored = {"daily_usd": 5.0, "soft_percent": 80.0, "on_exceeded": {"model": "groq/llama-3.1-8b-instant"}}

    budget = parse_budget(stored, "budget")

    assert budget == Budget(daily_usd=5.0, soft_percent=80.0, downgrade_model="groq/llama-3.1-8b-instant")
    assert budget.config().to_json() == stored
    assert Budget(monthly_usd=3).config().to_json() == {"monthly_usd": 3.0, "on_exceeded": "refuse"}
    assert [is_usd_limit(v) for v in (0.01, 0, -1, 1e12, float("nan"), True)] == [True] + [False] * 5
    assert [is_soft_percent(v) for v in (50, 0, 100)] == [True, False, False]


def test_a_gateway_with_a_bad_budget_does_not_start():
    with pytest.raises(SettingsError, match="unknown field"):  # the settings are refused as they are read
        routing = json.dumps({"tasks": {"t": {"budget": {"daily": 5}}}})
        build_gateway(Settings.from_env({"SWITCHBOARD_ROUTING": routing}))


# -- periods and verdicts -------------------------------------------------------------------------------


@pytest.mark.parametrize(("now", "day_sk", "day_end", "month_sk", "month_end"), [
    ("2026-12-01T12:00:00Z", "DAY#2026-12-01", "2026-12-02T00:00:00Z", "MONTH#2026-12", "2027-01-01T00:00:00Z"),
    ("2026-12-31T23:59:59Z", "DAY#2026-12-31", "2027-01-01T00:00:00Z", "MONTH#2026-12", "2027-01-01T00:00:00Z"),
    ("2028-02-29T00:00:00Z", "DAY#2028-02-29", "2028-03-01T00:00:00Z", "MONTH#2028-02", "2028-03-01T00:00:00Z"),
])
def test_periods_are_utc_days_and_calendar_months(now, day_sk, day_end, month_sk, month_end):
    day, month = periods(epoch(now))

    assert (day.sk, day.ends_at, month.sk, month.ends_at) == (day_sk, epoch(day_end), month_sk, epoch(month_end))


def lines_for(*budgets: tuple[str, str, Budget]):
    return budget_lines([Scope(kind, name, budget) for kind, name, budget in budgets], NOON)


def test_refusing_beats_moving_and_the_longest_wait_names_the_retry():
    lines = lines_for(("task", "voice", Budget(daily_usd=1, downgrade_model="groq/llama-3.1-8b-instant")),
                      ("key", "agent", Budget(daily_usd=1, monthly_usd=10)))
    spent = {line.key: 20.0 for line in lines}

    verdict = decide(lines, spent)
    error = verdict.error(NOON)

    assert verdict.refuses and verdict.line.scope.name == "agent" and verdict.line.period.kind == "month"
    assert (error.status, error.code) == (429, "budget_exceeded")
    assert error.message == ("key 'agent' has spent $20.00 of its $10.00 monthly budget; "
                             "it resets at 2027-01-01T00:00:00Z.")
    assert error.headers["retry-after"] == str(int(epoch("2027-01-01T00:00:00Z") - NOON))


def test_a_downgrade_names_its_model_and_under_budget_is_no_verdict():
    lines = lines_for(("task", "voice", Budget(daily_usd=1, downgrade_model="groq/llama-3.1-8b-instant")))

    assert decide(lines, {lines[0].key: 0.99}) is UNDER
    over = decide(lines, {lines[0].key: 1.0})  # reaching the limit is over it
    assert over.downgrade_model == "groq/llama-3.1-8b-instant" and not over.refuses
    assert decide(lines, {}) is UNDER  # nothing counted yet


def test_dollars_read_as_an_operator_reads_them():
    assert [usd(v) for v in (5.02, 1234.5, 0.05, 0.0512, 0.0)] == ["$5.02", "$1,234.50", "$0.05", "$0.0512", "$0.00"]


# -- counting -------------------------------------------------------------------------------------------


def test_in_memory_the_verdict_is_immediate_and_the_soft_threshold_noted_once():
    tracker = BudgetTracker(MemoryCounters(), clock=lambda: NOON)
    scopes = [Scope("task", "voice", Budget(daily_usd=0.05, soft_percent=50))]

    async def calls() -> list[Verdict]:
        verdicts = []
        for number in range(4):
            check = tracker.admit(f"req_{number}", scopes)
            assert check.pending is None  # nothing to wait for in memory
            verdicts.append(check.known)
            if not check.known.over:
                await tracker.spend(record(0.02, request_id=f"req_{number}"))
        return verdicts

    before = len(LOGS.records_with("budget soft threshold passed"))
    verdicts = asyncio.run(calls())

    assert [v.over for v in verdicts] == [False, False, False, True]
    assert len(LOGS.records_with("budget soft threshold passed")) == before + 1
    assert tracker.held == {"req_3": tracker.held["req_3"]}  # the refused call is counted when its record is


def test_what_a_call_adds_refusals_nothing_unpriced_zero_and_incomplete():
    counters = MemoryCounters()
    tracker = BudgetTracker(counters, clock=lambda: NOON)
    scope = Scope("task", "voice", Budget(monthly_usd=1))
    key = budget_lines([scope], NOON)[0].key

    async def run() -> None:
        for number, (cost, status, tokens) in enumerate([(None, 429, None), (None, 502, None), (0.25, 200, 10),
                                                         (None, 200, 10), (None, 499, 3)]):
            tracker.admit(f"req_{number}", [scope])
            await tracker.spend(record(cost, status, f"req_{number}", tokens))

    asyncio.run(run())
    assert counters.read([key])[key].usd == 0.25
    assert counters.read([key])[key].incomplete  # the unpriced answer and the hang-up mid-answer
    assert tracker.held == {}
    assert tracker.admit("req_free", []) is None  # no budget: nothing held, nothing to check


class Unreachable(MemoryCounters):
    shared = True

    def reserve(self, line, usd, minute):
        raise ConnectionError("no route to DynamoDB")


def test_a_failed_table_check_lets_the_call_through_and_says_so():
    tracker = BudgetTracker(Unreachable(), clock=lambda: NOON)

    async def check() -> Verdict:
        return await tracker.admit("req_1", [Scope("task", "voice", Budget(daily_usd=1))], 0.5).pending

    before = len(LOGS.records_with("budget check failed; the call goes ahead"))
    assert asyncio.run(check()) is UNDER
    assert len(LOGS.records_with("budget check failed; the call goes ahead")) == before + 1
    assert tracker.held["req_1"][0].usd == 0  # nothing was reserved, so nothing is handed back at the end


def test_a_failed_table_check_refuses_the_call_when_budgets_fail_closed():
    tracker = BudgetTracker(Unreachable(), clock=lambda: NOON, on_error="closed")

    async def check() -> Verdict:
        return await tracker.admit("req_1", [Scope("task", "voice", Budget(daily_usd=1))], 0.5).pending

    verdict = asyncio.run(check())
    error = verdict.error()
    assert verdict.refuses and error.status == 503 and error.code == "budget_unavailable"
    assert "SWITCHBOARD_BUDGET_ON_ERROR=closed" in error.message


def test_table_counters_add_across_instances_and_note_once(local_aws):
    settings = Settings.from_env(local_aws.env())
    db = aws.client("dynamodb", settings)
    name = "counted-" + uuid.uuid4().hex[:8]
    now = time.time()
    (line,) = budget_lines([Scope("task", name, Budget(daily_usd=1, soft_percent=10))], now)
    first, second = TableCounters(db, settings.table_name), TableCounters(lambda: db, settings.table_name)

    first.add(line, 0.125, False)
    after = second.add(line, 0.25, True)

    assert after.usd == pytest.approx(0.375) and after.incomplete
    assert first.read([line.key]) == {line.key: after}
    claims = [first.claim(line, "soft"), second.claim(line, "soft"), second.claim(line, "exceeded")]
    assert claims == [True, False, True]  # the second instance finds the soft note taken
    day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    item = db.get_item(TableName=settings.table_name, Key={"pk": {"S": f"BUDGET#task#{name}"},
                                                           "sk": {"S": f"DAY#{day}"}})["Item"]
    assert item["calls"]["N"] == "2" and int(item["expires_at"]["N"]) > periods(now)[0].ends_at
    assert second.read([line.key])[line.key].noted == frozenset({"soft", "exceeded"})


def test_the_report_lists_each_budget_with_spend_remaining_and_reset():
    counters = MemoryCounters()
    scopes = configured_scopes({"voice": Budget(daily_usd=0.05, monthly_usd=1, soft_percent=50)},
                               [SimpleNamespace(name="agent", budget=Budget(monthly_usd=2)),
                                SimpleNamespace(name="plain", budget=None)])
    day_line, month_line, key_line = budget_lines(scopes, NOON)
    counters.add(day_line, 0.03, False)
    counters.add(key_line, 2.5, True)

    rows = report(counters, scopes, NOON)["data"]

    assert [(r["scope"], r["name"], r["period"], r["state"]) for r in rows] == [
        ("task", "voice", "day", "soft"), ("task", "voice", "month", "ok"), ("key", "agent", "month", "exceeded")]
    assert rows[0]["remaining_usd"] == pytest.approx(0.02) and rows[0]["period_ends_at"] == "2026-12-02T00:00:00Z"
    assert rows[0]["resets_in_s"] == 12 * 3600 and rows[1]["spent_usd"] == 0
    assert rows[2]["remaining_usd"] == 0 and rows[2]["incomplete"] is True


# -- stored key budgets ---------------------------------------------------------------------------------


def test_stored_key_budgets_are_parsed_and_a_bad_one_is_ignored_loudly():
    before = len(LOGS.records_with("stored key budget ignored"))
    keys = parse_gateway_keys({"keys": [
        {"name": "good", "sha256": "a" * 64, "rpm": 60, "budget": {"daily_usd": 20, "monthly_usd": 300}},
        {"name": "typo", "sha256": "b" * 64, "budget": {"daily": 20}},
    ]})
    parse_gateway_keys({"keys": [{"name": "typo", "sha256": "b" * 64, "budget": {"daily": 20}}]})  # read again

    assert keys[0].identity().budget == Budget(20.0, 300.0) and keys[0].rpm == 60
    assert keys[1].budget is None and keys[1].name == "typo"  # still a working key
    assert len(LOGS.records_with("stored key budget ignored")) == before + 1  # once, not per request


# -- the operator's commands ------------------------------------------------------------------------------


@pytest.fixture
def aws_env(local_aws, monkeypatch) -> dict[str, str]:
    """The CLI pointed at the embedded stack through the environment, as the gateway's own settings do."""
    for name, value in local_aws.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SWITCHBOARD_ROUTING", raising=False)
    return local_aws.env()


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="switchboard")
    register(parser.add_subparsers(dest="command", required=True))
    capsys.readouterr()
    args = parser.parse_args(argv)
    code = args.handler(args)
    out, err = capsys.readouterr()
    if argv[:2] == ["keys", "create"] and code == 0:
        EXTRA_SECRETS.append(out.strip())
    return code, out, err


def stored_entry(env: dict[str, str], name: str) -> dict:
    settings = Settings.from_env(env)
    admin = SecretsAdmin(aws.client("secretsmanager", settings), settings.provider_keys_secret,
                         settings.gateway_keys_secret)
    return next(k for k in admin.list_keys() if k["name"] == name)


def test_keys_create_stores_the_budget_beside_the_limits(aws_env, capsys):
    name = "budget-cli-" + uuid.uuid4().hex[:8]

    code, out, _ = run(capsys, ["keys", "create", name, "--rpm", "60", "--daily-budget-usd", "20",
                                "--monthly-budget-usd", "300", "--budget-soft-percent", "80"])

    assert code == 0 and out.startswith("sb-")
    entry = stored_entry(aws_env, name)
    assert entry["rpm"] == 60
    assert entry["budget"] == {"daily_usd": 20.0, "monthly_usd": 300.0, "soft_percent": 80.0, "on_exceeded": "refuse"}


def test_keys_update_changes_and_removes_limits(aws_env, capsys):
    name = "budget-upd-" + uuid.uuid4().hex[:8]
    run(capsys, ["keys", "create", name, "--rpm", "60", "--daily-budget-usd", "20"])

    code, _, err = run(capsys, ["keys", "update", name, "--rpm", "none", "--concurrent", "4",
                                "--monthly-budget-usd", "300", "--budget-on-exceeded", "groq/llama-3.1-8b-instant"])

    assert code == 0 and f"updated key '{name}'" in err and "over budget: use groq/llama-3.1-8b-instant" in err
    entry = stored_entry(aws_env, name)
    assert entry["rpm"] is None and entry["concurrent"] == 4
    assert entry["budget"] == {"daily_usd": 20.0, "monthly_usd": 300.0,
                               "on_exceeded": {"model": "groq/llama-3.1-8b-instant"}}
    assert run(capsys, ["keys", "update", name, "--daily-budget-usd", "none", "--monthly-budget-usd", "none"])[0] == 0
    assert stored_entry(aws_env, name)["budget"] is None  # no limit left: no budget


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["--budget-soft-percent", "80"], 2, "a budget needs a daily or monthly limit"),
    ([], 2, "nothing to change"),
])
def test_keys_update_refuses_what_cannot_work(aws_env, capsys, argv, code, message):
    name = "budget-bad-" + uuid.uuid4().hex[:8]
    run(capsys, ["keys", "create", name])

    result = run(capsys, ["keys", "update", name, *argv])

    assert result[0] == code and message in result[2] and "Traceback" not in result[2]


def test_keys_update_of_an_unknown_key_and_a_bad_model_are_one_line_errors(aws_env, capsys):
    assert run(capsys, ["keys", "update", "no-such-key-" + uuid.uuid4().hex[:8], "--rpm", "5"])[0] == 1
    with pytest.raises(SystemExit):
        run(capsys, ["keys", "update", "x", "--budget-on-exceeded", "nowhere-model"])
    assert "neither 'refuse' nor a model" in capsys.readouterr().err


def test_budgets_command_shows_task_and_key_budgets(aws_env, capsys, monkeypatch):
    task, name = "cli-task-" + uuid.uuid4().hex[:8], "cli-key-" + uuid.uuid4().hex[:8]
    run(capsys, ["keys", "create", name, "--monthly-budget-usd", "300"])
    monkeypatch.setenv("SWITCHBOARD_ROUTING", json.dumps({"tasks": {task: {"budget": {"daily_usd": 5}}}}))
    settings = Settings.from_env(aws_env)
    counters = TableCounters(aws.client("dynamodb", settings), settings.table_name)
    (line,) = budget_lines([Scope("task", task, Budget(daily_usd=5))], time.time())
    counters.add(line, 5.02, True)

    code, out, _ = run(capsys, ["budgets", "--json"])
    table_code, table, _ = run(capsys, ["budgets"])

    assert code == 0 and table_code == 0
    rows = {row["name"]: row for row in json.loads(out)["data"]}
    assert rows[task]["spent_usd"] == pytest.approx(5.02) and rows[task]["state"] == "exceeded"
    assert rows[name]["period"] == "month" and rows[name]["limit_usd"] == 300
    task_row = next(row for row in table.splitlines() if task in row).split()
    assert task_row[:3] == ["task", task, "day"] and task_row[4:8] == ["5.000000", "5.020000*", "0.000000", "exceeded"]
    assert INCOMPLETE_NOTE in table


def test_budgets_command_without_budgets_says_how_to_set_one(aws_env, capsys, monkeypatch):
    monkeypatch.setattr(SecretsAdmin, "stored_keys", lambda self: [])

    code, out, err = run(capsys, ["budgets"])

    assert code == 0 and out == "" and "tasks.<task>.budget in SWITCHBOARD_ROUTING" in err


def test_budgets_command_with_a_bad_routing_value_is_a_usage_error(aws_env, capsys):
    code, _, err = run(capsys, ["budgets", "--routing", '{"tasks": {"t": {"budget": {"daily_usd": 0}}}}'])

    assert code == 2 and "tasks.t.budget.daily_usd must be a positive number" in err
