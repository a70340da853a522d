"""The operator's subcommands of `switchboard`: gateway keys, provider keys, usage, calls and budgets.

They act on the local embedded stack that `switchboard serve` leaves in `$SWITCHBOARD_HOME`, or, with
`--aws`, on a deployed stack, through the same Secrets Manager and DynamoDB code either way. No key
is ever taken from the command line or printed, except a new gateway key, once, on stdout.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NO_LOCAL_STACK = ("No local switchboard is running. Start one with `make run` (or `switchboard serve`), "
                  "or use --aws for a deployed stack.")
LOCAL_CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "local", "aws_secret_access_key": "local"}
# Each name the commands need: the environment variable that sets it, and the stack output that has it.
RESOURCES = {
    "table": ("SWITCHBOARD_TABLE", "CallsTableName"),
    "provider_keys_secret": ("SWITCHBOARD_PROVIDER_KEYS_SECRET", "ProviderKeysSecretArn"),
    "gateway_keys_secret": ("SWITCHBOARD_GATEWAY_KEYS_SECRET", "GatewayKeysSecretArn"),
}
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$")
CACHE_HINT = "a running gateway sees the change once its secrets cache expires (SWITCHBOARD_SECRETS_MAX_AGE)"

Handler = Callable[[argparse.Namespace], int]


class AdminError(Exception):
    """A failure the operator can act on: its message is printed as it stands, with this exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- target: which table and secrets, and how to reach them -------------------------------------------


@dataclass(frozen=True)
class Target:
    label: str  # for messages: where a change went
    table: str
    provider_keys_secret: str
    gateway_keys_secret: str
    session: Any = field(repr=False)  # boto3 Session
    client_options: dict[str, Any] = field(default_factory=dict, repr=False)

    def client(self, service: str) -> Any:
        from botocore.config import Config

        config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"})
        return self.session.client(service, config=config, **self.client_options)

    def secrets(self) -> Any:
        from switchboard.keys.secrets import SecretsAdmin

        return SecretsAdmin(self.client("secretsmanager"), self.provider_keys_secret, self.gateway_keys_secret)

    def calls(self) -> Any:
        from switchboard.ledger.store import CallStore

        return CallStore(self.client("dynamodb"), self.table)


