"""Numbers into the report: per-target summaries, the `added` columns (each over its own baseline), CPU per
call, Responses and Bedrock against chat through the same process, the gateway against the floor, cold start
against a bare FastAPI proxy, the targets, the printed tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.load import Results
from bench.stats import PACKAGE_LIMIT_MB, Check, added, evaluate, json_safe, ratio, summarize

DIRECT, GATEWAY, GATEWAY_ASGI, LITELLM = "direct", "gateway", "gw-asgi", "litellm"
GW_RESPONSES, DIRECT_BEDROCK, GW_BEDROCK = "gw-responses", "direct-bedrock", "gw-bedrock"
FLOOR, GW_ASGI_BASE = "floor", "gw-asgi-base"
TARGET_LABELS = {
    DIRECT: "the simulator, no hop in between (CPU: the simulator's own)",
    FLOOR: "a relay that does nothing: raw asyncio sockets, keep-alive both sides, bytes forwarded as they come",
    GW_ASGI_BASE: "the gateway of BENCH_COMPARE_TREE as its handler/run.sh starts it (its own venv and handler/)",
    GATEWAY: "`switchboard serve` as `make run` runs it (embedded moto ledger: each record is written before [DONE])",
    GATEWAY_ASGI: "the deployed shape: handler/run.sh (switchboard.http.serving), no table (records to the log)",
    GW_RESPONSES: "the same gw-asgi process, POST /v1/responses (TTFT: first output_text.delta; total: completed)",
    DIRECT_BEDROCK: "the simulator's ConverseStream, SigV4-signed, no hop (TTFT: first text delta; total: metadata)",
    GW_BEDROCK: "the same gw-asgi process, chat with a bedrock/ model: Converse, SigV4, event stream to the simulator",
    LITELLM: "LiteLLM's proxy, no database",
}
BASELINE_OF = {GW_BEDROCK: DIRECT_BEDROCK}  # what `added` is measured against, when it was measured; else DIRECT
BASELINES = frozenset({DIRECT, DIRECT_BEDROCK})
NAME_WIDTH = 15
CPU_NOTE = ("CPU = utime+stime of the target's server process group (/proc), summed over its batches, per call "
            "sent; the simulator's own for direct")


def load_level(results: Results) -> dict[str, dict]:
    """One concurrency level: per target, TTFT and total summaries in ms, what it adds over direct, and the
    CPU its server spent per call."""
    level: dict[str, dict] = {}
    for name, samples in results.samples.items():
        ok = [s for s in samples if s.ok]
        cpu, upstream_cpu = results.cpu.get(name), results.upstream_cpu.get(name)
        level[name] = {
            "ttft_ms": summarize([s.ttft_s * 1000 for s in ok]),
            "total_ms": summarize([s.total_s * 1000 for s in ok]),
            "requests": len(samples),
            "errors": len(samples) - len(ok),
            "error_examples": sorted({s.error for s in samples if s.error})[:3],
            "content_events_min": min((s.content_events for s in ok), default=0),
            "cpu_ms_per_call": cpu.ms_per_call if cpu else None,
            "cpu": cpu.as_dict() if cpu else None,
            "upstream_cpu_ms_per_call": upstream_cpu.ms_per_call if upstream_cpu else None,
        }
    for name, row in level.items():
        _add_over_baseline(name, row, level)
    _compare_to_chat(level)
    _compare_to_floor(level)
    if LITELLM in level:
        row = level[LITELLM]
        row["added_ttft_ratio_to_gateway"] = ratio(row["added_ttft_p50_ms"],
                                                   level.get(GATEWAY, {}).get("added_ttft_p50_ms"))
        row["added_ttft_ratio_to_gw_asgi"] = ratio(row["added_ttft_p50_ms"],
                                                   level.get(GATEWAY_ASGI, {}).get("added_ttft_p50_ms"))
    return level


def baseline_for(name: str, level: dict[str, dict]) -> str | None:
    """The row `name` is compared to: its own direct baseline when measured, else `direct`; none for baselines
    other than `direct` itself (whose added stays 0, as it always has)."""
    if name == DIRECT_BEDROCK:
        return None
    own = BASELINE_OF.get(name)
    return own if own in level else DIRECT


def _add_over_baseline(name: str, row: dict, level: dict[str, dict]) -> None:
    baseline_name = baseline_for(name, level)
    baseline = level.get(baseline_name or "", {})
    row["baseline"] = baseline_name
    row["added_ttft_p50_ms"] = added(row["ttft_ms"].get("p50"), baseline.get("ttft_ms", {}).get("p50"))
    row["added_total_p50_ms"] = added(row["total_ms"].get("p50"), baseline.get("total_ms", {}).get("p50"))
    row["added_after_first_token_p50_ms"] = added(row["added_total_p50_ms"], row["added_ttft_p50_ms"])


def _compare_to_chat(level: dict[str, dict]) -> None:
    """Responses and Bedrock against plain chat through the same process (gw-asgi), medians of this level."""
    chat = level.get(GATEWAY_ASGI)
    if chat is None:
        return
    if GW_RESPONSES in level:
        row = level[GW_RESPONSES]
        row["ttft_p50_minus_chat_ms"] = added(row["ttft_ms"].get("p50"), chat["ttft_ms"].get("p50"))
        row["total_p50_minus_chat_ms"] = added(row["total_ms"].get("p50"), chat["total_ms"].get("p50"))
    if GW_BEDROCK in level:
        row = level[GW_BEDROCK]
        row["added_ttft_minus_chat_added_ms"] = added(row["added_ttft_p50_ms"], chat["added_ttft_p50_ms"])


def _compare_to_floor(level: dict[str, dict]) -> None:
    """What each gateway costs beyond a relay that does nothing: TTFT p50 and CPU per call over the floor's."""
    floor = level.get(FLOOR)
    if floor is None:
        return
    for name in (GATEWAY_ASGI, GW_ASGI_BASE, GATEWAY):
        if name in level:
            row = level[name]
            row["ttft_p50_minus_floor_ms"] = added(row["ttft_ms"].get("p50"), floor["ttft_ms"].get("p50"))
            row["cpu_ms_per_call_minus_floor"] = added(row["cpu_ms_per_call"], floor["cpu_ms_per_call"])


