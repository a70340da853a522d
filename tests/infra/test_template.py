"""Assertions on template.yaml itself: streaming URL, no secret values, least privilege, data safety."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from cfnlint.decode import decode_str

from switchboard.ledger.schema import TABLE_DEFINITION, TTL_ATTRIBUTE
from switchboard.providers import bedrock

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


def _resolve(value, parameters: dict[str, list[str]]):
    """The template value with Ref, Join, Equals, Not, If and conditions evaluated for the given parameters
    (enough of CloudFormation to see what the function's role gets for each parameter value)."""
    if isinstance(value, list):
        resolved = [_resolve(item, parameters) for item in value]
        return [item for item in resolved if item is not _NO_VALUE]
    if not isinstance(value, dict) or len(value) != 1:
        return {k: _resolve(v, parameters) for k, v in value.items()} if isinstance(value, dict) else value
    (function, argument), = value.items()
    if function == "Ref":
        return _NO_VALUE if argument == "AWS::NoValue" else parameters.get(argument, value)
    if function == "Fn::Join":
        return argument[0].join(_resolve(argument[1], parameters))
    if function == "Fn::Equals":
        return _resolve(argument[0], parameters) == _resolve(argument[1], parameters)
    if function == "Fn::Not":
        return not _resolve(argument[0], parameters)
    if function == "Fn::If":
        condition = _resolve(TEMPLATE["Conditions"][argument[0]], parameters)
        return _resolve(argument[1] if condition else argument[2], parameters)
    return {function: _resolve(argument, parameters)}


_NO_VALUE = object()


def _statements(bedrock_model_arns: list[str]) -> list[dict]:
    parameters = {"BedrockModelArns": bedrock_model_arns}
    return [s for policy in FUNCTION["Policies"] for s in _resolve(policy, parameters)["Statement"]]


def test_iam_is_limited_to_the_stacks_own_table_and_secrets():
    statements = [s for s in _statements(["*"]) if s.get("Sid") != "InvokeBedrockModels"]
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
            assert set(actions) <= {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query",
                                    "dynamodb:BatchGetItem"}  # BatchGetItem: the budget check reads its counters
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


def test_budget_alarms_read_the_metrics_the_budget_tracker_emits():
    names = ("limits/budgets/tracker.py", "observability.py")
    source = "".join((ROOT / "handler/switchboard" / name).read_text() for name in names)
    for alarm, metric in (("BudgetSoftThresholdAlarm", "BudgetSoftThreshold"),
                          ("BudgetExceededAlarm", "BudgetExceeded")):
        properties = RESOURCES[alarm]["Properties"]
        assert properties["MetricName"] == metric and f'"{metric}"' in source
        assert properties["Namespace"] == ENV["POWERTOOLS_METRICS_NAMESPACE"]
        assert properties["Threshold"] == 0 and properties["ComparisonOperator"] == "GreaterThanThreshold"


def test_cloudwatch_dashboard_draws_calls_errors_ttft_and_cost_by_model():
    import json

    body_template, _variables = RESOURCES["GatewayDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    values = {"AWS::Region": "us-east-1", "Service": "switchboard-dev", "ErrorRateAlarm.Arn": "arn:a1",
              "TtftP95Alarm.Arn": "arn:a2", "BudgetSoftThresholdAlarm.Arn": "arn:a3",
              "BudgetExceededAlarm.Arn": "arn:a4"}
    body = json.loads(re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], body_template))
    text = json.dumps(body)
    for metric in ("Calls", "Errors", "TTFT", "CostUSD"):
        assert metric in text
    assert '"p50"' in text and '"p95"' in text and "{switchboard,model,provider,service}" in text
    [alarms] = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert len(alarms["properties"]["alarms"]) == 4


def _bedrock_grant(bedrock_model_arns: list[str]) -> dict | None:
    grants = [s for s in _statements(bedrock_model_arns) if any(a.startswith("bedrock:") for a in s["Action"])]
    assert len(grants) <= 1
    return grants[0] if grants else None


def test_bedrock_is_invoked_with_the_functions_role_on_models_and_profiles_only():
    grant = _bedrock_grant(["*"])  # the default
    parameter = TEMPLATE["Parameters"]["BedrockModelArns"]
    assert (parameter["Type"], parameter["Default"]) == ("CommaDelimitedList", "*")
    # Exactly what the adapter calls (ConverseStream and Converse), the actions its errors tell operators to grant.
    assert grant["Effect"] == "Allow" and sorted(grant["Action"]) == sorted([bedrock.INVOKE_ACTION,
                                                                             bedrock.STREAM_ACTION])
    assert grant["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:bedrock:*::foundation-model/*"},
        {"Fn::Sub": "arn:${AWS::Partition}:bedrock:*:${AWS::AccountId}:inference-profile/*"},
        {"Fn::Sub": "arn:${AWS::Partition}:bedrock:*:${AWS::AccountId}:application-inference-profile/*"}]
    assert "Condition" not in grant and "*" not in grant["Resource"]


def test_bedrock_model_arns_narrows_the_grant_and_empty_disables_it():
    narrowed = ["arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0",
                "arn:aws:bedrock:*::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0"]
    assert _bedrock_grant(narrowed)["Resource"] == narrowed
    assert _bedrock_grant([""]) is None
    assert [s["Sid"] for s in _statements([""])] == ["ReadTheTwoSecrets", "ReadWriteTheCallsTable"]


@pytest.mark.parametrize("name", ["Stage", "LogLevel", "LogRetentionDays", "MemorySize", "RecordRetentionDays",
                                  "Architecture", "BedrockModelArns"])
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
