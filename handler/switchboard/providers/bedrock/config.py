"""What the Bedrock family is configured with: where its calls go and are signed for, and Claude's answer room.

Read once, at start-up, from the variables the AWS SDKs and the gateway have always read (standard library
only: botocore, a fifth of a second to import, loads with the adapter on first use, never to read this).

  region    BEDROCK_REGION, else AWS_REGION, else AWS_DEFAULT_REGION (Lambda sets AWS_REGION)
  endpoint  AWS_ENDPOINT_URL_BEDROCK_RUNTIME (the SDKs' own override: how tests and local runs point Bedrock at a
            local server), else BEDROCK_BASE_URL, else the region's endpoint; none without a region
  default_max_tokens  SWITCHBOARD_ANTHROPIC_MAX_TOKENS: the answer's room when Claude thinks on Bedrock
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from switchboard.providers._env import ConfigError, whole_number

DEFAULT_REGION = "us-east-1"  # only to sign for an endpoint override when no region is set at all
DEFAULT_MAX_TOKENS = 4096
REGION_VARIABLES = ("BEDROCK_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "BEDROCK_BASE_URL")
# What the gateway's IAM role must be allowed (template.yaml grants both on the models it allows).
STREAM_ACTION = "bedrock:InvokeModelWithResponseStream"
INVOKE_ACTION = "bedrock:InvokeModel"
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


@dataclass(frozen=True)
class BedrockConfig:
    region: str | None = None
    endpoint: str | None = None
    default_max_tokens: int = DEFAULT_MAX_TOKENS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BedrockConfig:
        """From `env` (the process environment by default); ConfigError names a variable with a bad value."""
        env = os.environ if env is None else env
        region = _region(env)
        return cls(region=region, endpoint=_endpoint(env, region),
                   default_max_tokens=whole_number(env, "SWITCHBOARD_ANTHROPIC_MAX_TOKENS", DEFAULT_MAX_TOKENS))

    def signing_region(self, base_url: str) -> str:
        """The configured region, else the one in a regional endpoint's host name, else us-east-1."""
        if self.region:
            return self.region
        labels = (urlsplit(base_url).hostname or "").split(".")
        if "bedrock-runtime" in labels and labels.index("bedrock-runtime") + 1 < len(labels):
            candidate = labels[labels.index("bedrock-runtime") + 1]
            if candidate[:1].isalpha() and "-" in candidate:
                return candidate
        return DEFAULT_REGION


def _region(env: Mapping[str, str]) -> str | None:
    for name in REGION_VARIABLES:
        value = (env.get(name) or "").strip()
        if value:
            if not _REGION.fullmatch(value):
                raise ConfigError(f"{name} must be an AWS region such as us-east-1, got {value!r}")
            return value
    return None


def _endpoint(env: Mapping[str, str], region: str | None) -> str | None:
    override = (env.get(ENDPOINT_VARIABLES[0]) or env.get(ENDPOINT_VARIABLES[1]) or "").strip()
    if override:
        return override.rstrip("/") or None
    if region is None:
        return None
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://bedrock-runtime.{region}.{suffix}"


def base_url(env: Mapping[str, str]) -> str | None:
    """The endpoint Bedrock's calls go to (the registry asks for it when settings are read)."""
    return BedrockConfig.from_env(env).endpoint
