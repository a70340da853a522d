"""Usage reports: totals, one row per model, and rows grouped by day, model, task or prompt version.

Two sources give the same counts. When the selection holds few enough calls, the report reads the calls
themselves: every figure is exact, TTFT percentiles are real observed values and the range is honoured to
the millisecond. Otherwise it sums the per-day rollups: counts, tokens and cost are still exact sums, but
the range widens to whole UTC days and TTFT percentiles are interpolated from histograms.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future
from typing import Any

from switchboard.ledger import schema
from switchboard.ledger.record import DISCONNECTED
from switchboard.ledger.store import day_of, is_prompt_rollup, iso

COUNTERS = ("calls", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens",
            "reasoning_tokens", "unpriced_calls", "ttft_sum_ms", "ttft_count")
GROUPS = ("day", "model", "task", "prompt_version")
# Up to this many calls in the selection, the report reads them (one or two pages of a DynamoDB query, about
# 0.1 s; the embedded emulation takes ~2.5 ms a call) instead of the rollups; above it, the rollups keep the
# answer fast whatever the volume.
EXACT_CALL_LIMIT = 1000


def report(rollups: list[dict[str, Any]]) -> dict[str, Any]:
    """`{"totals": {...}, "models": [{...}, ...]}` from rollup items; `cost_usd` is None when nothing was priced."""
    totals, models = _totals_and_models(rollups, _Tally.add_rollup)
    return {"totals": totals.finish(exact=False), "models": _ranked(t.finish(exact=False) for t in models)}


def parse_group_by(text: str | None) -> tuple[str, ...]:
    """`day,model` -> ("day", "model"). Raises ValueError, saying what is accepted."""
    names = tuple(name.strip() for name in (text or "").split(",") if name.strip())
    unknown = [name for name in names if name not in GROUPS]
    if unknown:
        raise ValueError(f"group_by takes a comma-separated list of {', '.join(GROUPS)}; got '{unknown[0][:40]}'")
    if len(set(names)) != len(names):
        raise ValueError("group_by names a grouping twice")
    if "prompt_version" in names and "model" in names:
        raise ValueError("group_by combines prompt_version with day and task, not with model")
    return names


def usage_report(store: Any, *, task_id: str | None = None, environment: str | None = None,
                 since: float | None = None, until: float | None = None,
                 group_by: tuple[str, ...] = ()) -> dict[str, Any]:
    """The report /v1/usage answers with: totals and models as `report` gives them, plus `data` (one row per
    group) when `group_by` is given, and whether the figures are exact (read from the calls)."""
    rollups = _rollup_items(store, task_id, since, until)
    models = [item for item in rollups if not is_prompt_rollup(item)]
    calls = _calls_if_few(store, models, task_id, since, until)
    exact = calls is not None
    add = _Tally.add_call if exact else _Tally.add_rollup
    items = _in_environment(calls if calls is not None else models, environment)
    totals, per_model = _totals_and_models(items, add)
    result: dict[str, Any] = {
        "exact": exact, "source": "calls" if exact else "rollups", "granularity": "call" if exact else "day (UTC)",
        "totals": totals.finish(exact), "models": _ranked(t.finish(exact) for t in per_model)}
    if group_by:
        if "prompt_version" in group_by and not exact:  # the model rollups do not know the prompt
            items = _in_environment(_prompt_rollups(store, rollups, task_id, since, until), environment)
        result["group_by"] = list(group_by)
        result["data"] = _grouped(store, items, add, group_by, exact)
    return result


def _rollup_items(store: Any, task_id: str | None, since: float | None, until: float | None) -> list[dict[str, Any]]:
    """One query for the rollups of the selection's days, shared by the reports asked for at the same time."""
    days = (day_of(since) if since is not None else None, day_of(until) if until is not None else None)
    return _shared.read((id(store), "rollups", task_id, days), lambda: store.rollup_items(task_id, since, until))


