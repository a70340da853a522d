"""The soak's figures: what was sent and how it ended, what was faulted, what was recorded, memory.

`judge` turns them into the verdict (an empty `failures` list passes), `summary` into the table printed
at the end, `to_json` into what `--json` writes.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field

from bench.soak.client import Concurrency, Outcome
from bench.soak.plan import KIND_BY_NAME, KINDS
from bench.stats import percentile

MAX_EXAMPLES = 10


@dataclass
class SoakReport:
    run_id: str
    streams: int
    waves: int
    requests_sent: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    endings: dict[str, int] = field(default_factory=dict)
    upstream_faults: int = 0  # requests planned with a 5xx, a cut or a slow first token
    client_disconnects: int = 0
    dynamodb_requests: int = 0
    dynamodb_faults: dict[str, int] = field(default_factory=dict)  # http_500, delay
    well_formed: int = 0
    malformed: int = 0
    malformed_examples: list[dict] = field(default_factory=list)
    without_request_id: int = 0  # no x-request-id came back, so no record can be looked up (malformed)
    records_in_table: int = 0
    records_in_log: int = 0
    records_missing: int = 0
    records_duplicated: int = 0
    duplicates_by_shape: dict[str, int] = field(default_factory=dict)
    duplicates_by_cause: dict[str, int] = field(default_factory=dict)  # "<fallback reason>, PutItem <proxy>"
    dynamodb_pass_ms: dict[str, float] = field(default_factory=dict)  # p50/p95/max of unfaulted requests
    seconds_by_kind: dict[str, dict[str, float]] = field(default_factory=dict)
    statuses_by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    check_seconds: float = 0.0
    record_examples: list[dict] = field(default_factory=list)  # missing and duplicated, with evidence
    record_problems_by_kind: dict[str, int] = field(default_factory=dict)  # "<shape> <request kind>" -> count
    fallback_reasons: dict[str, int] = field(default_factory=dict)
    index_lookups: int = 0  # CallStore.call look-ups made
    index_disagreements: int = 0  # CallStore.call and the scan disagree about an id
    orphan_records: int = 0  # records of this run for request ids no response carried
    record_mismatches: int = 0  # record status disagrees with what the client saw
    mismatch_examples: list[dict] = field(default_factory=list)
    gateway_alive: bool = False
    gateway_error_lines: dict[str, int] = field(default_factory=dict)
    peak_concurrent_requests: int = 0
    peak_concurrent_streams: int = 0
    rss_after_wave_mb: list[float] = field(default_factory=list)
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # gateway, simulator, harness (client+moto+proxy)
    peak_rss_mb: float = 0.0
    rss_growth_mb: float = 0.0
    memory_threshold_mb: float = 20.0
    wave_seconds: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    work_dir: str = ""
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def dynamodb_faults_total(self) -> int:
        return sum(self.dynamodb_faults.values())

    def judge(self, expected_requests: int) -> None:
        checks = [
            (self.requests_sent == expected_requests,
             f"{self.requests_sent} of {expected_requests} requests were sent"),
            (self.malformed == 0, f"{self.malformed} requests ended malformed"),
            (self.records_missing == 0, f"{self.records_missing} requests have no call record"),
            (self.records_duplicated == 0, f"{self.records_duplicated} requests have more than one call record"),
            (self.gateway_alive, "the gateway process died"),
            (self.index_disagreements == 0,
             f"CallStore.call and a table scan disagree about {self.index_disagreements} request ids"),
            (self.rss_growth_mb <= self.memory_threshold_mb,
             f"gateway RSS grew {self.rss_growth_mb:.1f} MB from the first wave to the last "
             f"(threshold {self.memory_threshold_mb:.0f} MB)"),
        ]
        self.failures += [message for passed, message in checks if not passed]

    def to_json(self) -> dict:
        return asdict(self) | {"ok": self.ok, "dynamodb_faults_total": self.dynamodb_faults_total}

    def summary(self) -> str:
        kinds = ", ".join(f"{name} {count}" for name, count in self.by_kind.items())
        rss = self.rss_after_wave_mb
        rows = [
            ("requests sent", f"{self.requests_sent} ({self.waves} waves x {self.streams} concurrent streams)"),
            ("  by kind", kinds),
            ("peak concurrency", f"{self.peak_concurrent_requests} requests in flight, "
                                 f"{self.peak_concurrent_streams} streams open"),
            ("faults injected upstream", f"{self.upstream_faults} (+ {self.client_disconnects} client disconnects)"),
            ("faults injected in DynamoDB", f"{self.dynamodb_faults_total} of {self.dynamodb_requests} requests "
                                            f"({self.dynamodb_faults.get('http_500', 0)} HTTP 500, "
                                            f"{self.dynamodb_faults.get('delay', 0)} stalled, "
                                            f"{self.dynamodb_faults.get('down_for_record', 0)} writes of records "
                                            "DynamoDB refused every time)"),
            ("statuses", ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))),
            ("endings", ", ".join(f"{k}: {v}" for k, v in sorted(self.endings.items()))),
            ("  by kind", "; ".join(f"{k}: " + ", ".join(f"{e} {n}" for e, n in sorted(v.items()))
                                    for k, v in self.statuses_by_kind.items())),
            ("well-formed endings", f"{self.well_formed} of {self.requests_sent} (malformed {self.malformed})"),
            ("records in table", str(self.records_in_table)),
            ("records in fallback log", f"{self.records_in_log}  reasons: "
                                        + (", ".join(f"{k} {v}" for k, v in self.fallback_reasons.items()) or "-")),
            ("records missing", str(self.records_missing)),
            ("records duplicated", f"{self.records_duplicated}  "
                                   + (", ".join(f"{k} {v}" for k, v in self.duplicates_by_shape.items()) or "")),
            ("  duplicates by cause", ", ".join(f"[{k}] {v}" for k, v in self.duplicates_by_cause.items()) or "-"),
            ("  missing/duplicated by kind", ", ".join(f"{k} {v}" for k, v in self.record_problems_by_kind.items())
             or "-"),
            ("orphan records", str(self.orphan_records)),
            ("CallStore.call look-ups", f"{self.index_lookups} (disagreeing with the scan: "
                                        f"{self.index_disagreements})"),
            ("record/response mismatches", str(self.record_mismatches)),
            ("gateway alive at the end", "yes" if self.gateway_alive else "NO"),
            ("gateway error log lines", ", ".join(f"{k} {v}" for k, v in self.gateway_error_lines.items()) or "0"),
            ("peak RSS (gateway)", f"{self.peak_rss_mb:.1f} MB"),
            ("RSS after wave 1 / last", f"{rss[0]:.1f} MB / {rss[-1]:.1f} MB (growth {self.rss_growth_mb:+.1f} MB)"
             if rss else "-"),
            ("RSS after each wave", " ".join(f"{v:.1f}" for v in rss)),
            ("wave durations", " ".join(f"{s:.2f}s" for s in self.wave_seconds)),
            ("request ms by kind", "; ".join(f"{k} p50 {v.get('p50')} p95 {v.get('p95')} max {v.get('max')}"
                                             for k, v in self.seconds_by_kind.items() if v)),
            ("DynamoDB ms, unfaulted", " ".join(f"{k} {v}" for k, v in self.dynamodb_pass_ms.items()) or "-"),
            ("CPU seconds", " ".join(f"{k} {v}" for k, v in self.cpu_seconds.items())
             + f" (on {os.cpu_count()} cores)"),
            ("duration", f"{self.duration_s:.1f} s (checking the records: {self.check_seconds:.1f} s)"),
            ("logs", self.work_dir),
            ("verdict", "PASS" if self.ok else "FAIL: " + "; ".join(self.failures)),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"switchboard soak {self.run_id}", "-" * (width + 60)]
        lines += [f"{name.ljust(width)}  {value}" for name, value in rows]
        for title, examples in (("malformed", self.malformed_examples), ("records", self.record_examples),
                                ("mismatches", self.mismatch_examples)):
            for example in examples:
                lines.append(f"  {title}: {json.dumps(example, default=str)[:400]}")
        return "\n".join(lines)


def summarize_outcomes(report: SoakReport, outcomes: list[Outcome], concurrency: Concurrency) -> None:
    report.requests_sent = len(outcomes)
    report.by_kind = {kind.name: sum(1 for o in outcomes if o.kind == kind.name) for kind in KINDS}
    report.statuses = dict(Counter(str(o.status) for o in outcomes))
    report.statuses_by_kind = {kind.name: dict(Counter(f"{o.status} {o.ending}" for o in outcomes
                                                       if o.kind == kind.name)) for kind in KINDS}
    report.endings = dict(Counter(o.ending for o in outcomes))
    report.upstream_faults = sum(1 for o in outcomes if KIND_BY_NAME[o.kind].upstream_fault)
    report.client_disconnects = report.by_kind.get("client_disconnect", 0)
    report.well_formed = sum(1 for o in outcomes if o.well_formed)
    report.malformed = report.requests_sent - report.well_formed
    report.without_request_id = sum(1 for o in outcomes if not o.request_id)
    report.malformed_examples = [asdict(o) for o in outcomes if not o.well_formed][:MAX_EXAMPLES]
    report.peak_concurrent_requests = concurrency.peak_requests
    report.peak_concurrent_streams = concurrency.peak_streams
    report.seconds_by_kind = {kind.name: percentiles([o.seconds * 1000 for o in outcomes if o.kind == kind.name])
                              for kind in KINDS}


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95 and max, rounded to 0.1 (bench.stats' percentiles); empty for no values."""
    if not values:
        return {}
    return {"p50": round(percentile(values, 50), 1), "p95": round(percentile(values, 95), 1),
            "max": round(max(values), 1)}
