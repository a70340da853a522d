"""The dashboard in headless Chromium against a gateway on real sockets, seeded through the OpenAI SDK.

The page's figures are checked against the ledger's own answers (/v1/usage, /v1/calls, /v1/budgets, read
with httpx beside the browser), and those against the calls the test made. Screenshots land in
tests/browser/artifacts/.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal

import httpx
import openai
import pytest

from switchboard.formats.chat_completions import prompt_version
from tests.browser.conftest import screenshot
from tests.browser.seeding import fresh_table, store_for, synthetic_calls, write_calls
from tests.conftest import ADMIN_KEY, GATEWAY_KEY

SUPPORT_PROMPT = "You are the support line of Acme Energy. Answer in one short sentence."
BOOKING_PROMPT = "You book appointments for Acme Clinics. Repeat the date back to the caller."
BOOKING_TOOLS = [{"type": "function", "function": {
    "name": "book_slot", "description": "Book an appointment slot.",
    "parameters": {"type": "object", "properties": {"date": {"type": "string"}}, "required": ["date"]}}}]
CALLS_SEEDED = 7
# Reads Chart.js's own data for a canvas: what the chart draws.
CHART_DATA = """id => { const chart = Chart.getChart(id);
  return {labels: chart.data.labels, datasets: chart.data.datasets.map(d => ({label: d.label, data: d.data}))}; }"""
WATCH_THE_PAGE = """window.__cspViolations = [];
document.addEventListener("securitypolicyviolation",
  e => window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI));"""


# -- the page's formatting, restated: a figure on the page must be the API's figure, shown this way ---------


def to_fixed(value: float, places: int) -> str:
    """JavaScript's toFixed: an exact tie rounds up (Python's format rounds it to even: 4.25 ms is 4.2, not 4.3)."""
    return str(Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def usd(value: float | None) -> str:
    return "–" if value is None else f"${to_fixed(value, 6)}"


def millis(value: float | None) -> str:
    return "–" if value is None else f"{to_fixed(value, 1)} ms"


def when(iso: str | None) -> str:
    return "–" if not iso else iso.replace("T", " ").split(".")[0].removesuffix("Z")


def attempts_text(attempts: list[dict]) -> str:
    names = [f"{a['provider']}/{a['model']}" for a in attempts]
    steps = [f"{n} ok" if a["outcome"] == "ok" else f"{n} {a['outcome']} ({a['status']})"
             for n, a in zip(names, attempts, strict=True)]
    retries = sum(1 for before, after in zip(names, names[1:], strict=False) if before == after)
    fallbacks = len(names) - 1 - retries
    summary = ["1 attempt" if len(names) == 1 else f"{len(names)} attempts"]
    summary += [f"{retries} {'retry' if retries == 1 else 'retries'}"] if retries else []
    summary += [f"{fallbacks} {'fallback' if fallbacks == 1 else 'fallbacks'}"] if fallbacks else []
    return ", ".join(summary) + ": " + " → ".join(steps)


# -- seeding: a few calls under two tasks and two conversations ---------------------------------------------


@pytest.fixture
def own_table(ledger_env) -> Iterator[dict[str, str]]:
    """A table of the test's own: it holds exactly the calls the test made. (The emulation's queries also
    cost in proportion to the whole table, unlike DynamoDB's, so timings are not the rest of the run's.)"""
    with fresh_table(ledger_env) as env:
        yield env


@pytest.fixture
def seeded(start_gateway, own_table) -> dict:
    gateway = start_gateway(**own_table)
    run = uuid.uuid4().hex[:8]
    seed = {"gateway": gateway, "environment": f"browser-{run}", "support": f"support-{run}",
            "booking": f"booking-{run}", "support_conversation": f"conv-support-{run}",
            "booking_conversation": f"conv-booking-{run}"}
    client = gateway.client()

    def call(task: str, conversation: str, system: str, user: str, model: str = "openai/gpt-4.1-mini",
             tools: list | None = None, headers: dict | None = None, **extra) -> None:
        stream = client.chat.completions.create(
            model=model, stream=True, stream_options={"include_usage": True},
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            extra_headers={"x-inference-task-id": task, "x-inference-environment": seed["environment"],
                           "x-inference-metadata-conversation-id": conversation, **(headers or {})},
            **({"tools": tools} if tools else {}), **extra)
        for _ in stream:
            pass

    for turn in ("My bill is high.", "Why?", "Thanks."):
        call(seed["support"], seed["support_conversation"], SUPPORT_PROMPT, turn)
    with pytest.raises(openai.BadRequestError):  # an upstream 400: a call that counts as an error
        call(seed["support"], seed["support_conversation"], SUPPORT_PROMPT, "Hello?", model="openai/fail-400")
    call(seed["booking"], seed["booking_conversation"], BOOKING_PROMPT, "A slot on Monday, please.",
         model="anthropic/claude-haiku-4-5", tools=BOOKING_TOOLS, extra_body={"simulator": {"tool_call": "book_slot"}})
    call(seed["booking"], seed["booking_conversation"], BOOKING_PROMPT, "Monday at ten.", tools=BOOKING_TOOLS,
         model="openai/fail-503", headers={"x-switchboard-fallbacks": "anthropic/claude-haiku-4-5"})
    call(seed["booking"], seed["booking_conversation"], BOOKING_PROMPT, "Thank you.", tools=BOOKING_TOOLS)
    assert len([r for r in gateway.records if r.environment == seed["environment"]]) == CALLS_SEEDED
    return seed


def seed_many_calls(table_env: dict[str, str], count: int) -> str:
    """`count` synthetic calls over twelve tasks, under an environment of their own (returned)."""
    environment = "speed-" + uuid.uuid4().hex[:8]
    write_calls(store_for(table_env), synthetic_calls(count, environment=environment,
                                       tasks=[f"{environment}-task-{n}" for n in range(12)]))
    return environment


def admin_get(gateway, path: str, **params) -> httpx.Response:
    return httpx.get(gateway.base_url + path, params={k: v for k, v in params.items() if v},
                     headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)


# -- driving the page ----------------------------------------------------------------------------------------


def open_dashboard(page, gateway, key: str = ADMIN_KEY) -> None:
    page.add_init_script(WATCH_THE_PAGE)
    page.goto(gateway.url + "/dashboard")
    page.get_by_label("Admin key").fill(key)
    page.get_by_role("button", name="Open dashboard").click()


def wait_until_loaded(page, load: int) -> None:
    page.wait_for_function("load => document.body.dataset.state === 'ready' && document.body.dataset.load === load",
                           arg=str(load), timeout=30_000)


def wait_for_conversation(page, conversation: str) -> None:
    page.wait_for_function("id => document.body.dataset.conversation === id", arg=conversation, timeout=30_000)


def filter_environment(page, environment: str, load: int) -> None:
    page.locator("#filter-environment").fill(environment)
    page.get_by_role("button", name="Apply").click()
    wait_until_loaded(page, load)


def timed_loads(page, gateway, environment: str) -> list[tuple[float, float]]:
    """Open the dashboard, then filter to `environment` and refresh twice: per load, milliseconds in the page
    (window.dashboardRenderMs) and from the click. Shared with make bench (bench/dashboard_render.py)."""
    open_dashboard(page, gateway)
    wait_until_loaded(page, 1)
    page.locator("#filter-environment").fill(environment)
    timings = []
    for load in (2, 3, 4):  # as a user would: look at the page, then filter or refresh
        page.wait_for_function("load => document.body.dataset.conversations === load", arg=str(load - 1),
                               timeout=30_000)
        started = time.perf_counter()
        page.get_by_role("button", name="Apply" if load == 2 else "Refresh").click()
        wait_until_loaded(page, load)
        timings.append((page.evaluate("window.dashboardRenderMs"), (time.perf_counter() - started) * 1000))
    return timings


def table(page, table_id: str) -> list[list[str]]:
    return page.eval_on_selector_all(f"#{table_id} tbody tr",
                                     "rows => rows.map(r => [...r.cells].map(c => c.textContent))")


def page_filters(page, environment: str) -> dict:
    since, until = page.input_value("#filter-since"), page.input_value("#filter-until")
    return {"environment": environment, "since": since + "T00:00:00Z", "until": until + "T23:59:59.999Z"}


# -- the tests -----------------------------------------------------------------------------------------------


def test_the_dashboard_shows_the_ledgers_figures(page, seeded):
    gateway, environment = seeded["gateway"], seeded["environment"]
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    refused: list[str] = []
    page.on("response", lambda response: response.status >= 400 and refused.append(f"{response.status} {response.url}"))
    console_errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
    open_dashboard(page, gateway)
    wait_until_loaded(page, 1)
    filter_environment(page, environment, 2)
    chosen = page_filters(page, environment)

    by_day_model = admin_get(gateway, "/usage", group_by="day,model", **chosen).json()
    by_day = admin_get(gateway, "/usage", group_by="day", **chosen).json()
    by_task = admin_get(gateway, "/usage", group_by="task", **chosen).json()
    by_prompt = admin_get(gateway, "/usage", group_by="prompt_version", **chosen).json()
    totals = by_day_model["totals"]

    # The ledger's figures are the calls the test made...
    made = [r for r in gateway.records if r.environment == environment]
    assert totals["calls"] == CALLS_SEEDED and totals["errors"] == 1
    assert totals["cost_usd"] == pytest.approx(sum(r.cost_usd or 0 for r in made), abs=1e-6) and totals["cost_usd"] > 0
    # ...and the page shows exactly the ledger's figures.
    assert [page.text_content(f"#total-{name}") for name in ("calls", "errors", "cost", "ttft-p50", "ttft-p95")] == [
        str(totals["calls"]), str(totals["errors"]), usd(totals["cost_usd"]), millis(totals["ttft_p50_ms"]),
        millis(totals["ttft_p95_ms"])]
    assert page.get_attribute("#source-note", "data-source") == by_day_model["source"] == "calls"  # exact
    assert page.text_content("#source-note") == f"Exact figures, read from the {CALLS_SEEDED} calls in range."

    days = page.evaluate(CHART_DATA, "chart-spend")["labels"]
    spend = page.evaluate(CHART_DATA, "chart-spend")["datasets"]
    expected_spend = {f"{r['provider']}/{r['model']}": {} for r in by_day_model["data"]}
    for row in by_day_model["data"]:
        expected_spend[f"{row['provider']}/{row['model']}"][row["day"]] = row["cost_usd"] or 0
    assert {d["label"]: dict(zip(days, d["data"], strict=True)) for d in spend} == {
        model: {day: pytest.approx(per_day.get(day, 0), abs=1e-9) for day in days}
        for model, per_day in expected_spend.items()}
    assert set(expected_spend) == {"openai/gpt-4.1-mini", "anthropic/claude-haiku-4-5", "openai/fail-400"}

    calls_chart = page.evaluate(CHART_DATA, "chart-calls")
    day_rows = {row["day"]: row for row in by_day["data"]}
    assert calls_chart["datasets"] == [
        {"label": "calls", "data": [day_rows.get(d, {}).get("calls", 0) for d in calls_chart["labels"]]},
        {"label": "errors", "data": [day_rows.get(d, {}).get("errors", 0) for d in calls_chart["labels"]]}]
    assert sum(calls_chart["datasets"][0]["data"]) == CALLS_SEEDED

    assert table(page, "table-models") == [
        [f"{m['provider']}/{m['model']}", str(m["calls"]), str(m["errors"]), usd(m["cost_usd"]),
         millis(m["ttft_p50_ms"]), millis(m["ttft_p95_ms"])] for m in by_day_model["models"]]
    ttft_chart = page.evaluate(CHART_DATA, "chart-ttft")
    assert ttft_chart["datasets"][1]["data"] == [m["ttft_p95_ms"] for m in by_day_model["models"]]

    assert table(page, "table-tasks") == [
        [r["task_id"], str(r["calls"]), str(r["errors"]), usd(r["cost_usd"]), millis(r["ttft_p50_ms"]),
         millis(r["ttft_p95_ms"])] for r in by_task["data"]]
    assert {r["task_id"] for r in by_task["data"]} == {seeded["support"], seeded["booking"]}

    versions = {prompt_version([{"role": "system", "content": SUPPORT_PROMPT}], None),
                prompt_version([{"role": "system", "content": BOOKING_PROMPT}], BOOKING_TOOLS)}
    assert table(page, "table-prompts") == [
        [r["prompt_version"] or "(none)", when(r["first_seen"]), str(r["calls"]), str(r["errors"]),
         usd(r["cost_usd"]), millis(r["ttft_p50_ms"]), millis(r["ttft_p95_ms"])] for r in by_prompt["data"]]
    assert {r["prompt_version"] for r in by_prompt["data"]} == versions

    budgets = admin_get(gateway, "/budgets")
    if budgets.status_code == 404:
        assert table(page, "table-budgets") == []
        assert "404" in page.text_content("#panel-budgets .note")
    else:
        assert table(page, "table-budgets") == [
            [b["scope"], b["name"], b["period"], usd(b["limit_usd"]), usd(b["spent_usd"]) + ("*" if b["incomplete"]
             else ""), usd(b["remaining_usd"]), when(b["period_end"])] for b in budgets.json()["data"]]
    screenshot(page, "dashboard")

    page.wait_for_function("load => document.body.dataset.conversations === load", arg="2")
    page.click(f"#recent-conversations button[data-conversation='{seeded['booking_conversation']}']")
    wait_for_conversation(page, seeded["booking_conversation"])
    turns = sorted(admin_get(gateway, "/calls", conversation_id=seeded["booking_conversation"]).json()["data"],
                   key=lambda call: call["started_at"])
    shown = table(page, "table-turns")
    assert len(shown) == len(turns) == 3
    assert shown == [
        [when(t["time"]), t["task_id"], f"{t['provider']}/{t['model']}", f"{t['status']} {t['outcome']}",
         millis(t["ttft_ms"]), f"{t['prompt_tokens']} / {t['completion_tokens']}", usd(t["cost_usd"]),
         ", ".join(t["tool_calls"]) or "–", attempts_text(t["attempts"]), "yes" if t["buffer_words"] else "no"]
        for t in turns]
    assert shown[0][7] == "book_slot"  # the tool call the model made
    assert "1 fallback:" in shown[1][8] and shown[1][8].endswith("→ anthropic/claude-haiku-4-5 ok")  # 503: moved on
    assert shown[2][8] == "1 attempt: openai/gpt-4.1-mini ok"
    screenshot(page, "conversation")

    # Nothing from another host, no cookies, the key in this tab's session storage only, no CSP complaint.
    assert requests and all(url.startswith(gateway.url + "/") for url in requests), requests
    assert page.context.cookies() == []
    assert page.evaluate("[sessionStorage.length, sessionStorage.getItem('switchboard.adminKey'), "
                         "localStorage.length, document.cookie]") == [1, ADMIN_KEY, 0, ""]
    assert page.evaluate("window.__cspViolations") == []
    assert [line for line in console_errors if not line.startswith("Failed to load resource")] == []
    assert set(refused) == ({f"404 {gateway.base_url}/budgets"} if budgets.status_code == 404 else set()), refused


def test_the_conversation_view_takes_a_typed_id(page, seeded):
    open_dashboard(page, seeded["gateway"])
    wait_until_loaded(page, 1)
    page.locator("#conversation-id").fill(seeded["support_conversation"])
    page.get_by_role("button", name="Show turns").click()
    wait_for_conversation(page, seeded["support_conversation"])
    shown = table(page, "table-turns")
    assert [row[3] for row in shown] == ["200 stop"] * 3 + ["400 http_error"]
    assert all(row[1] == seeded["support"] for row in shown)


@pytest.mark.parametrize("key, status", [("sb-test-not-a-key-fake", 401), (GATEWAY_KEY, 403)])
def test_a_refused_key_is_turned_away(page, gateway, key, status):
    assert httpx.get(gateway.base_url + "/usage", headers={"authorization": f"Bearer {key}"}).status_code == status
    open_dashboard(page, gateway, key=key)
    page.wait_for_function("() => document.body.dataset.state === 'refused'")
    assert page.is_visible("#login") and not page.is_visible("#board")
    assert page.text_content("#login-error").startswith("The gateway refused this key:")
    assert page.evaluate("sessionStorage.getItem('switchboard.adminKey')") is None
    assert page.evaluate("[...document.querySelectorAll('#board tbody tr')].length") == 0
    screenshot(page, f"refused-{status}")


BUDGETS = {"object": "list", "data": [
    {"scope": "task", "name": "support-line", "period": "day", "limit_usd": 5.0, "spent_usd": 4.25,
     "remaining_usd": 0.75, "incomplete": False, "period_end": "2026-12-02T00:00:00.000Z"},
    {"scope": "key", "name": "my-agent", "period": "month", "limit_usd": 300.0, "spent_usd": 12.5,
     "remaining_usd": 287.5, "incomplete": True, "period_end": "2027-01-01T00:00:00.000Z"}]}


def test_the_budgets_panel_draws_spend_against_each_limit(page, start_gateway, own_table):
    """The panel as GET /v1/budgets describes it (answered here by the test, whatever this gateway serves)."""
    gateway = start_gateway(**own_table)
    page.route("**/v1/budgets", lambda route: route.fulfill(status=200, json=BUDGETS))
    open_dashboard(page, gateway)
    wait_until_loaded(page, 1)
    assert table(page, "table-budgets") == [
        ["task", "support-line", "day", "$5.000000", "$4.250000", "$0.750000", "2026-12-02 00:00:00"],
        ["key", "my-agent", "month", "$300.000000", "$12.500000*", "$287.500000", "2027-01-01 00:00:00"]]
    assert page.evaluate(CHART_DATA, "chart-budgets") == {
        "labels": ["task support-line (day)", "key my-agent (month)"],
        "datasets": [{"label": "spent (USD)", "data": [4.25, 12.5]}, {"label": "limit (USD)", "data": [5, 300]}]}
    assert page.text_content("#panel-budgets .note").startswith("* includes unpriced calls")
    screenshot(page, "budgets")


def test_a_gateway_without_a_ledger_says_so(page, gateway):
    """Calls still work without a table; the page then explains why it has no figures."""
    text = "".join(chunk.choices[0].delta.content or "" for chunk in gateway.client().chat.completions.create(
        model="simulator/echo", stream=True, messages=[{"role": "user", "content": "Hi"}]) if chunk.choices)
    assert text.startswith("(simulated)")
    open_dashboard(page, gateway)
    wait_until_loaded(page, 1)
    for panel in ("spend", "calls", "tasks", "prompts"):
        assert "No call ledger is configured" in page.text_content(f"#panel-{panel} .note")
    assert page.text_content("#total-calls") == "–"


def test_ten_thousand_calls_render_from_the_rollups(page, start_gateway, own_table):
    gateway = start_gateway(**own_table)
    environment = seed_many_calls(own_table, 10_000)
    timings = timed_loads(page, gateway, environment)
    screenshot(page, "ten-thousand-calls")
    assert page.text_content("#total-calls") == "10000"
    assert page.get_attribute("#source-note", "data-source") == "rollups"
    assert len(page.evaluate(CHART_DATA, "chart-tasks")["labels"]) == 10  # the top ten of twelve tasks
    print("\n10,000 calls, three loads: " + ", ".join(f"{in_page:.0f} ms in the page ({clicked:.0f} ms from the click)"
                                                   for in_page, clicked in timings))
    # The target, a second, is make bench's figure (bench/dashboard_render.py); ten times it still catches a page
    # gone ten times slower, and no neighbour on a shared machine can fail it.
    assert statistics.median(clicked for _, clicked in timings) < 10_000