def raw_samples(results: Results) -> dict[str, dict[str, list]]:
    """Every sample, rounded to the microsecond, for anyone who wants to look further."""
    return {name: {"ttft_ms": [round(s.ttft_s * 1000, 3) if s.ttft_s is not None else None for s in samples],
                   "total_ms": [round(s.total_s * 1000, 3) if s.total_s is not None else None for s in samples]}
            for name, samples in results.samples.items()}


def ratio_of(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else value / base


def measured_values(report: dict) -> dict[str, float | None]:
    """The numbers `evaluate` checks, picked out of the report (missing sections stay missing)."""
    levels = report.get("load", {}).get("levels", {})
    values: dict[str, float | None] = {}
    for c in (1, 10):
        level = levels.get(str(c), {})
        values[f"gateway_added_ttft_p50_ms_c{c}"] = level.get(GATEWAY, {}).get("added_ttft_p50_ms")
        values[f"gw_asgi_added_ttft_p50_ms_c{c}"] = level.get(GATEWAY_ASGI, {}).get("added_ttft_p50_ms")
        values[f"litellm_ratio_c{c}"] = level.get(LITELLM, {}).get("added_ttft_ratio_to_gateway")
        values[f"gw_asgi_floor_ttft_p50_ms_c{c}"] = level.get(FLOOR, {}).get("added_ttft_p50_ms")
        values[f"gw_asgi_cpu_ratio_c{c}"] = ratio_of(level.get(GATEWAY_ASGI, {}).get("cpu_ms_per_call"),
                                                     level.get(GW_ASGI_BASE, {}).get("cpu_ms_per_call"))
    cold = report.get("coldstart") or {}
    values["health_ratio"] = cold.get("health_ratio")
    values["start_to_first_token_ratio"] = cold.get("start_to_first_token_ratio")
    values["first_minus_warm_ms"] = (cold.get("first_minus_warm_ms") or {}).get("median")
    memory = ((report.get("memory") or {}).get(report.get("memory_target_process", "")) or {})
    values["rss_peak_mb"] = memory.get("rss_peak_mb") if memory.get("streams", 0) >= 200 else None  # the target's load
    size = report.get("size") or {}
    values["package_mb"] = size.get("total_mb") if size.get("measured") else None
    return values


def targets(report: dict) -> list[Check]:
    return evaluate(measured_values(report))


def write_json(report: dict, results_dir: Path, stamp: str) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(report), indent=2)
    path = results_dir / f"bench-{stamp}.json"
    path.write_text(text)
    (results_dir / "latest.json").write_text(text)
    return path


