"""The admin subcommands against a real embedded stack (moto in server mode, in-process), driven as an
operator would: argv in, exit code and printed text out.

moto keeps its data per process, so every in-process stack of the run shares the same secrets and table:
names here carry a per-module suffix, and no test assumes it is alone.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import time
import uuid
from collections.abc import Iterator

import boto3
import pytest

from switchboard.ledger.record import CallRecord
from switchboard.ledger.store import CallStore
from switchboard.ops.cli.main import register
from switchboard.ops.cli.target import LOCAL_CREDENTIALS, NO_LOCAL_STACK, AdminError, names_from_stack, resolve_target
from switchboard.ops.local_stack import LocalStack, LocalStackInfo
from tests.conftest import EXTRA_SECRETS

FAKE_PROVIDER_KEY = "sk-test-fake-provider-key"
EXTRA_SECRETS.append(FAKE_PROVIDER_KEY)
RUN = uuid.uuid4().hex[:8]  # keeps this module's key names, tasks and conversations apart
TASK = f"support-line-{RUN}"
CONVERSATION = f"conv_1-{RUN}"
TARGET_ENV = ("SWITCHBOARD_TABLE", "SWITCHBOARD_PROVIDER_KEYS_SECRET", "SWITCHBOARD_GATEWAY_KEYS_SECRET",
              "SWITCHBOARD_AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_ENDPOINT_URL")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStackInfo]:
    """One embedded stack for the module, its state file in a home of its own."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SWITCHBOARD_HOME", str(tmp_path_factory.mktemp("switchboard-home")))
        local = LocalStack()
        info = local.start(write_state=True)
        yield info
        local.stop()


