"""What the Anthropic family is configured with: the API version it speaks and the max_tokens it sends.

Read once, at start-up, from the variables the gateway has always read (standard library only: no adapter is
imported to read it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from switchboard.providers._env import whole_number

API_VERSION = "2023-06-01"  # the `anthropic-version` header: the Messages API this adapter is written against
DEFAULT_MAX_TOKENS = 4096


@dataclass(frozen=True)
class AnthropicConfig:
    version: str = API_VERSION
    # Anthropic requires max_tokens and OpenAI does not: sent when a request names none (and, when Claude
    # thinks, the answer's room on top of the thinking budget). SWITCHBOARD_ANTHROPIC_MAX_TOKENS.
    default_max_tokens: int = DEFAULT_MAX_TOKENS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AnthropicConfig:
        """From `env` (the process environment by default); ConfigError names a variable with a bad value."""
        env = os.environ if env is None else env
        return cls(default_max_tokens=whole_number(env, "SWITCHBOARD_ANTHROPIC_MAX_TOKENS", DEFAULT_MAX_TOKENS))
