"""`switchboard budgets`: each budget's limit, spend, what remains and when it resets, as GET /v1/budgets."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from switchboard.limits.budgets.model import Budget
from switchboard.ops.cli.tables import dollars, table
from switchboard.ops.cli.target import AdminError, Commands, guarded, note, resolve_target

BUDGET_COLUMNS = [("SCOPE", "<"), ("NAME", "<"), ("PERIOD", "<"), ("LIMIT USD", ">"), ("SPENT USD", ">"),
                  ("REMAINING USD", ">"), ("STATE", "<"), ("OVER BUDGET", "<"), ("RESETS (UTC)", "<")]
INCOMPLETE_NOTE = "* some calls had no price or no usage: the spend counts the priced ones only"
NO_BUDGETS = ("no budgets configured: set tasks.<task>.budget in SWITCHBOARD_ROUTING (or pass --routing), or "
              "give a key one with `switchboard keys update NAME --daily-budget-usd 20`")


@guarded
def budgets(args: argparse.Namespace) -> int:
    from switchboard.limits.budgets.counters import TableCounters
    from switchboard.limits.budgets.report import budgets_report

    tasks = routing_budgets(args.routing if args.routing is not None else os.environ.get("SWITCHBOARD_ROUTING"))
    target = resolve_target(args)
    counters = TableCounters(target.client("dynamodb"), target.table)
    result = budgets_report(counters, tasks, target.secrets().stored_keys())
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if not result["data"]:
        note(NO_BUDGETS)
        return 0
    print(budgets_table(result["data"]))
    return 0


def routing_budgets(raw: str | None) -> dict[str, Budget]:
    """Task budgets from a SWITCHBOARD_ROUTING value, read as the gateway reads them (its prices aside: the
    gateway's price settings need not be this shell's)."""
    from switchboard.config.routing import routing_config
    from switchboard.config.settings import SettingsError
    from switchboard.core.admission import task_budget

    try:
        tasks = routing_config(raw or None).tasks
        return {task_id: task_budget(task_id, task.budget) for task_id, task in tasks.items()
                if task.budget is not None}
    except SettingsError as exc:
        raise AdminError(str(exc), 2) from None


def budgets_table(rows: list[dict[str, Any]]) -> str:
    text = table(BUDGET_COLUMNS, [budget_row(row) for row in rows])
    if any(row["incomplete"] for row in rows):
        text += "\n" + INCOMPLETE_NOTE
    return text


def budget_row(row: dict[str, Any]) -> list[str]:
    on_exceeded = row["on_exceeded"]
    return [row["scope"], row["name"], f"{row['period']} {row['period_key']}", dollars(row["limit_usd"]),
            dollars(row["spent_usd"]) + ("*" if row["incomplete"] else ""), dollars(row["remaining_usd"]),
            row["state"], on_exceeded if isinstance(on_exceeded, str) else "use " + on_exceeded["model"],
            row["period_ends_at"].replace("T", " ").removesuffix("Z")]


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("budgets", parents=[common],
                                 help="each budget: its limit, spend, what remains and when it resets")
    parser.add_argument("--routing", help="task budgets from this SWITCHBOARD_ROUTING value (JSON or @file); "
                                          "default: $SWITCHBOARD_ROUTING, as the gateway reads it")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=budgets)
