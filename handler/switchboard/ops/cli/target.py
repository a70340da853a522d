"""Where the operator's commands act, and how they fail: the target (a table and two secrets) and its errors.

The commands act on the local embedded stack that `switchboard serve` leaves in `$SWITCHBOARD_HOME`, or, with
`--aws`, on a deployed stack, through the same Secrets Manager and DynamoDB code either way. A failure is one
line on stderr, never a traceback, never a secret.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from switchboard.ledger.store import CallStore
    from switchboard.ops.secrets_admin import SecretsAdmin

NO_LOCAL_STACK = ("No local switchboard is running. Start one with `make run` (or `switchboard serve`), "
                  "or use --aws for a deployed stack.")
LOCAL_CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "local", "aws_secret_access_key": "local"}
# Each name the commands need: the environment variable that sets it, and the stack output that has it.
RESOURCES = {
    "table": ("SWITCHBOARD_TABLE", "CallsTableName"),
    "provider_keys_secret": ("SWITCHBOARD_PROVIDER_KEYS_SECRET", "ProviderKeysSecretArn"),
    "gateway_keys_secret": ("SWITCHBOARD_GATEWAY_KEYS_SECRET", "GatewayKeysSecretArn"),
}
CACHE_HINT = "a running gateway sees the change once its secrets cache expires (SWITCHBOARD_SECRETS_MAX_AGE)"

Handler = Callable[[argparse.Namespace], int]
Commands = argparse._SubParsersAction  # what `add_subparsers` returns: each module adds its commands to it


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

    def secrets(self) -> SecretsAdmin:
        from switchboard.ops.secrets_admin import SecretsAdmin

        return SecretsAdmin(self.client("secretsmanager"), self.provider_keys_secret, self.gateway_keys_secret)

    def calls(self) -> CallStore:
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


def target_options() -> argparse.ArgumentParser:
    """The options every operator's command shares: where to act."""
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("target (default: the local switchboard `make run` started)")
    group.add_argument("--aws", action="store_true", help="act on a deployed stack in AWS")
    group.add_argument("--stack-name", default="switchboard", help="the deployed stack (default: switchboard)")
    group.add_argument("--region", help="AWS region of the deployed stack")
    group.add_argument("--profile", help="AWS profile to use (implies --aws)")
    return options