# The printed tables.

def _ms(value: float | None, width: int = 7) -> str:
    if value is None:
        return "-".rjust(width)
    return f"{value:{width}.2f}"


def _times(row: dict) -> str:
    """For LiteLLM's rows: how many times the gateways' added TTFT it adds."""
    parts = []
    for key, label in (("added_ttft_ratio_to_gateway", GATEWAY), ("added_ttft_ratio_to_gw_asgi", GATEWAY_ASGI)):
        value = row.get(key)
        if value is not None:
            parts.append(f"{'inf' if math.isinf(value) else f'{value:.1f}'}x {label}")
    return f"({', '.join(parts)})" if parts else ""


LOAD_HEADER = (f"  {'target':<{NAME_WIDTH}}{'TTFT p50':>9}{'p90':>8}{'p99':>8}  {'+TTFT p50':>10}  "
               f"{'CPU ms/call':>11}  {'total p50':>9}{'+total p50':>11}  {'errors':>6}")


def format_load(load: dict, title: str | None = None) -> list[str]:
    """The targets, then one table per concurrency level, then what the gateways add over the floor."""
    meta = load["settings"]
    lines = [title or (f"Streaming: {meta['requests_per_target']} requests per target per level, {meta['tokens']} "
                       "tokens each. Times in ms; added = target p50 - direct p50 (or the baseline noted)."),
             f"  Upstream: {meta.get('upstream', 'first token at once')}; each worker waits "
             f"{meta.get('pause_ms', 0):g} ms between calls. {CPU_NOTE}.",
             *[f"  {name:<{NAME_WIDTH}}{TARGET_LABELS.get(name, '')}" for name in meta["targets"]],
             *[f"  {name:<{NAME_WIDTH}}NOT MEASURED: {reason}" for name, reason in load.get("skipped", {}).items()]]
    for c, level in load["levels"].items():
        lines += ["", f" c={c}", LOAD_HEADER]
        for name in ordered(level):
            lines.append(_load_row(name, level[name]))
        lines += _over_floor(level)
    return lines


TABLE_ORDER = (DIRECT, FLOOR, GATEWAY_ASGI, GW_ASGI_BASE, GW_RESPONSES, GATEWAY, DIRECT_BEDROCK, GW_BEDROCK, LITELLM)


def ordered(level: dict[str, dict]) -> list[str]:
    """Rows in reading order: direct, the floor beside the deployed gateway (and its base), then the rest."""
    known = [name for name in TABLE_ORDER if name in level]
    return known + [name for name in level if name not in known]


def _load_row(name: str, row: dict) -> str:
    ttft, total = row["ttft_ms"], row["total_ms"]
    baseline = name in BASELINES
    return (f"  {name:<{NAME_WIDTH}}{_ms(ttft.get('p50'), 9)}{_ms(ttft.get('p90'), 8)}{_ms(ttft.get('p99'), 8)}  "
            f"{_ms(None if baseline else row['added_ttft_p50_ms'], 10)}  {_ms(row.get('cpu_ms_per_call'), 11)}  "
            f"{_ms(total.get('p50'), 9)}{_ms(None if baseline else row['added_total_p50_ms'], 11)}  "
            f"{row['errors']:>6} {_times(row)}{_against(row)}")


def _over_floor(level: dict[str, dict]) -> list[str]:
    lines = []
    for name in (GATEWAY_ASGI, GW_ASGI_BASE):
        row = level.get(name, {})
        if row.get("ttft_p50_minus_floor_ms") is None:
            continue
        cpu = row.get("cpu_ms_per_call_minus_floor")
        lines.append(f"  {name} over the floor: {_signed(row['ttft_p50_minus_floor_ms'])} ms TTFT p50, "
                     f"{'-' if cpu is None else _signed(cpu)} ms CPU per call")
    return lines


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def _against(row: dict) -> str:
    """Rows compared to something other than `direct` say so."""
    return f"(added over {row['baseline']})" if row.get("baseline") not in (None, DIRECT) else ""


