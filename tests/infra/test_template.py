"""Assertions on template.yaml itself: streaming URL, no secret values, least privilege, data safety."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from cfnlint.decode import decode_str

from switchboard.ledger.schema import TABLE_DEFINITION, TTL_ATTRIBUTE

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "template.yaml").read_text()
TEMPLATE, _errors = decode_str(TEXT)
RESOURCES = TEMPLATE["Resources"]
FUNCTION = RESOURCES["GatewayFunction"]["Properties"]
ENV = FUNCTION["Environment"]["Variables"]
OWN = {"CallsTable", "ProviderKeysSecret", "GatewayKeysSecret"}


def test_function_streams_through_the_web_adapter():
    assert FUNCTION["FunctionUrlConfig"] == {"AuthType": "NONE", "InvokeMode": "RESPONSE_STREAM"}
    assert ENV["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert ENV["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert ENV["AWS_LWA_READINESS_CHECK_PATH"] == "/health"
    assert ENV["AWS_LWA_PORT"] != "8080"
    assert FUNCTION["Handler"] == "run.sh" and FUNCTION["CodeUri"] == "handler/"
    version = re.fullmatch(r"python3\.(\d+)", FUNCTION["Runtime"])
    assert version and int(version.group(1)) >= 12
    assert FUNCTION["Architectures"] == [{"Ref": "Architecture"}]
    assert TEMPLATE["Parameters"]["Architecture"]["Default"] == "arm64"
    adapter = str(FUNCTION["Layers"][0])
    assert "753240598075:layer:" in adapter and "LambdaAdapterLayerArm64" in adapter


def test_run_sh_serves_the_app_on_the_adapter_port():
    run = (ROOT / "handler" / "run.sh").read_text()
    assert run.startswith("#!/bin/bash") and "AWS_LWA_PORT" in run and "/opt/python" in run
    assert (ROOT / "handler" / "run.sh").stat().st_mode & 0o111


def test_no_secret_values_anywhere():
    for name in ("ProviderKeysSecret", "GatewayKeysSecret"):
        props = RESOURCES[name]["Properties"]
        assert RESOURCES[name]["Type"] == "AWS::SecretsManager::Secret"
        assert "SecretString" not in props and "GenerateSecretString" not in props
    for name in TEMPLATE["Parameters"]:
        assert not re.search(r"key|secret|token|password", name, re.I), f"parameter {name} looks like a secret"
    for output in TEMPLATE["Outputs"].values():
        assert "SecretString" not in str(output) and "resolve:secretsmanager" not in str(output)
    assert not re.search(r"sk-[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|resolve:secretsmanager", TEXT)
    assert not any(re.search(r"API_KEY", k) for k in ENV), "keys must come from Secrets Manager, not env"


def _refs(value) -> set[str]:
    """Every resource a policy value names (Ref, GetAtt, and ${X} / ${X.Arn} inside Sub)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref":
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}]+)\}", text)}
            else:
                found |= _refs(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _refs(inner)
    return found


def test_iam_is_limited_to_the_stacks_own_table_and_secrets():
    statements = [s for policy in FUNCTION["Policies"] for s in policy["Statement"]]
    assert statements
    for statement in statements:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert "*" not in resources
        assert _refs(resources) <= OWN, statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in action for action in actions)
        assert all(a.startswith(("dynamodb:", "secretsmanager:")) for a in actions)
        if any(a.startswith("secretsmanager:") for a in actions):
            assert actions == ["secretsmanager:GetSecretValue"]
        if any(a.startswith("dynamodb:") for a in actions):
            assert set(actions) <= {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"}
            assert not {"dynamodb:Scan", "dynamodb:DeleteItem", "dynamodb:DeleteTable"} & set(actions)
    assert not any(isinstance(p, str) for p in FUNCTION["Policies"]), "no managed policies"


def test_table_has_ttl_pitr_and_the_ledgers_shape():
    table = RESOURCES["CallsTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert RESOURCES["CallsTable"]["DeletionPolicy"] == "Retain"
    # The same keys and indexes the embedded emulation creates from switchboard.ledger.schema.
    assert table["KeySchema"] == TABLE_DEFINITION["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(TABLE_DEFINITION["AttributeDefinitions"], key=str)
    assert table["GlobalSecondaryIndexes"] == TABLE_DEFINITION["GlobalSecondaryIndexes"]


def test_log_group_and_alarms():
    assert RESOURCES["GatewayLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert FUNCTION["LoggingConfig"]["LogGroup"] == {"Ref": "GatewayLogGroup"}
    alarms = {name: r["Properties"] for name, r in RESOURCES.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    ttft = alarms["TtftP95Alarm"]
    assert ttft["MetricName"] == "TTFT" and ttft["ExtendedStatistic"] == "p95"
    metric_names = {m["MetricStat"]["Metric"]["MetricName"] for m in alarms["ErrorRateAlarm"]["Metrics"]
                    if "MetricStat" in m}
    assert metric_names == {"Errors", "Calls"}
    # The alarms read what the recorder emits: namespace and service name as the function sets them.
    assert ENV["POWERTOOLS_METRICS_NAMESPACE"] == ttft["Namespace"]


@pytest.mark.parametrize("name", ["Stage", "LogLevel", "LogRetentionDays", "MemorySize", "RecordRetentionDays",
                                  "Architecture"])
def test_parameters(name):
    assert name in TEMPLATE["Parameters"]


def test_outputs_give_the_elevenlabs_server_url():
    outputs = TEMPLATE["Outputs"]
    assert {"FunctionUrl", "ElevenLabsServerUrl", "ProviderKeysSecretArn", "GatewayKeysSecretArn",
            "CallsTableName"} <= set(outputs)
    assert outputs["ElevenLabsServerUrl"]["Value"] == {"Fn::Sub": "${GatewayFunctionUrl.FunctionUrl}v1"}


def test_layer_holds_runtime_dependencies_only():
    requirements = [line.split("==")[0].strip().lower() for line in (ROOT / "layers" / "requirements.txt").read_text()
                    .splitlines() if line.strip() and not line.startswith("#")]
    assert not {"moto", "pytest", "aws-sam-cli", "openai", "hypothesis", "cfn-lint", "boto3"} & set(requirements)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = {re.split(r"[<>=\[]", d)[0].lower() for d in project} - {"boto3"}
    assert declared == set(requirements), "layers/requirements.txt and pyproject.toml disagree"
    layer = RESOURCES["DependenciesLayer"]
    assert layer["Properties"]["ContentUri"] == "layers/" and layer["Metadata"]["BuildMethod"] == "makefile"


def test_samconfig_has_default_and_prod():
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert {"default", "prod"} <= set(config)
    assert config["prod"]["deploy"]["parameters"]["capabilities"] == "CAPABILITY_IAM"
    assert "Stage=\"prod\"" in config["prod"]["deploy"]["parameters"]["parameter_overrides"]
