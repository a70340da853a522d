"""The `switchboard` command: its parser, and one module per group of subcommands.

  serve.py      serve, simulator
  keys.py       keys create | update | list | revoke
  providers.py  providers set | list
  usage.py      usage, calls
  budgets.py    budgets

The operator's commands (all but serve and simulator) share target.py: where they act and how they fail.
"""

from __future__ import annotations

import argparse

from switchboard.ops.cli import budgets, keys, providers, serve, usage
from switchboard.ops.cli.target import Commands, target_options

# In the order `switchboard --help` lists them.
GROUPS = (serve, keys, providers, usage, budgets)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description="A streaming LLM gateway for voice agents.")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def register(commands: Commands) -> None:
    """Every subcommand, each with its `handler`."""
    common = target_options()
    for group in GROUPS:
        group.register(commands, common)


if __name__ == "__main__":
    raise SystemExit(main())
