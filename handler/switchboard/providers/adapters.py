"""The adapters of one gateway: one per family, each built on first use from the config read at start-up.

A family is a module `switchboard.providers.<family>` (`registry.FAMILIES`) with two functions:
`read_config(env)`, cheap (standard library only), which `Adapters(env)` calls at once so that a bad value
stops the start; and `create(config)`, which builds its `Adapter` and may import what only calls need
(Bedrock's botocore). An adapter is built on its first use, so a cold start pays only for the families it
routes to. (The registry's provider table is apart, in `registry`: config reads that, and may not reach the
adapters.)
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module

from switchboard.providers.base import Adapter
from switchboard.providers.registry import FAMILIES


class Adapters:
    """`adapters(family)`: the family's one adapter for this gateway."""

    def __init__(self, env: Mapping[str, str]) -> None:
        """Reads every family's config from `env`: a value a family cannot use raises its ConfigError (a
        ValueError naming the variable) before any call is taken."""
        self.configs: dict[str, object] = {
            family: import_module(f"switchboard.providers.{family}").read_config(env) for family in FAMILIES}
        self._built: dict[str, Adapter] = {}

    def __call__(self, family: str) -> Adapter:
        found = self._built.get(family)
        if found is None:
            found = self._built[family] = import_module(f"switchboard.providers.{family}").create(self.configs[family])
        return found
