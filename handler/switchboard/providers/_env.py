"""Reading a family's settings from the environment: the error that names a bad variable, and the parsers.

Families read their own variables (`anthropic/config.py`, `bedrock/config.py`) with these, once, at start-up,
so a value a family cannot use stops the start instead of failing a call. Standard library only: this is on
the start-up path, before any adapter is imported.
"""

from __future__ import annotations

from collections.abc import Mapping


class ConfigError(ValueError):
    """A provider family's setting has a value it cannot use; the message names the variable."""


def whole_number(env: Mapping[str, str], name: str, default: int) -> int:
    """`name` as a whole number from 0 up; unset or blank is `default`."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value
