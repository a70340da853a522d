"""Usage reports from the per-day rollups: totals and one row per model, TTFT p50/p95 from histograms."""

from __future__ import annotations

from typing import Any

from switchboard.ledger import schema

COUNTERS = ("calls", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens",
            "reasoning_tokens", "unpriced_calls", "ttft_sum_ms", "ttft_count")


def report(rollups: list[dict[str, Any]]) -> dict[str, Any]:
    """`{"totals": {...}, "models": [{...}, ...]}`; `cost_usd` is None when nothing was priced."""
    rows: dict[str, dict[str, Any]] = {}
    for item in rollups:
        key = f"{item.get('provider', 'none')}/{item.get('model', 'none')}"
        row = rows.setdefault(key, _empty(provider=item.get("provider"), model=item.get("model")))
        _add(row, item)
    totals = _empty()
    for row in rows.values():
        _add(totals, row)
    models = sorted((_finish(row) for row in rows.values()), key=lambda r: (-(r["cost_usd"] or 0), -r["calls"]))
    return {"totals": _finish(totals), "models": models}


def _empty(**labels: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict(labels)
    row.update({name: 0 for name in COUNTERS})
    row["cost_usd"] = None
    row["histogram"] = [0] * (len(schema.TTFT_BUCKETS_MS) + 1)
    return row


def _add(row: dict[str, Any], item: dict[str, Any]) -> None:
    for name in COUNTERS:
        row[name] += item.get(name) or 0
    if item.get("cost_usd") is not None:
        row["cost_usd"] = (row["cost_usd"] or 0) + item["cost_usd"]
    histogram = item.get("histogram")
    for index in range(len(row["histogram"])):
        row["histogram"][index] += (histogram[index] if histogram else item.get(f"h{index}") or 0)


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("histogram", "ttft_sum_ms", "ttft_count")}
    count = row["ttft_count"]
    out["ttft_avg_ms"] = round(row["ttft_sum_ms"] / count, 1) if count else None
    out["ttft_p50_ms"] = percentile(row["histogram"], 0.50)
    out["ttft_p95_ms"] = percentile(row["histogram"], 0.95)
    if out["cost_usd"] is not None:
        out["cost_usd"] = round(out["cost_usd"], 6)
    out["cost_complete"] = row["unpriced_calls"] == 0
    out["histogram"] = row["histogram"]
    return out


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
