"""The harness's pure parts: percentiles, the SSE stream watchers that clock TTFT, import times, the targets.

Nothing here touches a socket or a clock, so tests/unit/test_bench_stats.py can check it all quickly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PERCENTILES = (50, 90, 99)
PACKAGE_LIMIT_MB = 30.0  # function + layer unzipped (tests/infra/test_build.py agrees)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated linearly between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def summarize(values: Sequence[float]) -> dict[str, float | int]:
    """n, p50/p90/p99, mean, min and max of `values` (empty: just n = 0)."""
    if not values:
        return {"n": 0}
    summary: dict[str, float | int] = {"n": len(values)}
    for q in PERCENTILES:
        summary[f"p{q}"] = percentile(values, q)
    summary.update(mean=sum(values) / len(values), min=min(values), max=max(values))
    return summary


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals open at one moment (how many streams really ran at once)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                   key=lambda edge: (edge[0], edge[1]))
    open_now = peak = 0
    for _, step in edges:
        open_now += step
        peak = max(peak, open_now)
    return peak


class _SseWatcher:
    """Reads a server-sent event byte stream as it arrives, in chunks split anywhere; each complete event's
    JSON goes to `_event`. Lines may end in LF or CRLF; `event:`, `id:`, `retry:` and comments are skipped
    (every event the clock needs says what it is in its JSON)."""

    def __init__(self) -> None:
        self._pending = b""
        self._data: list[bytes] = []
        self.first_token = False
        self.done = False
        self.content_events = 0
        self.error: str | None = None

    def feed(self, data: bytes) -> None:
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._line(line.removesuffix(b"\r"))

    def _line(self, line: bytes) -> None:
        if not line:
            self._dispatch()
        elif line.startswith(b"data:"):
            value = line[5:]
            self._data.append(value[1:] if value.startswith(b" ") else value)

    def _dispatch(self) -> None:
        if not self._data:
            return
        data, self._data = b"\n".join(self._data), []
        if data == b"[DONE]":
            self._done_marker()
            return
        try:
            event = json.loads(data)
        except ValueError:
            self.error = self.error or "an SSE event that is not JSON"
            return
        if isinstance(event, dict):
            self._event(event)

    def _done_marker(self) -> None:
        self.done = True

    def _event(self, event: dict) -> None:
        raise NotImplementedError

    def _content_token(self) -> None:
        self.content_events += 1
        self.first_token = True


class StreamWatcher(_SseWatcher):
    """OpenAI Chat Completions: `first_token` turns true with the first event whose
    `choices[0].delta.content` is non-empty (what a voice agent can speak), `done` with `data: [DONE]`."""

    def _event(self, event: dict) -> None:
        if "error" in event:
            self.error = self.error or f"error event: {str(event['error'])[:200]}"
        if _content(event):
            self._content_token()


RESPONSES_ENDS = {"response.completed": None, "response.incomplete": "the response ended incomplete",
                  "response.failed": "response.failed"}


class ResponsesWatcher(_SseWatcher):
    """OpenAI Responses: `first_token` with the first non-empty `response.output_text.delta`, `done` with
    `response.completed` (the stream's last event; Responses has no `[DONE]`). `response.failed`,
    `response.incomplete` and `error` events also end the stream, as errors."""

    def _event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "response.output_text.delta":
            if isinstance(event.get("delta"), str) and event["delta"]:
                self._content_token()
        elif kind in RESPONSES_ENDS:
            self.done = True
            if RESPONSES_ENDS[kind]:
                response = event.get("response")
                detail = response.get("error") if isinstance(response, dict) else None
                self.error = self.error or f"{RESPONSES_ENDS[kind]}: {str(detail)[:200]}"
        elif kind == "error":
            self.error = self.error or f"error event: {str(event)[:200]}"

    def _done_marker(self) -> None:
        self.error = self.error or "a Responses stream sent data: [DONE]"


def _content(event: dict) -> str:
    choices = event.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    delta = choices[0].get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) else ""


@dataclass(frozen=True)
class Check:
    """One target of an issue: a measured value against its limit."""

    name: str
    value: float | None  # None: not measured in this run
    limit: float
    unit: str
    at_least: bool = False  # True: the value must reach the limit; False: stay at or under it

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "not measured"}[self.met]


def added(target_ms: float | None, direct_ms: float | None) -> float | None:
    """What a hop adds over going direct (None when either side is missing)."""
    if target_ms is None or direct_ms is None:
        return None
    return target_ms - direct_ms


def ratio(slower_added_ms: float | None, gateway_added_ms: float | None) -> float | None:
    """How many times more a peer adds than the gateway; infinite when the gateway adds nothing measurable."""
    if slower_added_ms is None or gateway_added_ms is None:
        return None
    if gateway_added_ms <= 0:
        return math.inf if slower_added_ms > 0 else None
    return slower_added_ms / gateway_added_ms


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float | None:
    """median(numerator) / median(denominator): how many times longer one app takes than the other (None when
    either has no trials or the denominator's median is not positive)."""
    if not numerator or not denominator:
        return None
    below = median(denominator)
    return median(numerator) / below if below > 0 else None


def evaluate(measured: dict[str, float | None]) -> list[Check]:
    """The issue's targets against `measured` (keys below; a missing key means not measured).

    Overhead is judged on `switchboard serve` ("gateway"); the Lambda-shaped process ("gw-asgi") is
    judged too, when measured, since that is what runs in production.
    """
    get = measured.get
    overhead = [
        Check("gateway added TTFT p50 at c=1", get("gateway_added_ttft_p50_ms_c1"), 1.0, "ms"),
        Check("gateway added TTFT p50 at c=10", get("gateway_added_ttft_p50_ms_c10"), 10.0, "ms"),
    ]
    # Issue 15, on the deployed shape: added TTFT, and CPU per call against BENCH_COMPARE_TREE's (the code before).
    for c, limit in ((1, 0.7), (10, 5.0)):
        overhead.append(Check(f"gw-asgi added TTFT p50 at c={c}", get(f"gw_asgi_added_ttft_p50_ms_c{c}"), limit, "ms"))
    for c in (1, 10):
        overhead.append(Check(f"gw-asgi CPU per call / gw-asgi-base's at c={c}", get(f"gw_asgi_cpu_ratio_c{c}"), 0.5,
                              "x"))
    return overhead + [
        Check("LiteLLM added / gateway added TTFT p50 at c=1", get("litellm_ratio_c1"), 10.0, "x", at_least=True),
        Check("LiteLLM added / gateway added TTFT p50 at c=10", get("litellm_ratio_c10"), 10.0, "x", at_least=True),
        Check("cold start to /health, gateway / bare app (medians)", get("health_ratio"), 1.3, "x"),
        Check("cold start to the first token, gateway / bare FastAPI proxy (medians)",
              get("start_to_first_token_ratio"), 0.85, "x"),
        Check("first chat TTFT minus warm chat TTFT in a fresh process (median)", get("first_minus_warm_ms"),
              100.0, "ms"),
        Check("gateway peak RSS with 200 concurrent streams (as on Lambda)", get("rss_peak_mb"), 150.0, "MB"),
        Check("sam build: function + layer unzipped", get("package_mb"), PACKAGE_LIMIT_MB, "MB"),
    ]


def package_import_ms(importtime_stderr: str, package: str) -> float | None:
    """Milliseconds `package` took to import, from `python -X importtime` output: the cumulative time of
    each `package` / `package.*` entry that no other entry of the package encloses, summed (a submodule
    imported later, from elsewhere, counts too). None when the package was not imported at all."""
    total_us, found = 0, False
    enclosing: list[tuple[int, bool]] = []  # (depth, is the package) of the entries around this one
    for depth, cumulative_us, name in reversed(_importtime_entries(importtime_stderr)):  # parents first
        while enclosing and enclosing[-1][0] >= depth:
            enclosing.pop()
        ours = name == package or name.startswith(package + ".")
        if ours and not any(is_ours for _, is_ours in enclosing):
            total_us += cumulative_us
            found = True
        enclosing.append((depth, ours))
    return total_us / 1000 if found else None


def _importtime_entries(text: str) -> list[tuple[int, int, str]]:
    """(nesting depth, cumulative us, module) per `import time:` line, in printed (children first) order."""
    entries = []
    for line in text.splitlines():
        if not line.startswith("import time:"):
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue  # the header line
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip(" "))) // 2
        entries.append((depth, int(parts[1]), name.strip()))
    return entries


def json_safe(value: object) -> object:
    """`value` with infinities and NaN spelled as strings, so the JSON stays strict."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
