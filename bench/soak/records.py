"""Checking the records: exactly one call record per request, in the table or in the gateway's log.

The design's promise is "nothing is lost": a record the ledger could not write goes to the log in full
(ledger.writer's FALLBACK_MESSAGE), and a write that lands late supersedes that line (STORED_LATE). So a record
counts once wherever it ended up, and a request with none, or with two, is a failure.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.soak.client import Outcome
from bench.soak.report import MAX_EXAMPLES, SoakReport


@dataclass
class LogScan:
    fallback: Counter[str] = field(default_factory=Counter)  # request id -> fallback lines
    fallback_records: dict[str, dict] = field(default_factory=dict)
    fallback_reason: dict[str, str] = field(default_factory=dict)
    superseded: set[str] = field(default_factory=set)  # fallback lines whose write landed after all
    reasons: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # other ERROR lines and tracebacks, by message
    task_ids: Counter[str] = field(default_factory=Counter)


def scan_gateway_log(path: Path, fallback_message: str, stored_late_message: str) -> LogScan:
    """The gateway's log, line by line: its fallback records, the late writes that supersede them, its errors."""
    scan = LogScan()
    for line in path.read_text(errors="replace").splitlines():
        entry = None
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
        if not isinstance(entry, dict):
            plain = plain_text_problem(line)
            if plain:
                scan.errors[plain] += 1
            continue
        if entry.get("message") == fallback_message:
            request_id = str(entry.get("request_id"))
            scan.fallback[request_id] += 1
            scan.fallback_records[request_id] = entry.get("call_record") or {}
            scan.fallback_reason[request_id] = str(entry.get("reason"))
            scan.reasons[str(entry.get("reason"))] += 1
            scan.task_ids[str(entry.get("task_id"))] += 1
        elif entry.get("message") == stored_late_message:
            scan.superseded.add(str(entry.get("request_id")))
        elif str(entry.get("level", "")).upper() in {"ERROR", "CRITICAL"} or entry.get("exception"):
            scan.errors[str(entry.get("message"))[:80]] += 1
    return scan


def plain_text_problem(line: str) -> str | None:
    """A line the gateway wrote outside its JSON logger that says something went wrong (uvicorn, asyncio)."""
    text = line.strip()
    if text.startswith("ERROR:") or text.startswith("Traceback") or text == "socket.send() raised exception.":
        return text[:80]
    if "Warning:" in text and not text.startswith("RuntimeWarning: Enable tracemalloc"):
        return text.split("Warning:", 1)[0].rsplit(" ", 1)[-1] + "Warning:" + text.split("Warning:", 1)[1][:60]
    return None


def table_counts(dynamodb, table: str, task_id: str) -> tuple[Counter[str], dict[str, dict]]:
    """request id -> call items of this run's task in the table, and each one's status and outcome (one scan)."""
    counts: Counter[str] = Counter()
    items: dict[str, dict] = {}
    pages = dynamodb.get_paginator("scan").paginate(
        TableName=table, FilterExpression="pk = :pk", ProjectionExpression="request_id, #s, outcome",
        ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":pk": {"S": f"TASK#{task_id}"}})
    for page in pages:
        for item in page.get("Items", []):
            request_id = item["request_id"]["S"]
            counts[request_id] += 1
            items[request_id] = {"status": int(item["status"]["N"]) if "status" in item else None,
                                 "outcome": item.get("outcome", {}).get("S")}
    return counts, items


def check_records(report: SoakReport, outcomes: list[Outcome], store, dynamodb, table: str, task_id: str,
                  log: LogScan, put_fault: dict[str, str], index_lookups: int | None = None) -> None:
    """Exactly one record per request id: in the table or in the fallback log.

    One scan of the run's partition counts the table's items per request id (duplicates included).
    `CallStore.call` (the gateway's own by-request index) confirms every id the scan did not find, and
    `index_lookups` of those it did (None: all). moto answers an index query by walking the whole table,
    so looking up every id of a long soak would cost minutes.
    """
    in_table, stored_items = table_counts(dynamodb, table, task_id)
    found_ids = [o.request_id for o in outcomes if o.request_id and o.request_id in in_table]
    sampled = set(found_ids if index_lookups is None or index_lookups >= len(found_ids)
                  else random.Random(0).sample(found_ids, index_lookups))
    seen_ids = set()
    shapes: Counter[str] = Counter()
    causes: Counter[str] = Counter()
    problems_by_kind: Counter[str] = Counter()
    for outcome in outcomes:
        request_id = outcome.request_id
        if not request_id:
            continue  # already malformed: no id to look for
        seen_ids.add(request_id)
        item = None
        if request_id not in in_table or request_id in sampled:
            item = store.call(request_id)
            report.index_lookups += 1
            if bool(item) != (request_id in in_table):
                report.index_disagreements += 1
        stored = max(in_table.get(request_id, 0), 1 if item else 0)
        logged = log.fallback.get(request_id, 0) - (1 if request_id in log.superseded and stored else 0)
        record = item or log.fallback_records.get(request_id) or stored_items.get(request_id) or {}
        if stored + logged == 1:
            if stored:
                report.records_in_table += 1
            else:
                report.records_in_log += 1
            check_consistency(report, outcome, record)
            continue
        shape = "missing" if stored + logged == 0 else "+".join(["table"] * stored + ["log"] * logged)
        shapes[shape] += 1
        if shape == "missing":
            report.records_missing += 1
        else:
            report.records_duplicated += 1
            causes[f"{log.fallback_reason.get(request_id)}, PutItem {put_fault.get(request_id, 'not seen')}"] += 1
        problems_by_kind[f"{shape} {outcome.kind}"] += 1
        if sum(1 for e in report.record_examples if e["shape"] == shape) < MAX_EXAMPLES // 2:
            report.record_examples.append({
                "request_id": request_id, "kind": outcome.kind, "shape": shape, "client_status": outcome.status,
                "ending": outcome.ending, "record_status": record.get("status"), "outcome": record.get("outcome"),
                "attempts": [(a.get("model"), a.get("outcome")) for a in record.get("attempts") or []],
                "fallback_reason": log.fallback_reason.get(request_id),
                "put_item_at_proxy": put_fault.get(request_id)})
    report.duplicates_by_shape = {k: v for k, v in shapes.items() if k != "missing"}
    report.duplicates_by_cause = dict(causes.most_common())
    report.record_problems_by_kind = dict(problems_by_kind.most_common())
    report.orphan_records = len(set(in_table) - seen_ids) + len(
        {rid for rid, rec in log.fallback_records.items() if rec.get("task_id") == task_id} - seen_ids)


def check_consistency(report: SoakReport, outcome: Outcome, record: dict) -> None:
    """The record's status should tell the story the client saw."""
    status = record.get("status")
    expected: Callable[[int], bool]
    if outcome.ending == "disconnected":
        expected = lambda s: s in (200, 499)  # noqa: E731 (a stream can finish before the hang-up lands)
    elif outcome.ending == "error_event":
        expected = lambda s: s >= 400  # noqa: E731
    elif outcome.ending == "done":
        expected = lambda s: s == 200  # noqa: E731
    else:
        expected = lambda s: s == outcome.status  # noqa: E731
    if not isinstance(status, int) or not expected(status):
        report.record_mismatches += 1
        if len(report.mismatch_examples) < MAX_EXAMPLES:
            report.mismatch_examples.append({"request_id": outcome.request_id, "kind": outcome.kind,
                                             "client_status": outcome.status, "ending": outcome.ending,
                                             "record_status": status, "outcome": record.get("outcome")})

