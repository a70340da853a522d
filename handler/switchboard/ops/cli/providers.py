"""`switchboard providers`: upstream provider keys in the provider-keys secret, set (from stdin) and listed."""

from __future__ import annotations

import argparse
import getpass
import sys

from switchboard.ops.cli.target import CACHE_HINT, AdminError, Commands, guarded, note, resolve_target


@guarded
def providers_set(args: argparse.Namespace) -> int:
    from switchboard.providers.registry import PROVIDERS

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


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    providers = commands.add_parser("providers", help="upstream provider keys: set, list")
    actions = providers.add_subparsers(dest="providers_command", required=True)
    store = actions.add_parser("set", parents=[common], help="store a provider's API key, read from stdin")
    store.add_argument("name", help="provider, e.g. openai or anthropic")
    store.set_defaults(handler=providers_set)
    actions.add_parser("list", parents=[common], help="providers that have a stored key").set_defaults(
        handler=providers_list)