def _prompt_rollups(store: Any, rollups: list[dict[str, Any]], task_id: str | None, since: float | None,
                    until: float | None) -> list[dict[str, Any]]:
    """Prompt rollups live with all tasks' rollups (task in the key): for one task, read those and pick it."""
    if task_id is not None:
        rollups = [item for item in _rollup_items(store, None, since, until) if item.get("task_id") == task_id]
    return [item for item in rollups if is_prompt_rollup(item)]


def _calls_if_few(store: Any, rollups: list[dict[str, Any]], task_id: str | None, since: float | None,
                  until: float | None) -> list[dict[str, Any]] | None:
    """The selection's calls when the rollups count few enough of them; None to report from the rollups."""
    if sum(item.get("calls") or 0 for item in rollups) > EXACT_CALL_LIMIT:
        return None
    days = sorted({item["day"] for item in rollups if item.get("day")})
    return _shared.read((id(store), "calls", task_id, since, until),
                        lambda: store.usage_calls(task_id, since, until, days, EXACT_CALL_LIMIT))


def _in_environment(items: list[dict[str, Any]], environment: str | None) -> list[dict[str, Any]]:
    return items if environment is None else [item for item in items if item.get("environment") == environment]


class _SharedReads:
    """Identical reads that overlap share one. The dashboard asks for several groupings of one selection at
    once; without this each would read the same items. Nothing is kept once a read has finished."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[Hashable, Future] = {}

    def read(self, key: Hashable, fetch: Callable[[], Any]) -> Any:
        with self._lock:
            running = self._running.get(key)
            if running is None:
                mine = self._running[key] = Future()
        if running is not None:
            return running.result()
        try:
            mine.set_result(fetch())
        except BaseException as exc:
            mine.set_exception(exc)
        finally:
            with self._lock:
                del self._running[key]
        return mine.result()


_shared = _SharedReads()


def _totals_and_models(items: Iterable[dict[str, Any]], add) -> tuple[_Tally, list[_Tally]]:
    totals, models = _Tally({}), dict[tuple[str, str], _Tally]()
    for item in items:
        provider, model = item.get("provider") or "none", item.get("model") or "none"
        tally = models.get((provider, model))
        if tally is None:
            tally = models[(provider, model)] = _Tally({"provider": provider, "model": model})
        add(tally, item)
        add(totals, item)
    return totals, list(models.values())


def _grouped(store: Any, items: list[dict[str, Any]], add, group_by: tuple[str, ...],
             exact: bool) -> list[dict[str, Any]]:
    groups: dict[tuple, _Tally] = {}
    for item in items:
        labels = _labels(item, group_by, exact)
        key = tuple(labels.values())
        tally = groups.get(key)
        if tally is None:
            tally = groups[key] = _Tally(labels)
        add(tally, item)
    if "prompt_version" in group_by:
        _first_seen(store, groups.values())
    rows = [tally.finish(exact) for tally in groups.values()]
    if "day" in group_by:
        return sorted(_ranked(rows), key=lambda row: row["day"])  # stable: by cost within a day
    return _ranked(rows)


def _labels(item: dict[str, Any], group_by: tuple[str, ...], exact: bool) -> dict[str, Any]:
    labels: dict[str, Any] = {}
    for name in group_by:
        if name == "day":
            labels["day"] = day_of(item["started_at"]) if exact else item.get("day")
        elif name == "model":
            labels["provider"], labels["model"] = item.get("provider") or "none", item.get("model") or "none"
        elif name == "task":
            labels["task_id"] = item.get("task_id")
        else:
            version = item.get("prompt_version")
            labels["prompt_version"] = None if version in (None, "none") else version
    return labels


def _first_seen(store: Any, tallies: Iterable[_Tally]) -> None:
    """Each version's first call ever, from its first-seen item; the earliest in range where that is missing."""
    tallies = list(tallies)
    versions = sorted({t.labels["prompt_version"] for t in tallies if t.labels["prompt_version"]})
    recorded = store.first_seen(versions) if versions else {}
    for tally in tallies:
        candidates = [t for t in (recorded.get(tally.labels["prompt_version"]), tally.first_seen) if t is not None]
        tally.first_seen = min(candidates) if candidates else None