@pytest.fixture(autouse=True)
def no_configured_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own AWS settings must not steer these tests."""
    for name in TARGET_ENV:
        monkeypatch.delenv(name, raising=False)


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="switchboard")
    register(parser.add_subparsers(dest="command", required=True))
    capsys.readouterr()
    args = parser.parse_args(argv)
    code = args.handler(args)
    out, err = capsys.readouterr()
    if argv[:2] == ["keys", "create"] and code == 0:
        EXTRA_SECRETS.append(out.strip())  # the run-wide scan then checks no log line carries it
    return code, out, err


def client(info: LocalStackInfo, service: str):
    return boto3.client(service, endpoint_url=info.endpoint, **LOCAL_CREDENTIALS)


def secret_text(info: LocalStackInfo, name: str) -> str:
    return client(info, "secretsmanager").get_secret_value(SecretId=name)["SecretString"]


# -- keys ---------------------------------------------------------------------------------------------


def test_keys_create_prints_the_key_once_and_stores_only_its_hash(stack, capsys):
    code, out, err = run(capsys, ["keys", "create", f"voice-agent-{RUN}"])

    assert code == 0
    key = out.strip()
    assert out == key + "\n" and key.startswith("sb-")
    assert "cannot be shown again" in err and key not in err
    stored = secret_text(stack, stack.gateway_keys_secret)
    assert key not in stored
    assert hashlib.sha256(key.encode()).hexdigest() in stored


def test_keys_list_shows_name_and_scopes(stack, capsys):
    run(capsys, ["keys", "create", f"ops-admin-{RUN}", "--admin"])

    code, out, _ = run(capsys, ["keys", "list"])

    assert code == 0
    assert out.splitlines()[0].split() == ["NAME", "ADMIN", "GATEWAY", "CREATED"]
    row = next(line for line in out.splitlines() if line.startswith(f"ops-admin-{RUN}"))
    assert row.split()[1:3] == ["yes", "no"]  # an admin key is admin-only unless made with --gateway
    assert "sb-" not in out


def test_keys_create_refuses_a_taken_name(stack, capsys):
    run(capsys, ["keys", "create", f"taken-{RUN}"])

    code, out, err = run(capsys, ["keys", "create", f"taken-{RUN}"])

    assert code == 1 and out == ""
    assert "exists" in err


def test_keys_revoke_removes_the_key_and_a_second_revoke_fails(stack, capsys):
    run(capsys, ["keys", "create", f"short-lived-{RUN}"])

    assert run(capsys, ["keys", "revoke", f"short-lived-{RUN}"])[0] == 0
    assert f"short-lived-{RUN}" not in run(capsys, ["keys", "list"])[1]
    code, _, err = run(capsys, ["keys", "revoke", f"short-lived-{RUN}"])
    assert code == 1
    assert f"no key named 'short-lived-{RUN}'" in err and "Traceback" not in err


# -- providers ----------------------------------------------------------------------------------------


def test_providers_set_reads_the_key_from_stdin_and_never_prints_it(stack, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(FAKE_PROVIDER_KEY + "\n"))

    code, out, err = run(capsys, ["providers", "set", "openai"])

    assert code == 0
    assert FAKE_PROVIDER_KEY not in out + err
    assert json.loads(secret_text(stack, stack.provider_keys_secret))["openai"] == FAKE_PROVIDER_KEY
    code, out, err = run(capsys, ["providers", "list"])
    assert code == 0 and "openai" in out.split()
    assert FAKE_PROVIDER_KEY not in out + err


def test_providers_set_rejects_an_unknown_provider(stack, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(FAKE_PROVIDER_KEY + "\n"))

    code, out, err = run(capsys, ["providers", "set", "no-such-provider"])

    assert code == 2 and out == ""
    assert "openai" in err and "anthropic" in err
    assert "no-such-provider" not in secret_text(stack, stack.provider_keys_secret)
    assert FAKE_PROVIDER_KEY not in out + err


def test_providers_set_refuses_an_empty_key(stack, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("  \n"))
    before = secret_text(stack, stack.provider_keys_secret)

    code, _, err = run(capsys, ["providers", "set", "cerebras"])

    assert code == 2 and "no key given" in err
    assert secret_text(stack, stack.provider_keys_secret) == before


# -- usage and calls ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_calls(stack: LocalStackInfo) -> list[CallRecord]:
    """Two priced calls of one task and conversation, written as the gateway writes them."""
    now = time.time()
    records = [
        CallRecord(started_at=now - 60, task_id=TASK, provider="openai", model="gpt-4.1-mini",
                   outcome="stop", prompt_tokens=1200, completion_tokens=50, cached_tokens=100, cost_usd=0.0012,
                   priced=True, ttft_ms=180.0, total_ms=900.0, metadata={"conversation-id": CONVERSATION}),
        CallRecord(started_at=now - 30, task_id=TASK, provider="openai", model="gpt-4.1-mini",
                   outcome="stop", prompt_tokens=800, completion_tokens=30, cost_usd=0.0008, priced=True,
                   ttft_ms=420.0, total_ms=1300.0, metadata={"conversation-id": CONVERSATION}),
    ]
    store = CallStore(client(stack, "dynamodb"), stack.table)
    for record in records:
        store.put(record)
    return records


def test_usage_prints_a_row_per_model_and_totals(two_calls, capsys):
    code, out, _ = run(capsys, ["usage", "--task-id", TASK])

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["MODEL", "CALLS", "ERRORS"]
    model_row = next(line for line in lines if line.startswith("openai/gpt-4.1-mini")).split()
    # Two calls in range: figures read from the calls themselves, so the TTFT percentiles are observed ones.
    assert model_row[1:7] == ["2", "0", "2,000", "80", "100", "0.002000"]
    assert model_row[7:] == ["180", "420"]  # nearest rank: TTFTs a call really had
    assert lines[-1].split()[:3] == ["TOTAL", "2", "0"]
    assert "*" not in out


def test_usage_json_is_the_report(two_calls, capsys):
    code, out, _ = run(capsys, ["usage", "--task-id", TASK, "--json"])

    assert code == 0
    report = json.loads(out)
    assert report["totals"]["calls"] == 2 and report["totals"]["prompt_tokens"] == 2000
    assert report["models"][0]["model"] == "gpt-4.1-mini"


def test_usage_marks_partly_unpriced_costs(stack, capsys):
    store = CallStore(client(stack, "dynamodb"), stack.table)
    store.put(CallRecord(task_id=f"mixed-prices-{RUN}", provider="openai", model="gpt-4.1-mini", outcome="stop",
                         prompt_tokens=10, completion_tokens=5, cost_usd=0.0001, priced=True, ttft_ms=100.0))
    store.put(CallRecord(task_id=f"mixed-prices-{RUN}", provider="groq", model="unlisted-model", outcome="stop",
                         prompt_tokens=10, completion_tokens=5, ttft_ms=100.0))
    store.put(CallRecord(task_id=f"mixed-prices-{RUN}", provider="openai", model="gpt-4.1-mini", outcome="stop",
                         prompt_tokens=10, completion_tokens=5, ttft_ms=100.0))

    code, out, _ = run(capsys, ["usage", "--task-id", f"mixed-prices-{RUN}"])

    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()}
    assert rows["groq/unlisted-model"][6] == "unpriced"
    assert rows["openai/gpt-4.1-mini"][6] == "0.000100*"
    assert rows["TOTAL"][6] == "0.000100*"
    assert out.splitlines()[-1].startswith("* ")


def test_calls_lists_newest_first_with_numbers(two_calls, capsys):
    code, out, _ = run(capsys, ["calls", "--task-id", TASK])

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["TIME", "(UTC)"]
    newer, older = two_calls[1].request_id, two_calls[0].request_id
    assert out.index(newer) < out.index(older)
    row = next(line for line in lines if older in line).split()
    assert row[3:] == [TASK, "openai/gpt-4.1-mini", "200", "stop", "1,200", "50", "0.001200", "180",
                       "900"]


def test_calls_by_conversation_lists_both_and_json_parses(two_calls, capsys):
    code, out, _ = run(capsys, ["calls", "--conversation-id", CONVERSATION])
    assert code == 0
    assert all(record.request_id in out for record in two_calls)

    code, out, _ = run(capsys, ["calls", "--conversation-id", CONVERSATION, "--limit", "1", "--json"])
    assert code == 0
    items = json.loads(out)
    assert [item["request_id"] for item in items] == [two_calls[1].request_id]
    assert "pk" not in items[0]


def test_a_bad_time_is_a_usage_error(stack, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(capsys, ["calls", "--since", "last tuesday"])
    assert exit_info.value.code == 2
    assert "ISO-8601" in capsys.readouterr().err


# -- target resolution --------------------------------------------------------------------------------


def target_args(**overrides) -> argparse.Namespace:
    return argparse.Namespace(**{"aws": False, "profile": None, "region": "eu-west-1", "stack_name": "switchboard",
                                 **overrides})


def test_without_a_local_stack_the_commands_say_how_to_start_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SWITCHBOARD_HOME", str(tmp_path))

    code, out, err = run(capsys, ["keys", "list"])

    assert code == 1 and out == ""
    assert err.strip() == "switchboard: " + NO_LOCAL_STACK


def test_the_environment_names_the_deployed_resources():
    env = {"SWITCHBOARD_TABLE": "prod-calls", "SWITCHBOARD_PROVIDER_KEYS_SECRET": "prod/provider-keys",
           "SWITCHBOARD_GATEWAY_KEYS_SECRET": "prod/gateway-keys"}

    target = resolve_target(target_args(), env)

    assert (target.table, target.provider_keys_secret, target.gateway_keys_secret) == (
        "prod-calls", "prod/provider-keys", "prod/gateway-keys")
    assert target.client_options == {} and target.session.region_name == "eu-west-1"


def test_stack_outputs_fill_only_the_names_the_environment_lacks():
    outputs = {"CallsTableName": "stack-calls", "GatewayKeysSecretArn": "arn:stack-gateway-keys"}

    assert names_from_stack(outputs, ["table"], "switchboard") == {"table": "stack-calls"}
    with pytest.raises(AdminError, match="ProviderKeysSecretArn.*SWITCHBOARD_PROVIDER_KEYS_SECRET"):
        names_from_stack(outputs, ["table", "provider_keys_secret"], "switchboard")


def test_environment_target_reaches_the_gateways_endpoint(stack, monkeypatch, capsys):
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)
    run(capsys, ["keys", "create", f"from-env-{RUN}"])

    code, out, _ = run(capsys, ["keys", "list"])

    assert code == 0 and f"from-env-{RUN}" in out


@pytest.mark.filterwarnings("ignore::UserWarning")  # moto does not model the placeholder resource
def test_aws_target_reads_missing_names_from_the_stack_outputs(stack, monkeypatch, capsys):
    template = {"Resources": {"Placeholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
                "Outputs": {"CallsTableName": {"Value": stack.table},
                            "ProviderKeysSecretArn": {"Value": stack.provider_keys_secret},
                            "GatewayKeysSecretArn": {"Value": stack.gateway_keys_secret}}}
    cloudformation = client(stack, "cloudformation")
    cloudformation.create_stack(StackName=f"switchboard-test-{RUN}", TemplateBody=json.dumps(template))
    # Plain boto3 configuration, as against AWS; only the endpoint is moto's.
    monkeypatch.setenv("AWS_ENDPOINT_URL", stack.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "fake-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-key")
    run(capsys, ["keys", "create", f"deployed-agent-{RUN}"])

    code, out, err = run(capsys, ["keys", "list", "--aws", "--stack-name", f"switchboard-test-{RUN}", "--region",
                                  "us-east-1"])
    assert code == 0, err
    assert f"deployed-agent-{RUN}" in out

    code, out, err = run(capsys, ["keys", "list", "--aws", "--stack-name", "no-such-stack", "--region", "us-east-1"])
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "no-such-stack" in err and "Traceback" not in err


def test_an_unreachable_endpoint_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("SWITCHBOARD_TABLE", "calls")
    monkeypatch.setenv("SWITCHBOARD_PROVIDER_KEYS_SECRET", "provider-keys")
    monkeypatch.setenv("SWITCHBOARD_GATEWAY_KEYS_SECRET", "gateway-keys")
    monkeypatch.setenv("SWITCHBOARD_AWS_ENDPOINT_URL", "http://127.0.0.1:9")

    code, out, err = run(capsys, ["providers", "list"])

    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "127.0.0.1:9" in err
