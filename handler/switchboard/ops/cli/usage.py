"""`switchboard usage` and `switchboard calls`: what was called and spent, read from the calls table."""

from __future__ import annotations

import argparse
import json
from typing import Any

from switchboard.ops.cli.tables import count, dollars, millis, table
from switchboard.ops.cli.target import Commands, guarded, note, resolve_target

USAGE_COLUMNS = [("MODEL", "<"), ("CALLS", ">"), ("ERRORS", ">"), ("PROMPT TOK", ">"), ("COMPL TOK", ">"),
                 ("CACHED TOK", ">"), ("COST USD", ">"), ("TTFT P50 MS", ">"), ("TTFT P95 MS", ">")]
CALL_COLUMNS = [("TIME (UTC)", "<"), ("REQUEST", "<"), ("TASK", "<"), ("MODEL", "<"), ("STATUS", "<"),
                ("IN", ">"), ("OUT", ">"), ("COST USD", ">"), ("TTFT MS", ">"), ("TOTAL MS", ">")]
PARTIAL_COST_NOTE = "* some calls have no price (model not in the price list): the cost covers the priced ones only"



@guarded
def usage(args: argparse.Namespace) -> int:
    from switchboard.ledger.usage import usage_report

    # The same report as GET /v1/usage and the dashboard: exact figures from the calls when they are few.
    result = usage_report(resolve_target(args).calls(), task_id=args.task_id,
                          environment=getattr(args, "environment", None), since=args.since, until=args.until)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if not result["totals"]["calls"]:
        note("no calls recorded for this selection")
        return 0
    print(usage_table(result))
    return 0


def usage_table(result: dict[str, Any]) -> str:
    rows = [usage_row(f"{m.get('provider')}/{m.get('model')}", m) for m in result["models"]]
    rows.append(usage_row("TOTAL", result["totals"]))
    text = table(USAGE_COLUMNS, rows, rule_before_last=True)
    if any(row["cost_usd"] is not None and not row["cost_complete"] for row in result["models"] + [result["totals"]]):
        text += "\n" + PARTIAL_COST_NOTE
    return text


def usage_row(label: str, row: dict[str, Any]) -> list[str]:
    return [label, count(row["calls"]), count(row["errors"]), count(row["prompt_tokens"]),
            count(row["completion_tokens"]), count(row["cached_tokens"]), usage_cost(row),
            millis(row["ttft_p50_ms"]), millis(row["ttft_p95_ms"])]


def usage_cost(row: dict[str, Any]) -> str:
    """A number, starred when some calls were unpriced; "unpriced" when none were; "-" when none cost."""
    if row["cost_usd"] is None:
        return "-" if row["cost_complete"] else "unpriced"
    return dollars(row["cost_usd"]) + ("" if row["cost_complete"] else "*")


@guarded
def calls(args: argparse.Namespace) -> int:
    store = resolve_target(args).calls()
    items = store.calls(task_id=args.task_id, conversation_id=args.conversation_id, since=args.since,
                        until=args.until, limit=args.limit)
    if args.json:
        print(json.dumps([public_fields(item) for item in items], indent=2))
        return 0
    if not items:
        note("no calls found (without --since, only the last 7 days are searched)")
        return 0
    print(table(CALL_COLUMNS, [call_row(item) for item in items]))
    return 0


def call_row(item: dict[str, Any]) -> list[str]:
    model = f"{item.get('provider') or 'none'}/{item.get('model') or item.get('requested_model') or 'none'}"
    when = str(item.get("time", "")).replace("T", " ")[:19]
    return [when, str(item.get("request_id", "")), str(item.get("task_id", "")), model,
            f"{item.get('status', '')} {item.get('outcome', '')}".strip(), count(item.get("prompt_tokens")),
            count(item.get("completion_tokens")),
            dollars(item["cost_usd"]) if item.get("cost_usd") is not None else "-",
            millis(item.get("ttft_ms")), millis(item.get("total_ms"))]


def public_fields(item: dict[str, Any]) -> dict[str, Any]:
    """A call item as the admin API shows it: every record field (null where unknown), no table keys."""
    from switchboard.ledger.store import public_record

    return public_record(item)


def timestamp(text: str) -> float:
    """An argparse type: ISO-8601 or epoch seconds -> epoch seconds."""
    from switchboard.ledger.store import to_epoch

    try:
        return to_epoch(text)  # type: ignore[return-value]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time; use ISO-8601 (2026-11-01, 2026-11-01T09:30Z) or epoch seconds") from None


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    _register_usage(commands, common)
    _register_calls(commands, common)


def _register_usage(commands: Commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("usage", parents=[common],
                                 help="calls, tokens, cost and TTFT per model (as GET /v1/usage and the dashboard)")
    parser.add_argument("--task-id", help="only this task (default: all tasks)")
    parser.add_argument("--environment", help="only calls with this x-inference-environment")
    parser.add_argument("--since", type=timestamp, help="from this day (ISO-8601 or epoch seconds)")
    parser.add_argument("--until", type=timestamp, help="to this day, inclusive")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=usage)


def _register_calls(commands: Commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("calls", parents=[common], help="recent calls, newest first")
    parser.add_argument("--task-id", help="only this task")
    parser.add_argument("--conversation-id", help="only this conversation")
    parser.add_argument("--since", type=timestamp, help="from this time (default: the last 7 days)")
    parser.add_argument("--until", type=timestamp, help="up to this time")
    parser.add_argument("--limit", type=positive, default=20, help="at most this many (default 20, max 1000)")
    parser.add_argument("--json", action="store_true", help="print the calls as JSON")
    parser.set_defaults(handler=calls)
