"""The families behind one lookup: configs read (and refused) at start-up, each adapter built on first use, and
the Adapter contract's `usable` and `warm` for the family that has something to say."""

from __future__ import annotations

import sys

import pytest

from switchboard.providers import adapters, bedrock, openai_compat
from switchboard.providers._env import ConfigError
from switchboard.providers.anthropic.config import AnthropicConfig
from switchboard.providers.bedrock.config import BedrockConfig


def test_configure_reads_every_family_and_the_adapters_are_built_from_it():
    found = adapters.Adapters({"AWS_REGION": "eu-west-1", "SWITCHBOARD_ANTHROPIC_MAX_TOKENS": "900"})
    assert found.configs == {"openai_compat": None, "anthropic": AnthropicConfig(default_max_tokens=900),
                       "bedrock": BedrockConfig(region="eu-west-1",
                                                endpoint="https://bedrock-runtime.eu-west-1.amazonaws.com",
                                                default_max_tokens=900)}
    assert found("anthropic").config == AnthropicConfig(default_max_tokens=900)
    assert found("bedrock").config.region == "eu-west-1"
    assert found("openai_compat") is openai_compat.ADAPTER
    assert found("bedrock") is found("bedrock")  # one per family


@pytest.mark.parametrize(("env", "variable"), [({"SWITCHBOARD_ANTHROPIC_MAX_TOKENS": "-1"},
                                                "SWITCHBOARD_ANTHROPIC_MAX_TOKENS"),
                                               ({"AWS_DEFAULT_REGION": "moon"}, "AWS_DEFAULT_REGION")])
def test_a_bad_value_stops_the_start_naming_its_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        adapters.Adapters(env)


def test_reading_the_configs_loads_no_botocore():
    """The configs are read at start-up; botocore (a fifth of a second) waits for Bedrock's first use."""
    import subprocess

    code = ("import sys; from switchboard.providers import adapters; adapters.Adapters({'AWS_REGION': 'us-east-1'});"
            "print(sorted(m for m in sys.modules if m.startswith('botocore')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": ":".join(p for p in sys.path if p)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_bedrock_is_usable_once_its_credentials_are_found_and_warm_finds_them(monkeypatch, tmp_path):
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTFAKEWARM0001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "warm-secret-fake-0123456789")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(bedrock, "CREDENTIALS", bedrock.AwsCredentials())
    found = adapters.Adapters({})
    family = found("bedrock")
    assert "no AWS credentials" in (family.usable() or "")  # never resolved here: usable() does not go looking
    family.warm()
    assert family.usable() is None and bedrock.CREDENTIALS.found
    assert found("anthropic").usable() is None and found("openai_compat").usable() is None
