"""`switchboard keys`: create, update, list and revoke gateway keys (and admin keys) in the gateway-keys secret.

No key is ever taken from the command line or printed, except a new one, once, on stdout. The budget flags
are checked one by one as they are parsed, and as a whole by the budget model (config/budget.py), before
anything is written.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from switchboard.limits.budgets.model import Budget, parse_budget, usd
from switchboard.ops.cli.tables import table, yes_no
from switchboard.ops.cli.target import CACHE_HINT, AdminError, Commands, guarded, note, resolve_target

KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$")
# What `keys update` can change: the option's destination -> the field in the stored entry.
KEY_CHANGES = {"rpm": "rpm", "concurrent": "concurrent", "daily_budget_usd": "daily_usd",
               "monthly_budget_usd": "monthly_usd", "budget_soft_percent": "soft_percent",
               "budget_on_exceeded": "on_exceeded"}


@guarded
def keys_create(args: argparse.Namespace) -> int:
    budget = new_key_budget(args)
    target = resolve_target(args)
    try:
        key = target.secrets().create_key(args.name, admin=args.admin, rpm=args.rpm, concurrent=args.concurrent,
                                          gateway=True if args.gateway else None, budget=budget)
    except ValueError as exc:
        raise AdminError(str(exc)) from None
    print(key)
    kind = key_kind(admin=args.admin, gateway=args.gateway or not args.admin)
    note(f"created {kind} '{args.name}' in {target.label}; it cannot be shown again, so store it now; {CACHE_HINT}")
    return 0


def new_key_budget(args: argparse.Namespace) -> Budget | None:
    """The budget `keys create` was given, checked as the gateway will read it; None without one."""
    value = {field_name: getattr(args, dest) for dest, field_name in KEY_CHANGES.items()
             if field_name not in ("rpm", "concurrent") and getattr(args, dest, None) is not None}
    if not value:
        return None
    try:
        return parse_budget(value, "the budget")
    except ValueError as exc:
        raise AdminError(f"{exc} (give --daily-budget-usd and/or --monthly-budget-usd)", 2) from None


@guarded
def keys_update(args: argparse.Namespace) -> int:
    changes = {field_name: getattr(args, dest) for dest, field_name in KEY_CHANGES.items() if hasattr(args, dest)}
    if not changes:
        raise AdminError("nothing to change: give --rpm, --concurrent, --daily-budget-usd, --monthly-budget-usd, "
                         "--budget-soft-percent or --budget-on-exceeded", 2)
    target = resolve_target(args)
    try:
        entry = target.secrets().update_key(args.name, changes)
    except LookupError:
        raise AdminError(f"no key named '{args.name}' in {target.label} (see `switchboard keys list`)") from None
    except ValueError as exc:
        raise AdminError(str(exc), 2) from None
    note(f"updated key '{args.name}' in {target.label}: {describe_limits(entry)}; {CACHE_HINT}")
    return 0


def describe_limits(entry: dict[str, Any]) -> str:
    parts = [f"rpm {entry.get('rpm', 'default')}", f"concurrent {entry.get('concurrent', 'default')}"]
    budget = entry.get("budget")
    if not budget:
        return ", ".join(parts + ["no budget"])
    for period in ("daily", "monthly"):
        if budget.get(f"{period}_usd") is not None:
            parts.append(f"{period} budget {usd(budget[f'{period}_usd'])}")
    if budget.get("soft_percent") is not None:
        parts.append(f"soft threshold {budget['soft_percent']:g}%")
    on_exceeded = budget.get("on_exceeded", "refuse")
    parts.append("over budget: " + (on_exceeded if isinstance(on_exceeded, str) else f"use {on_exceeded['model']}"))
    return ", ".join(parts)


def key_kind(*, admin: bool, gateway: bool) -> str:
    if admin and gateway:
        return "gateway and admin key"
    return "admin key (admin API only)" if admin else "gateway key"


@guarded
def keys_list(args: argparse.Namespace) -> int:
    keys = resolve_target(args).secrets().list_keys()
    if not keys:
        note("no gateway keys stored; create one with `switchboard keys create NAME`")
        return 0
    rows = [[k["name"], yes_no(k["admin"]), yes_no(k["gateway"]), k["created_at"] or "-"] for k in keys]
    print(table([("NAME", "<"), ("ADMIN", "<"), ("GATEWAY", "<"), ("CREATED", "<")], rows))
    return 0


@guarded
def keys_revoke(args: argparse.Namespace) -> int:
    target = resolve_target(args)
    if not target.secrets().revoke_key(args.name):
        raise AdminError(f"no key named '{args.name}' in {target.label} (see `switchboard keys list`)")
    note(f"revoked key '{args.name}' in {target.label}; {CACHE_HINT}")
    return 0


# -- arguments ----------------------------------------------------------------------------------------


def key_name(text: str) -> str:
    if not KEY_NAME.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a key name is 1-64 letters, digits and _.@:- (starting with a letter or digit)")
    return text


def dollars_amount(text: str) -> float:
    """An argparse type: a positive number of US dollars (a daily or monthly limit)."""
    from switchboard.config.budget import is_usd_limit

    value = _number(text)
    if value is None or not is_usd_limit(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of US dollars")
    return value


def percent(text: str) -> float:
    """An argparse type: a budget's soft threshold."""
    from switchboard.config.budget import is_soft_percent

    value = _number(text)
    if value is None or not is_soft_percent(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage between 0 and 100")
    return value


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def on_exceeded(text: str) -> str | dict[str, str]:
    """`refuse`, or the model to answer on instead (checked as the gateway resolves model names)."""
    from switchboard.core.plan import split_model
    from switchboard.wire.errors import GatewayError

    if text == "refuse":
        return text
    try:
        split_model(text)
    except GatewayError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is neither 'refuse' nor a model: {exc.message}") from None
    return {"model": text}


def or_none(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """For `keys update`: the value, or `none` to remove the setting (back to the default)."""

    def parse(text: str) -> Any:
        return None if text.strip().lower() == "none" else kind(text)

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


def non_negative(text: str) -> int:
    """A limit: a whole number, 0 meaning none for this key."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (0 or more)")
    return value


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    keys = commands.add_parser("keys", help="gateway keys: create, list, revoke")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    create = actions.add_parser("create", parents=[common], help="create a key and print it (only this once)")
    create.add_argument("name", type=key_name, help="who or what the key is for, e.g. elevenlabs-prod")
    create.add_argument("--admin", action="store_true",
                        help="an admin key: the admin API (calls, usage) only, not chat or models")
    create.add_argument("--gateway", action="store_true",
                        help="with --admin: the key may call chat and models as well")
    create.add_argument("--rpm", type=int, default=None, help="requests per minute allowed for this key")
    create.add_argument("--concurrent", type=int, default=None, help="concurrent streams allowed for this key")
    _add_budget_options(create, lambda kind: kind, default=None)
    create.set_defaults(handler=keys_create)
    update = actions.add_parser("update", parents=[common],
                                help="change a key's rate limits or budget (`none` removes a setting)")
    update.add_argument("name", type=key_name)
    update.add_argument("--rpm", type=or_none(non_negative), default=argparse.SUPPRESS,
                        help="requests per minute allowed for this key (0: unlimited; none: the server's default)")
    update.add_argument("--concurrent", type=or_none(non_negative), default=argparse.SUPPRESS,
                        help="concurrent streams allowed for this key (0: unlimited; none: the server's default)")
    _add_budget_options(update, or_none, default=argparse.SUPPRESS)
    update.set_defaults(handler=keys_update)
    actions.add_parser("list", parents=[common], help="list keys (names only)").set_defaults(handler=keys_list)
    revoke = actions.add_parser("revoke", parents=[common], help="revoke a key by name")
    revoke.add_argument("name")
    revoke.set_defaults(handler=keys_revoke)


def _add_budget_options(parser: argparse.ArgumentParser, wrap: Callable[[Callable[[str], Any]], Callable[[str], Any]],
                        default: Any) -> None:
    parser.add_argument("--daily-budget-usd", type=wrap(dollars_amount), default=default,
                        help="USD this key may spend per UTC day")
    parser.add_argument("--monthly-budget-usd", type=wrap(dollars_amount), default=default,
                        help="USD this key may spend per calendar month (UTC)")
    parser.add_argument("--budget-soft-percent", type=wrap(percent), default=default,
                        help="warn (log line and metric) once this share of a budget is spent")
    parser.add_argument("--budget-on-exceeded", type=wrap(on_exceeded), default=default, metavar="refuse|MODEL",
                        help="over budget: refuse with 429 (default), or answer on this (cheaper) model")