def _ranked(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (-(r["cost_usd"] or 0), -r["calls"]))


class _Tally:
    """One row's running sums, fed with rollup items or with calls."""

    def __init__(self, labels: dict[str, Any]) -> None:
        self.labels = labels
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.cost_usd: float | None = None
        self.histogram = [0] * (len(schema.TTFT_BUCKETS_MS) + 1)
        self.ttfts: list[float] = []  # exact: every call's TTFT
        self.first_seen: float | None = None

    def add_rollup(self, item: dict[str, Any]) -> None:
        for name in COUNTERS:
            self.counters[name] += item.get(name) or 0
        if item.get("cost_usd") is not None:
            self.cost_usd = (self.cost_usd or 0) + item["cost_usd"]
        histogram = item.get("histogram")
        for index in range(len(self.histogram)):
            self.histogram[index] += (histogram[index] if histogram else item.get(f"h{index}") or 0)
        self._seen(item.get("first_seen"))

    def add_call(self, call: dict[str, Any]) -> None:
        status, cost, ttft = call.get("status") or 0, call.get("cost_usd"), call.get("ttft_ms")
        self.counters["calls"] += 1
        self.counters["errors"] += int(status >= 400 or call.get("outcome") == DISCONNECTED)
        for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens"):
            self.counters[name] += call.get(name) or 0
        if cost is not None:
            self.cost_usd = (self.cost_usd or 0) + cost
        elif status < 400:
            self.counters["unpriced_calls"] += 1
        if ttft is not None:
            self.counters["ttft_sum_ms"] += ttft
            self.counters["ttft_count"] += 1
            self.histogram[schema.bucket_index(ttft)] += 1
            self.ttfts.append(ttft)
        self._seen(call.get("started_at"))

    def _seen(self, when: float | None) -> None:
        if when is not None and (self.first_seen is None or when < self.first_seen):
            self.first_seen = when

    def finish(self, exact: bool) -> dict[str, Any]:
        out = {**self.labels, **{k: v for k, v in self.counters.items() if k not in ("ttft_sum_ms", "ttft_count")}}
        count = self.counters["ttft_count"]
        out["cost_usd"] = round(self.cost_usd, 6) if self.cost_usd is not None else None
        out["cost_complete"] = self.counters["unpriced_calls"] == 0
        out["ttft_avg_ms"] = round(self.counters["ttft_sum_ms"] / count, 1) if count else None
        if exact:
            ordered = sorted(self.ttfts)
            out["ttft_p50_ms"], out["ttft_p95_ms"] = nearest_rank(ordered, 0.50), nearest_rank(ordered, 0.95)
        else:
            out["ttft_p50_ms"], out["ttft_p95_ms"] = percentile(self.histogram, 0.50), percentile(self.histogram, 0.95)
        out["histogram"] = self.histogram
        if "prompt_version" in self.labels:
            out["first_seen"] = iso(self.first_seen) if self.first_seen is not None else None
        return out


def nearest_rank(ordered: list[float], q: float) -> float | None:
    """The q-th percentile of sorted values by nearest rank: always a TTFT some call really had."""
    if not ordered:
        return None
    return ordered[max(math.ceil(q * len(ordered)), 1) - 1]


def percentile(histogram: list[int], q: float) -> float | None:
    """Linear interpolation inside the bucket that holds the q-th call; None without data."""
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(histogram):
        if count and seen + count >= rank:
            low = schema.TTFT_BUCKETS_MS[index - 1] if index else 0
            if index >= len(schema.TTFT_BUCKETS_MS):
                return float(low)  # open-ended top bucket: report its lower bound
            high = schema.TTFT_BUCKETS_MS[index]
            return round(low + (high - low) * max(rank - seen, 0) / count, 1)
        seen += count
    return float(schema.TTFT_BUCKETS_MS[-1])
