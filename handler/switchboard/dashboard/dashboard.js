// switchboard's dashboard: reads the admin API with a key kept in this tab only, and draws what it finds.
// Every value from the API reaches the page as text (textContent) or on a canvas: task names, conversation
// ids and metadata come from callers, so none of it is ever parsed as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "switchboard.adminKey";
  const PALETTE = ["#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777",
    "#4b5563", "#65a30d"];
  const TOP_TASKS = 10;
  const RECENT_CONVERSATIONS = 20;
  const charts = {};
  let generation = 0; // a newer load makes the answers of an older one moot
  let loadsFinished = 0; // shown as body[data-load], so a reader (or a test) knows which load it sees

  const $ = (id) => document.getElementById(id);

  // -- formatting: one way to show each kind of figure ---------------------------------------------------

  const usd = (value) => (value === null || value === undefined ? "–" : "$" + value.toFixed(6));
  const millis = (value) => (value === null || value === undefined ? "–" : value.toFixed(1) + " ms");
  const count = (value) => String(value ?? 0);
  const modelName = (row) => `${row.provider}/${row.model}`;
  const versionName = (row) => row.prompt_version ?? "(none)";
  const when = (iso) => (iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "").replace(/Z$/, "") : "–");

  // -- the admin API ---------------------------------------------------------------------------------------

  class Refused extends Error {}

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, params = {}) {
    const url = new URL("v1/" + path, document.baseURI);
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    const response = await fetch(url, {
      headers: { authorization: "Bearer " + sessionStorage.getItem(KEY_STORAGE) },
      credentials: "omit", cache: "no-store", redirect: "error",
    });
    const body = await response.json().catch(() => null);
    const message = body?.error?.message || `${response.status} ${response.statusText}`;
    if (response.status === 401 || response.status === 403) throw new Refused(message);
    if (!response.ok) throw new ApiError(message, response.status);
    return body;
  }

  // -- signing in and out ----------------------------------------------------------------------------------

  function showBoard(signedIn) {
    $("login").hidden = signedIn;
    $("board").hidden = !signedIn;
    $("sign-out").hidden = !signedIn;
    $("refresh").hidden = !signedIn;
  }

  function signIn(event) {
    event.preventDefault();
    const key = $("admin-key").value.trim();
    $("admin-key").value = "";
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    $("login-error").textContent = "";
    load();
  }

  function signOut(reason = "") {
    generation += 1;
    sessionStorage.removeItem(KEY_STORAGE);
    for (const id of Object.keys(charts)) {
      charts[id].destroy();
      delete charts[id];
    }
    document.querySelectorAll("#board tbody").forEach((body) => body.replaceChildren());
    $("login-error").textContent = reason;
    status("");
    showBoard(false);
    document.body.dataset.state = reason ? "refused" : "signed-out";
    $("admin-key").focus();
  }

  function status(text) {
    $("status").textContent = text;
  }

  // -- filters ---------------------------------------------------------------------------------------------

  const isoDay = (date) => date.toISOString().slice(0, 10);

  function defaultRange() {
    const today = new Date();
    $("filter-until").value = isoDay(today);
    $("filter-since").value = isoDay(new Date(today.getTime() - 6 * 86400000));
  }

  function filters() {
    const since = $("filter-since").value;
    const until = $("filter-until").value;
    return {
      task_id: $("filter-task").value.trim(),
      environment: $("filter-environment").value.trim(),
      since: since && since + "T00:00:00Z",
      until: until && until + "T23:59:59.999Z",
      days: daysBetween(since, until),
    };
  }

  function daysBetween(since, until) {
    const days = [];
    for (let day = new Date(since + "T00:00:00Z"); day <= new Date(until + "T00:00:00Z") && days.length < 400;
      day = new Date(day.getTime() + 86400000)) {
      days.push(isoDay(day));
    }
    return days;
  }

  // -- loading ---------------------------------------------------------------------------------------------

  async function load(event) {
    event?.preventDefault();
    const mine = ++generation;
    const started = performance.now();
    const chosen = filters();
    const usage = (groupBy) => api("usage", { task_id: chosen.task_id, environment: chosen.environment,
      since: chosen.since, until: chosen.until, group_by: groupBy });
    showBoard(true);
    document.body.dataset.state = "loading";
    status("Loading…");
    const panel = (id, work) => work.catch((error) => {
      if (error instanceof Refused) throw error;
      note(id, error.message);
    });
    const results = await Promise.allSettled([
      panel("panel-spend", usage("day,model").then((r) => mine === generation && drawSpend(r, chosen))),
      panel("panel-calls", usage("day").then((r) => mine === generation && drawCalls(r, chosen))),
      panel("panel-tasks", usage("task").then((r) => mine === generation && drawTasks(r, chosen))),
      panel("panel-prompts", usage("prompt_version").then((r) => mine === generation && drawPrompts(r))),
      panel("panel-budgets", loadBudgets(mine)),
    ]);
    if (mine !== generation) return;
    const refused = results.find((r) => r.status === "rejected" && r.reason instanceof Refused);
    if (refused) {
      signOut("The gateway refused this key: " + refused.reason.message);
      return;
    }
    const elapsed = performance.now() - started;
    window.dashboardRenderMs = elapsed;
    status(`Loaded in ${Math.round(elapsed)} ms`);
    document.body.dataset.load = String(++loadsFinished);
    document.body.dataset.state = "ready";
    // The figures first; then the latest conversations, which would only compete with them for the ledger.
    panel("panel-conversation", loadConversations(chosen, mine)).catch((error) => {
      if (mine === generation) signOut("The gateway refused this key: " + error.message);
    });
  }

  function note(panelId, text) {
    $(panelId).querySelector(":scope > .note").textContent = text;
  }

  function draw(id, config) {
    charts[id]?.destroy();
    charts[id] = new Chart($(id), {
      ...config,
      options: { animation: false, responsive: true, maintainAspectRatio: false, ...config.options },
    });
  }

  function fillTable(id, rows) {
    $(id).tBodies[0].replaceChildren(...rows.map((cells) => {
      const row = document.createElement("tr");
      for (const cell of cells) {
        const td = document.createElement("td");
        if (cell instanceof Node) td.append(cell);
        else td.textContent = cell;
        row.append(td);
      }
      return row;
    }));
  }

  const colour = (index) => PALETTE[index % PALETTE.length];

  // -- panels ----------------------------------------------------------------------------------------------

  function drawSpend(report, chosen) {
    const totals = report.totals;
    $("total-calls").textContent = count(totals.calls);
    $("total-errors").textContent = count(totals.errors);
    $("total-cost").textContent = usd(totals.cost_usd) + (totals.cost_complete ? "" : "*");
    $("total-ttft-p50").textContent = millis(totals.ttft_p50_ms);
    $("total-ttft-p95").textContent = millis(totals.ttft_p95_ms);
    $("source-note").textContent = report.exact
      ? `Exact figures, read from the ${totals.calls} calls in range.`
      : "From the daily rollups: whole UTC days, TTFT percentiles interpolated from histograms.";
    $("source-note").dataset.source = report.source;

    const models = [...new Set(report.data.map(modelName))];
    draw("chart-spend", {
      type: "bar",
      data: {
        labels: chosen.days,
        datasets: models.map((model, index) => ({
          label: model, backgroundColor: colour(index),
          data: chosen.days.map((day) => report.data.filter((r) => r.day === day && modelName(r) === model)
            .reduce((sum, r) => sum + (r.cost_usd || 0), 0)),
        })),
      },
      options: { scales: { x: { stacked: true }, y: { stacked: true, title: { display: true, text: "USD" } } } },
    });
    note("panel-spend", totals.cost_complete ? "" : "* some calls have no price: the cost covers the priced ones.");
    drawModels(report.models);
  }

  function drawModels(models) {
    draw("chart-ttft", {
      type: "bar",
      data: {
        labels: models.map(modelName),
        datasets: [
          { label: "p50", backgroundColor: colour(0), data: models.map((m) => m.ttft_p50_ms) },
          { label: "p95", backgroundColor: colour(1), data: models.map((m) => m.ttft_p95_ms) },
        ],
      },
      options: { scales: { y: { title: { display: true, text: "ms to first token" } } } },
    });
    fillTable("table-models", models.map((m) => [modelName(m), count(m.calls), count(m.errors), usd(m.cost_usd),
      millis(m.ttft_p50_ms), millis(m.ttft_p95_ms)]));
    note("panel-ttft", models.length ? "" : "No calls in range.");
  }

  function drawCalls(report, chosen) {
    const byDay = new Map(report.data.map((row) => [row.day, row]));
    draw("chart-calls", {
      type: "bar",
      data: {
        labels: chosen.days,
        datasets: [
          { label: "calls", backgroundColor: colour(0), data: chosen.days.map((d) => byDay.get(d)?.calls ?? 0) },
          { label: "errors", backgroundColor: colour(4), data: chosen.days.map((d) => byDay.get(d)?.errors ?? 0) },
        ],
      },
    });
    note("panel-calls", report.data.length ? "" : "No calls in range.");
  }

  function drawTasks(report, chosen) {
    const top = report.data.slice(0, TOP_TASKS);
    draw("chart-tasks", {
      type: "bar",
      data: {
        labels: top.map((row) => row.task_id),
        datasets: [{ label: "cost (USD)", backgroundColor: colour(2), data: top.map((row) => row.cost_usd || 0) }],
      },
      options: { indexAxis: "y" },
    });
    fillTable("table-tasks", top.map((row) => [row.task_id, count(row.calls), count(row.errors), usd(row.cost_usd),
      millis(row.ttft_p50_ms), millis(row.ttft_p95_ms)]));
    const more = report.data.length - top.length;
    note("panel-tasks", more > 0 ? `and ${more} more tasks` : report.data.length ? "" : "No calls in range.");
    if (!chosen.task_id) {
      $("task-names").replaceChildren(...report.data.map((row) => new Option(row.task_id)));
    }
  }

  function drawPrompts(report) {
    const rows = report.data;
    draw("chart-prompts", {
      type: "bar",
      data: {
        labels: rows.map(versionName),
        datasets: [
          { label: "cost (USD)", backgroundColor: colour(3), data: rows.map((r) => r.cost_usd || 0), yAxisID: "cost" },
          { label: "TTFT p50", type: "line", borderColor: colour(0), backgroundColor: colour(0),
            data: rows.map((r) => r.ttft_p50_ms), yAxisID: "ttft" },
          { label: "TTFT p95", type: "line", borderColor: colour(1), backgroundColor: colour(1),
            data: rows.map((r) => r.ttft_p95_ms), yAxisID: "ttft" },
        ],
      },
      options: {
        scales: {
          cost: { position: "left", title: { display: true, text: "USD" } },
          ttft: { position: "right", title: { display: true, text: "ms" }, grid: { drawOnChartArea: false } },
        },
      },
    });
    fillTable("table-prompts", rows.map((r) => [versionName(r), when(r.first_seen), count(r.calls), count(r.errors),
      usd(r.cost_usd), millis(r.ttft_p50_ms), millis(r.ttft_p95_ms)]));
    note("panel-prompts", rows.length ? "First seen: the version's first call this ledger holds." : "No calls in range.");
  }

  async function loadBudgets(mine) {
    let budgets;
    try {
      budgets = (await api("budgets")).data;
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
      if (mine !== generation) return;
      draw("chart-budgets", { type: "bar", data: { labels: [], datasets: [] } });
      fillTable("table-budgets", []);
      note("panel-budgets", "This gateway has no budgets endpoint (GET /v1/budgets answered 404).");
      return;
    }
    if (mine !== generation) return;
    const label = (b) => `${b.scope} ${b.name} (${b.period})`;
    draw("chart-budgets", {
      type: "bar",
      data: {
        labels: budgets.map(label),
        datasets: [
          { label: "spent (USD)", backgroundColor: colour(4), data: budgets.map((b) => b.spent_usd) },
          { label: "limit (USD)", backgroundColor: colour(8), data: budgets.map((b) => b.limit_usd) },
        ],
      },
      options: { indexAxis: "y" },
    });
    fillTable("table-budgets", budgets.map((b) => [b.scope, b.name, b.period, usd(b.limit_usd),
      usd(b.spent_usd) + (b.incomplete ? "*" : ""), usd(b.remaining_usd), when(b.period_end)]));
    note("panel-budgets", !budgets.length ? "No budgets are set."
      : (budgets.some((b) => b.incomplete) ? "* includes unpriced calls, counted as $0. " : "")
        + "Budgets count the current day or month, whatever the filters.");
  }

  // -- conversations ---------------------------------------------------------------------------------------

  const conversationOf = (call) => call.metadata?.["conversation-id"] ?? call.metadata?.conversation_id ?? null;

  async function loadConversations(chosen, mine) {
    const calls = (await api("calls", { task_id: chosen.task_id, since: chosen.since, until: chosen.until,
      limit: 200 })).data;
    if (mine !== generation) return;
    const seen = new Map();
    for (const call of calls) {
      const id = conversationOf(call);
      if (id && (!chosen.environment || call.environment === chosen.environment) && !seen.has(id)) {
        seen.set(id, call);
      }
    }
    $("recent-conversations").replaceChildren(...[...seen.keys()].slice(0, RECENT_CONVERSATIONS).map((id) => {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "chip";
      chip.textContent = id;
      chip.dataset.conversation = id;
      chip.addEventListener("click", () => showConversation(id));
      return chip;
    }));
    note("panel-conversation", seen.size ? "" : "No conversations among the latest calls in range.");
    document.body.dataset.conversations = String(loadsFinished);
  }

  async function showConversation(id) {
    $("conversation-id").value = id;
    document.body.dataset.conversation = "loading";
    try {
      const turns = (await api("calls", { conversation_id: id, limit: 1000 })).data
        .sort((a, b) => a.started_at - b.started_at);
      fillTable("table-turns", turns.map(turnCells));
      note("panel-conversation", turns.length ? `${turns.length} turns in conversation ${id}.`
        : `No calls recorded for conversation ${id}.`);
    } catch (error) {
      if (error instanceof Refused) {
        signOut("The gateway refused this key: " + error.message);
        return;
      }
      note("panel-conversation", error.message);
    }
    document.body.dataset.conversation = id;
  }

  function turnCells(call) {
    return [when(call.time), call.task_id, `${call.provider ?? "none"}/${call.model ?? "none"}`,
      `${call.status} ${call.outcome}`, millis(call.ttft_ms), `${call.prompt_tokens ?? "–"} / ${call.completion_tokens ?? "–"}`,
      usd(call.cost_usd), call.tool_calls?.length ? call.tool_calls.join(", ") : "–",
      attemptsText(call.attempts || []) + (call.budget_downgraded ? " (over budget: downgraded)" : ""),
      call.buffer_words ? "yes" : "no"];
  }

  // "3 attempts, 1 retry, 1 fallback: a/x timeout (504) → a/x timeout (504) → b/y ok": a retry asks the same
  // model again, a fallback moves to another.
  function attemptsText(attempts) {
    if (!attempts.length) return "–";
    const name = (a) => `${a.provider}/${a.model}`;
    const steps = attempts.map((a) => `${name(a)} ${a.outcome === "ok" ? "ok" : `${a.outcome} (${a.status})`}`);
    const moves = attempts.slice(1).map((a, i) => name(a) === name(attempts[i]));
    const retries = moves.filter(Boolean).length;
    const fallbacks = moves.length - retries;
    const summary = [attempts.length === 1 ? "1 attempt" : `${attempts.length} attempts`];
    if (retries) summary.push(retries === 1 ? "1 retry" : `${retries} retries`);
    if (fallbacks) summary.push(fallbacks === 1 ? "1 fallback" : `${fallbacks} fallbacks`);
    return `${summary.join(", ")}: ${steps.join(" → ")}`;
  }

  // -- start -----------------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    defaultRange();
    $("login-form").addEventListener("submit", signIn);
    $("filters").addEventListener("submit", load);
    $("refresh").addEventListener("click", () => load());
    $("sign-out").addEventListener("click", () => signOut());
    $("conversation-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = $("conversation-id").value.trim();
      if (id) showConversation(id);
    });
    if (sessionStorage.getItem(KEY_STORAGE)) load();
    else showBoard(false);
  });
})();