def _more_or_less(difference: float) -> str:
    return f"{abs(difference):.2f} ms {'more' if difference >= 0 else 'less'}"


def format_comparisons(load: dict) -> list[str]:
    """The sentences the Responses and Bedrock targets exist for, per level, from this run's medians."""
    lines = []
    for c, level in load["levels"].items():
        responses, bedrock, chat = level.get(GW_RESPONSES), level.get(GW_BEDROCK), level.get(GATEWAY_ASGI, {})
        if responses and responses.get("total_p50_minus_chat_ms") is not None:
            lines.append(f"  c={c}: Responses adds {_more_or_less(responses['ttft_p50_minus_chat_ms'])} than chat "
                         f"to TTFT (gw-responses p50 {responses['ttft_ms']['p50']:.2f} vs gw-asgi "
                         f"{chat['ttft_ms']['p50']:.2f} ms, same process), "
                         f"{_more_or_less(responses['total_p50_minus_chat_ms'])} to total")
        if bedrock and bedrock.get("added_ttft_minus_chat_added_ms") is not None:
            lines.append(f"  c={c}: Bedrock adds {bedrock['added_ttft_p50_ms']:.2f} ms TTFT over {bedrock['baseline']}"
                         f", chat {chat['added_ttft_p50_ms']:.2f} ms over direct: Bedrock adds "
                         f"{_more_or_less(bedrock['added_ttft_minus_chat_added_ms'])} than chat")
    return lines


def format_tail(load: dict, chunks_after_first: int) -> list[str]:
    """What each hop adds between the first token and [DONE], per chunk, at c=1."""
    level = load["levels"].get("1", {})
    lines = []
    for name in ordered(level):
        after = level[name].get("added_after_first_token_p50_ms")
        if name in BASELINES or after is None:
            continue
        lines.append(f"  after the first token {name} adds {after:.2f} ms over {chunks_after_first} more chunks "
                     f"and {_stream_end(name)} at c=1 (~{after * 1000 / chunks_after_first:.0f} us per chunk, any "
                     "work before it included)")
    return lines


def _stream_end(name: str) -> str:
    return "response.completed" if name == GW_RESPONSES else "[DONE]"


COLD_LABELS = {"bare": "bare FastAPI proxy", "gateway": "gateway", "gateway-base": "gateway (compare tree)"}


def format_coldstart(cold: dict) -> list[str]:
    apps = cold.get("apps", {})
    lines = [f"Cold start: {cold['trials_per_app']} fresh `python -m uvicorn` processes per app, taking turns; "
             "medians in ms (the bare app is the simplest FastAPI proxy of the simulator: aiohttp session in the "
             "lifespan, StreamingResponse).",
             f"  {'app':<24}{'spawn->/health':>15}{'spawn->1st token':>18}{'1st chat TTFT':>15}{'warm TTFT':>11}"
             f"{'1st-warm':>10}"]
    for name, app in apps.items():
        lines.append(f"  {COLD_LABELS.get(name, name):<24}{app['health_ms']['median']:>15.1f}"
                     f"{app['start_to_first_token_ms']['median']:>18.1f}{app['first_chat_ttft_ms']['median']:>15.2f}"
                     f"{app['warm_chat_ttft_ms']['median']:>11.2f}{app['first_minus_warm_ms']['median']:>10.2f}")
    for name, ratios in cold.get("ratios", {}).items():
        lines.append(f"  {COLD_LABELS.get(name, name)} / bare: spawn->first token "
                     f"{_times_of(ratios['start_to_first_token'])} (target <= 0.85), spawn->/health "
                     f"{_times_of(ratios['health'])}")
    for name, app in apps.items():
        lines.append(f"  all trials, {COLD_LABELS.get(name, name)}: /health {_list(app['health_ms']['all'])}; "
                     f"first token {_list(app['start_to_first_token_ms']['all'])}")
    return lines + format_import(cold.get("aiohttp_import"))


def _times_of(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _list(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.0f}" for v in values) + "]"


