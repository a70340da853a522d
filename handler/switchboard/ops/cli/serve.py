"""`switchboard serve` (the gateway, with the embedded AWS emulation and the simulated upstream when it needs
them) and `switchboard simulator` (the simulated upstream alone)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from switchboard.ops.cli.target import Commands

if TYPE_CHECKING:
    from switchboard.ops.local_stack import LocalStack


def register(commands: Commands, common: argparse.ArgumentParser) -> None:
    """`common` (where an operator's command acts) is not theirs: they serve rather than act on a stack."""
    serve = commands.add_parser("serve", help="serve the gateway")
    serve.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    serve.add_argument("--simulator", dest="simulator", action="store_true", default=None,
                       help="also start the simulated upstream (default: only when no provider key is set)")
    serve.add_argument("--no-simulator", dest="simulator", action="store_false")
    serve.add_argument("--aws", action="store_true",
                       help="use real AWS (SWITCHBOARD_TABLE and the secrets' names from the environment) "
                            "instead of the embedded local emulation")
    serve.set_defaults(handler=serve_gateway)

    sim = commands.add_parser("simulator", help="serve only the simulated upstream provider")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8100)
    sim.add_argument("--first-token-ms", type=float, default=200.0)
    sim.add_argument("--tokens", type=int, default=24)
    sim.add_argument("--gap-ms", type=float, default=25.0)
    sim.set_defaults(handler=serve_simulator)


def serve_gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from switchboard.config.settings import Settings
    from switchboard.providers.adapters import Adapters

    try:
        settings = Settings.from_env()
        Adapters(settings.family_env)  # each provider family's own settings, checked before anything starts
    except ValueError as exc:  # SettingsError, or a family's ConfigError: either names the variable
        print(f"switchboard: {exc}", file=sys.stderr)
        return 2
    local_stack = None
    if not args.aws and not settings.table_name:
        local_stack = _start_local_stack()
        settings = Settings.from_env()
    elif args.aws and not settings.table_name:
        print("switchboard: --aws needs SWITCHBOARD_TABLE, SWITCHBOARD_PROVIDER_KEYS_SECRET and "
              "SWITCHBOARD_GATEWAY_KEYS_SECRET (the stack's outputs)", file=sys.stderr)
        return 2
    wants_simulator = args.simulator
    if wants_simulator is None:
        wants_simulator = not any(c.api_key for c in settings.providers.values()) and not os.environ.get(
            "SIMULATOR_BASE_URL")
    if wants_simulator:
        from switchboard.http.serving import BackgroundServer
        from switchboard.simulator import Script, SimulatorApp

        simulator = BackgroundServer(SimulatorApp(Script(first_token_ms=200, tokens=24, gap_ms=25))).start()
        os.environ["SIMULATOR_BASE_URL"] = simulator.url + "/v1"
        settings = Settings.from_env()
        print(f"switchboard: simulated upstream on {simulator.url} (models simulator/echo, simulator/tools, "
              "simulator/slow)", file=sys.stderr)
    if not settings.api_keys:  # admin keys (SWITCHBOARD_ADMIN_KEYS) cannot call chat or models
        print("switchboard: no gateway keys in SWITCHBOARD_API_KEYS; chat and models answer only keys made "
              "with `switchboard keys create`", file=sys.stderr)
    print(f"switchboard: serving on http://{args.host}:{args.port}/v1", file=sys.stderr)
    print(f"switchboard: dashboard on http://{args.host}:{args.port}/dashboard (sign in with an admin key: "
          "SWITCHBOARD_ADMIN_KEYS, or one made with `switchboard keys create NAME --admin`)", file=sys.stderr)

    from switchboard.http.app import create_app
    from switchboard.http.serving import uvicorn_options

    try:
        options = uvicorn_options(host=args.host, port=args.port, timeout_graceful_shutdown=5)
        uvicorn.run(create_app(settings), **options)
    finally:
        if local_stack is not None:
            local_stack.stop()
    return 0


def _start_local_stack() -> LocalStack:
    """The embedded AWS emulation, its names exported so Settings and the CLI find it."""
    from switchboard.ops.local_stack import LocalStack

    stack = LocalStack()
    info = stack.start()
    os.environ.update(info.env())
    # Locally a created or revoked key should take effect in seconds, not minutes.
    os.environ.setdefault("SWITCHBOARD_SECRETS_MAX_AGE", "5")
    print(f"switchboard: embedded AWS emulation (moto) on {info.endpoint}: table {info.table}, "
          "secrets for provider and gateway keys; nothing is kept after exit", file=sys.stderr)
    return stack


def serve_simulator(args: argparse.Namespace) -> int:
    import uvicorn

    from switchboard.http.serving import uvicorn_options
    from switchboard.simulator import Script, SimulatorApp

    script = Script(first_token_ms=args.first_token_ms, tokens=args.tokens, gap_ms=args.gap_ms)
    print(f"switchboard simulator (simulated upstream) on http://{args.host}:{args.port}/v1", file=sys.stderr)
    uvicorn.run(SimulatorApp(script), **uvicorn_options(host=args.host, port=args.port))
    return 0