def resolve_target(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Target:
    """Deployed AWS when asked for (`--aws`, `--profile`) or configured (SWITCHBOARD_TABLE); else local."""
    env = os.environ if env is None else env
    if args.aws or args.profile or env.get("SWITCHBOARD_TABLE"):
        return aws_target(args, env)
    return local_target()


def local_target() -> Target:
    import boto3

    from switchboard.ops.local_stack import read_state

    info = read_state()
    if info is None:
        raise AdminError(NO_LOCAL_STACK)
    return Target(f"the local switchboard ({info.endpoint})", info.table, info.provider_keys_secret,
                  info.gateway_keys_secret, boto3.session.Session(),
                  {"endpoint_url": info.endpoint, **LOCAL_CREDENTIALS})


def aws_target(args: argparse.Namespace, env: Mapping[str, str]) -> Target:
    """Names from the environment, any missing ones from the stack's outputs.

    SWITCHBOARD_AWS_ENDPOINT_URL, when set, is honoured as the gateway honours it (with the fixed
    local credentials), so the gateway's own environment drives the CLI as well.
    """
    import boto3

    session = boto3.session.Session(profile_name=args.profile, region_name=args.region)
    endpoint = env.get("SWITCHBOARD_AWS_ENDPOINT_URL")
    options = {"endpoint_url": endpoint, **LOCAL_CREDENTIALS} if endpoint else {}
    names = {name: env[variable] for name, (variable, _) in RESOURCES.items() if env.get(variable)}
    needed = [name for name in RESOURCES if name not in names]
    if needed:
        outputs = stack_outputs(session.client("cloudformation", **options), args.stack_name)
        names.update(names_from_stack(outputs, needed, args.stack_name))
    label = f"AWS ({endpoint})" if endpoint else f"AWS stack {args.stack_name}"
    return Target(label, names["table"], names["provider_keys_secret"], names["gateway_keys_secret"], session,
                  options)


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    outputs = stacks[0].get("Outputs", []) if stacks else []
    return {output["OutputKey"]: output["OutputValue"] for output in outputs}


def names_from_stack(outputs: Mapping[str, str], needed: Sequence[str], stack_name: str) -> dict[str, str]:
    missing = [RESOURCES[name] for name in needed if not outputs.get(RESOURCES[name][1])]
    if missing:
        raise AdminError(f"stack {stack_name} has no output {', '.join(output for _, output in missing)}; "
                         f"set {', '.join(variable for variable, _ in missing)} instead")
    return {name: outputs[RESOURCES[name][1]] for name in needed}


# -- errors: one line on stderr, never a traceback, never a secret ---------------------------------------


def guarded(command: Handler) -> Handler:
    """Turn every expected failure into one line on stderr and exit code 1 (AdminError: its own code)."""

    @functools.wraps(command)
    def handler(args: argparse.Namespace) -> int:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

        try:
            return command(args)
        except AdminError as exc:
            return fail(str(exc), exc.exit_code)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            return fail(f"AWS refused {exc.operation_name}: {error.get('Code', 'error')}: {error.get('Message', '')}")
        except NoCredentialsError:
            return fail("no AWS credentials found; configure them (aws configure, AWS_PROFILE) or pass --profile")
        except NoRegionError:
            return fail("no AWS region set; pass --region or set AWS_REGION")
        except json.JSONDecodeError:
            return fail("a switchboard secret does not hold JSON; fix or delete its value")
        except BotoCoreError as exc:
            return fail(str(exc))

    return handler


def fail(message: str, exit_code: int = 1) -> int:
    print(f"switchboard: {message}", file=sys.stderr)
    return exit_code


def note(message: str) -> None:
    print(f"switchboard: {message}", file=sys.stderr)


# -- keys ---------------------------------------------------------------------------------------------


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


# What `keys update` can change: the option's destination -> the field in the stored entry.
KEY_CHANGES = {"rpm": "rpm", "concurrent": "concurrent", "daily_budget_usd": "daily_usd",
               "monthly_budget_usd": "monthly_usd", "budget_soft_percent": "soft_percent",
               "budget_on_exceeded": "on_exceeded"}


def new_key_budget(args: argparse.Namespace) -> Any:
    """The budget `keys create` was given, checked as the gateway will read it; None without one."""
    from switchboard.limits.budgets import parse_budget

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
    from switchboard.limits.budgets import usd

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


# -- providers ----------------------------------------------------------------------------------------


@guarded
def providers_set(args: argparse.Namespace) -> int:
    from switchboard.providers import PROVIDERS

    if args.name not in PROVIDERS:
        raise AdminError(f"unknown provider '{args.name}'; one of: {', '.join(sorted(PROVIDERS))}", 2)
    target = resolve_target(args)
    key = read_provider_key(args.name)
    if not key:
        raise AdminError("no key given; nothing stored", 2)
    target.secrets().set_provider_key(args.name, key)
    note(f"stored the {args.name} key in {target.label}; {CACHE_HINT}")
    return 0


def read_provider_key(provider: str) -> str:
    """From a hidden prompt on a terminal, else the first line of stdin; never from argv."""
    if sys.stdin.isatty():
        return getpass.getpass(f"{provider} API key (input hidden): ").strip()
    return sys.stdin.readline().strip()


@guarded
def providers_list(args: argparse.Namespace) -> int:
    names = resolve_target(args).secrets().providers()
    if not names:
        note("no provider keys stored; add one with `switchboard providers set NAME` (the key on stdin)")
    for name in names:
        print(name)
    return 0


# -- usage and calls ----------------------------------------------------------------------------------

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


# -- budgets ------------------------------------------------------------------------------------------

BUDGET_COLUMNS = [("SCOPE", "<"), ("NAME", "<"), ("PERIOD", "<"), ("LIMIT USD", ">"), ("SPENT USD", ">"),
                  ("REMAINING USD", ">"), ("STATE", "<"), ("OVER BUDGET", "<"), ("RESETS (UTC)", "<")]
INCOMPLETE_NOTE = "* some calls had no price or no usage: the spend counts the priced ones only"
NO_BUDGETS = ("no budgets configured: set tasks.<task>.budget in SWITCHBOARD_ROUTING (or pass --routing), or "
              "give a key one with `switchboard keys update NAME --daily-budget-usd 20`")


@guarded
def budgets(args: argparse.Namespace) -> int:
    from switchboard.limits.budgets import TableCounters, configured_scopes, report

    tasks = routing_budgets(args.routing if args.routing is not None else os.environ.get("SWITCHBOARD_ROUTING"))
    target = resolve_target(args)
    scopes = configured_scopes(tasks, target.secrets().stored_keys())
    result = report(TableCounters(target.client("dynamodb"), target.table), scopes)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    if not result["data"]:
        note(NO_BUDGETS)
        return 0
    print(budgets_table(result["data"]))
    return 0


def routing_budgets(raw: str | None) -> dict[str, Any]:
    """Task budgets from a SWITCHBOARD_ROUTING value, read as the gateway reads it."""
    from switchboard.config.settings import SettingsError
    from switchboard.core.plan import routing_config

    try:
        return routing_config(raw or None).budgets
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


def public_fields(item: dict[str, Any]) -> dict[str, Any]:
    """A call item as the admin API shows it: every record field (null where unknown), no table keys."""
    from switchboard.ledger.store import public_record

    return public_record(item)


# -- formatting ---------------------------------------------------------------------------------------


def table(columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[str]], rule_before_last: bool = False) -> str:
    """Fixed-width columns; each column is (header, "<" or ">")."""
    widths = [max([len(header)] + [len(row[i]) for row in rows]) for i, (header, _) in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(f"{cell:{align}{width}}" for cell, (_, align), width in zip(cells, columns, widths,
                                                                                     strict=True)).rstrip()

    lines = [line([header for header, _ in columns])] + [line(row) for row in rows]
    if rule_before_last and rows:
        lines.insert(len(lines) - 1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def count(value: int | float | None) -> str:
    return "-" if value is None else f"{int(value):,}"


def dollars(value: float) -> str:
    return f"{value:.6f}"


def millis(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


# -- arguments ----------------------------------------------------------------------------------------


def timestamp(text: str) -> float:
    """An argparse type: ISO-8601 or epoch seconds -> epoch seconds."""
    from switchboard.ledger.store import to_epoch

    try:
        return to_epoch(text)  # type: ignore[return-value]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time; use ISO-8601 (2026-11-01, 2026-11-01T09:30Z) or epoch seconds") from None


def key_name(text: str) -> str:
    if not KEY_NAME.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: a key name is 1-64 letters, digits and _.@:- (starting with a letter or digit)")
    return text


def dollars_amount(text: str) -> float:
    """An argparse type: a positive number of US dollars."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e12:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of US dollars")
    return value


def percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage between 0 and 100")
    return value


def on_exceeded(text: str) -> str | dict[str, str]:
    """`refuse`, or the model to answer on instead (checked as the gateway resolves model names)."""
    from switchboard.core.routing import split_model
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


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def target_options() -> argparse.ArgumentParser:
    """The options every admin subcommand shares: where to act."""
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("target (default: the local switchboard `make run` started)")
    group.add_argument("--aws", action="store_true", help="act on a deployed stack in AWS")
    group.add_argument("--stack-name", default="switchboard", help="the deployed stack (default: switchboard)")
    group.add_argument("--region", help="AWS region of the deployed stack")
    group.add_argument("--profile", help="AWS profile to use (implies --aws)")
    return options


def register(commands: argparse._SubParsersAction) -> None:
    """Add `keys`, `providers`, `usage`, `calls` and `budgets` to the `switchboard` command."""
    common = target_options()
    _register_keys(commands, common)
    _register_providers(commands, common)
    _register_usage(commands, common)
    _register_calls(commands, common)
    _register_budgets(commands, common)


def _register_keys(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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


def _add_budget_options(parser: argparse.ArgumentParser, wrap: Callable, default: Any) -> None:
    parser.add_argument("--daily-budget-usd", type=wrap(dollars_amount), default=default,
                        help="USD this key may spend per UTC day")
    parser.add_argument("--monthly-budget-usd", type=wrap(dollars_amount), default=default,
                        help="USD this key may spend per calendar month (UTC)")
    parser.add_argument("--budget-soft-percent", type=wrap(percent), default=default,
                        help="warn (log line and metric) once this share of a budget is spent")
    parser.add_argument("--budget-on-exceeded", type=wrap(on_exceeded), default=default, metavar="refuse|MODEL",
                        help="over budget: refuse with 429 (default), or answer on this (cheaper) model")


def _register_budgets(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("budgets", parents=[common],
                                 help="each budget: its limit, spend, what remains and when it resets")
    parser.add_argument("--routing", help="task budgets from this SWITCHBOARD_ROUTING value (JSON or @file); "
                                          "default: $SWITCHBOARD_ROUTING, as the gateway reads it")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=budgets)


def _register_providers(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    providers = commands.add_parser("providers", help="upstream provider keys: set, list")
    actions = providers.add_subparsers(dest="providers_command", required=True)
    store = actions.add_parser("set", parents=[common], help="store a provider's API key, read from stdin")
    store.add_argument("name", help="provider, e.g. openai or anthropic")
    store.set_defaults(handler=providers_set)
    actions.add_parser("list", parents=[common], help="providers that have a stored key").set_defaults(
        handler=providers_list)


def _register_usage(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("usage", parents=[common],
                                 help="calls, tokens, cost and TTFT per model (as GET /v1/usage and the dashboard)")
    parser.add_argument("--task-id", help="only this task (default: all tasks)")
    parser.add_argument("--environment", help="only calls with this x-inference-environment")
    parser.add_argument("--since", type=timestamp, help="from this day (ISO-8601 or epoch seconds)")
    parser.add_argument("--until", type=timestamp, help="to this day, inclusive")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=usage)


def _register_calls(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("calls", parents=[common], help="recent calls, newest first")
    parser.add_argument("--task-id", help="only this task")
    parser.add_argument("--conversation-id", help="only this conversation")
    parser.add_argument("--since", type=timestamp, help="from this time (default: the last 7 days)")
    parser.add_argument("--until", type=timestamp, help="up to this time")
    parser.add_argument("--limit", type=positive, default=20, help="at most this many (default 20, max 1000)")
    parser.add_argument("--json", action="store_true", help="print the calls as JSON")
    parser.set_defaults(handler=calls)
