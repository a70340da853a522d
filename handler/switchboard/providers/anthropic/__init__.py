"""Anthropic's native Messages API, translated to and from OpenAI Chat Completions.

  config.py    AnthropicConfig: the API version, and the max_tokens sent when a request names none
  request.py   the request map: an OpenAI request -> a Messages payload (system, tools, extended thinking)
  stream.py    the response transforms: stream events -> OpenAI chunks, a Message -> a chat.completion
  adapter.py   AnthropicAdapter: the HTTP between them, behind the `providers.base.Adapter` contract

The translation is pure, so it is tested without a socket. This module only wires the pieces together:
`create` gives the family's one adapter (`providers.adapters.adapter("anthropic")` holds it).
"""

from __future__ import annotations

from collections.abc import Mapping

from switchboard.providers.anthropic.adapter import AnthropicAdapter
from switchboard.providers.anthropic.config import AnthropicConfig
from switchboard.providers.anthropic.request import messages_request, translate_messages
from switchboard.providers.anthropic.stream import StreamTranslator, completion_from_message
from switchboard.providers.base import Adapter

__all__ = ["AnthropicAdapter", "AnthropicConfig", "StreamTranslator", "completion_from_message", "create",
           "messages_request", "read_config", "translate_messages"]


def read_config(env: Mapping[str, str]) -> AnthropicConfig:
    """At start-up: the family's config from `env`; ConfigError names a variable with a bad value."""
    return AnthropicConfig.from_env(env)


def create(config: AnthropicConfig | None = None) -> Adapter:
    """The family's adapter, for `config` (by default, the process environment's)."""
    return AnthropicAdapter(config if config is not None else AnthropicConfig.from_env())