def format_import(found: dict | None) -> list[str]:
    """Where aiohttp is loaded: by `import switchboard.asgi` (start-up, before /health) or not (a call's path)."""
    if not found:
        return []
    if found.get("error"):
        return [f"  aiohttp import time: not measured ({found['error']})"]
    if found.get("aiohttp_ms") is None:
        total = found.get("total_ms")
        return [f"  `{found['statement']}` takes {total:.1f} ms (-X importtime, once); aiohttp is not part of the "
                "gateway (the upstream hop is providers/transport/)" if total is not None else
                f"  aiohttp is not imported by `{found['statement']}`"]
    return [f"  aiohttp imported during start-up: {found['aiohttp_ms']:.1f} ms of the {found['total_ms']:.1f} ms "
            f"`{found['statement']}` takes (-X importtime, once), before /health answers, not on a call's path"]


def format_memory(memory: dict) -> list[str]:
    lines = []
    for label, row in memory.items():
        lines.append(f"  {label}: peak RSS {row['rss_peak_mb']:.1f} MB (before {row['rss_before_mb']:.1f} MB, "
                     f"VmHWM {row['hwm_mb']:.1f} MB); {row['completed']}/{row['streams']} streams completed, "
                     f"{row['max_in_flight']} at once")
    return lines


def format_dashboard(dashboard: dict) -> list[str]:
    if "skipped" in dashboard:
        return [f"Dashboard render: not measured ({dashboard['skipped']})"]
    render = dashboard.get("render_ms") or {}
    line = (f"Dashboard render of {dashboard.get('calls', '?'):,} calls: median {render.get('median', 0):.0f} ms "
            f"(all: {_list(render.get('all', []))})")
    click = dashboard.get("click_to_render_ms") or {}
    if click.get("median") is not None:
        line += f"; click to render median {click['median']:.0f} ms"
    return [line]


def format_size(size: dict) -> list[str]:
    if not size.get("measured"):
        return [f"Package size: not measured ({size.get('reason')})"]
    return [f"Package size ({size['source']}): function {size['function_bytes'] / 1e6:.2f} MB + layer "
            f"{size['layer_bytes'] / 1e6:.2f} MB = {size['total_mb']:.2f} MB unzipped (limit {PACKAGE_LIMIT_MB:g} MB: "
            "the layer carries uvloop and httptools)"]


def format_targets(checks: list[Check]) -> list[str]:
    lines = ["Targets (issues 6 and 15; the deployed shape is gw-asgi):"]
    for check in checks:
        value = "-" if check.value is None else ("inf" if math.isinf(check.value) else f"{check.value:.2f}")
        bound = ">=" if check.at_least else "<="
        lines.append(f"  {check.verdict:<12} {check.name}: {value} {check.unit} (target {bound} {check.limit:g})")
    return lines


def format_trees(meta: dict) -> list[str]:
    trees = meta.get("trees") or {}
    return [f"  {name}: {tree['root']} at {tree['revision']}" for name, tree in trees.items()]


def format_report(report: dict) -> str:
    meta = report["meta"]
    load_average = ", ".join(f"{x:.2f}" for x in meta.get("load_average_at_start", ()))
    lines = [f"switchboard bench, {meta['started_utc']}: {meta['cpus']} CPUs, Python {meta['python']}, "
             f"run took {meta.get('duration_s', 0):.0f} s (load average at start {load_average})",
             *format_trees(meta), ""]
    if report.get("load"):
        load = report["load"]
        lines += format_load(load) + [""] + format_comparisons(load) + format_tail(load, load["settings"]["tokens"])
        lines += [""]
    if report.get("burst"):
        burst = report["burst"]
        meta_burst = burst["settings"]
        lines += format_load(burst, f"BURST (extra scenario, not the default): the upstream sends all "
                                    f"{meta_burst['tokens']} tokens at once; {meta_burst['requests_per_target']} "
                                    "requests per target per level, interleaved. Times in ms; added = target p50 - "
                                    "direct p50.") + [""]
    if report.get("coldstart"):
        lines += format_coldstart(report["coldstart"]) + [""]
    if report.get("memory"):
        lines += [f"Memory: {report['memory_streams']} concurrent streams (50 tokens, 20 ms apart)"]
        lines += format_memory(report["memory"]) + [""]
    if report.get("dashboard"):
        lines += format_dashboard(report["dashboard"]) + [""]
    if report.get("size"):
        lines += format_size(report["size"]) + [""]
    lines += format_targets(targets(report))
    for failure in report.get("failures", []):
        lines.append(f"HARNESS FAILURE: {failure}")
    return "\n".join(lines)
