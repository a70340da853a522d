"""Amazon Bedrock's Converse API, signed with the gateway's own AWS credentials, translated to and from
OpenAI Chat Completions.

No provider key: requests are signed with SigV4 (service `bedrock`) by botocore's own signer, with
credentials from botocore's default chain (on Lambda the function's role).

  config.py       BedrockConfig: region, endpoint, Claude's answer room; the IAM actions the role needs
  credentials.py  AwsCredentials: botocore's chain, resolved off the event loop, refreshed before expiry
  request.py      the request map: model id checks, the URL, an OpenAI request -> a Converse body
  stream.py       the response transforms: ConverseStream events -> chunks, a Converse response -> a completion
  errors.py       AWS's refusals and in-stream exceptions as UpstreamError, with hints for the operator
  signing.py      SigV4, by botocore            eventstream.py  AWS's binary event stream, by botocore
  adapter.py      BedrockAdapter: the signing, HTTP and event stream between them, behind `providers.base.Adapter`

This module only wires them together, and stays cheap to import (its config is read at start-up): the
modules that import botocore (signing, eventstream, adapter: a fifth of a second) load in `create`, when the
family is first used (`providers.adapters.adapter("bedrock")`) or warmed up in the background.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from switchboard.providers.bedrock.config import INVOKE_ACTION, STREAM_ACTION, BedrockConfig
from switchboard.providers.bedrock.credentials import AwsCredentials, CredentialsUnavailable

if TYPE_CHECKING:
    from switchboard.providers.base import Adapter

__all__ = ["CREDENTIALS", "INVOKE_ACTION", "STREAM_ACTION", "AwsCredentials", "BedrockConfig",
           "CredentialsUnavailable", "create", "read_config"]

CREDENTIALS = AwsCredentials()  # one per process: every Bedrock call signs with what it holds


def read_config(env: Mapping[str, str]) -> BedrockConfig:
    """At start-up: the family's config from `env`; ConfigError names a variable with a bad value."""
    return BedrockConfig.from_env(env)


def create(config: BedrockConfig | None = None) -> Adapter:
    """The family's adapter, for `config` (by default, the process environment's); botocore loads here."""
    from switchboard.providers.bedrock.adapter import BedrockAdapter

    return BedrockAdapter(config if config is not None else BedrockConfig.from_env(), _process_credentials)


def _process_credentials() -> AwsCredentials:
    """CREDENTIALS, looked up at each call rather than held (tests swap in a fresh holder)."""
    return CREDENTIALS



