"""The providers switchboard knows, the family each one speaks, and the one adapter per family.

A provider is a name, an adapter family (the wire protocol) and an official base URL: who hosts a model is
kept apart from which wire family it speaks. Every OpenAI-compatible host shares the `openai_compat` family
and differs only in base URL and key; Anthropic has its own, and so has Amazon Bedrock, which needs no key
(its requests are signed with the gateway's AWS credentials) and whose regional base URL comes from its
config (`bedrock/config.py`). Adding an OpenAI-compatible provider is one line in `PROVIDERS`.

This module is data only, and imports nothing of the providers: config reads it (import-linter holds config
to the registry), so the adapters themselves are looked up in `providers.adapters`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import import_module
from urllib.parse import urlsplit


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    adapter: str  # its family, a module in this package: "openai_compat", "anthropic" or "bedrock"
    default_base_url: str | None
    needs_key: bool = True
    # "module:function" reading the base URL from the environment, for a host whose URL its family's config
    # decides (Bedrock's regional endpoint); imported only when settings are read
    base_url_from: str | None = None
    listed_models: tuple[str, ...] = ()  # models /v1/models lists without the price catalog (the simulator's)

    @property
    def env_prefix(self) -> str:
        return self.name.upper()


PROVIDERS: dict[str, ProviderSpec] = {
    spec.name: spec
    for spec in (
        ProviderSpec("openai", "openai_compat", "https://api.openai.com/v1"),
        ProviderSpec("anthropic", "anthropic", "https://api.anthropic.com"),
        # Signed with the gateway's AWS credentials; BedrockConfig.endpoint is the regional endpoint.
        ProviderSpec("bedrock", "bedrock", None, needs_key=False,
                     base_url_from="switchboard.providers.bedrock.config:base_url"),
        ProviderSpec("groq", "openai_compat", "https://api.groq.com/openai/v1"),
        ProviderSpec("together", "openai_compat", "https://api.together.xyz/v1"),
        ProviderSpec("fireworks", "openai_compat", "https://api.fireworks.ai/inference/v1"),
        ProviderSpec("cerebras", "openai_compat", "https://api.cerebras.ai/v1"),
        ProviderSpec("deepinfra", "openai_compat", "https://api.deepinfra.com/v1/openai"),
        ProviderSpec("openrouter", "openai_compat", "https://openrouter.ai/api/v1"),
        ProviderSpec("mistral", "openai_compat", "https://api.mistral.ai/v1"),
        ProviderSpec("xai", "openai_compat", "https://api.x.ai/v1"),
        ProviderSpec("gemini", "openai_compat", "https://generativelanguage.googleapis.com/v1beta/openai"),
        ProviderSpec("sambanova", "openai_compat", "https://api.sambanova.ai/v1"),
        # Ollama by default; vLLM and llama.cpp servers work the same way via LOCAL_BASE_URL.
        ProviderSpec("local", "openai_compat", "http://127.0.0.1:11434/v1", needs_key=False),
        # The simulated upstream (`switchboard simulator`); its base URL is set when one runs.
        ProviderSpec("simulator", "openai_compat", None, needs_key=False, listed_models=("echo", "tools", "slow")),
    )
}

# The wire protocols, each a module in this package, in the order the table first names them: a new family is
# its folder plus the provider lines that speak it.
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(spec.adapter for spec in PROVIDERS.values()))

# Hosts a caller may name in `x-inference-provider-url` without extra configuration, and whose provider they
# belong to (a call there is priced as that provider's): every keyed provider's official host.
OFFICIAL_HOSTS: dict[str, str] = {
    urlsplit(spec.default_base_url).hostname or "": spec.name
    for spec in PROVIDERS.values() if spec.default_base_url and spec.needs_key
}


def base_url(spec: ProviderSpec, env: Mapping[str, str]) -> str | None:
    """Where the provider's calls go: `<NAME>_BASE_URL`, else its official URL, else what its family's config
    reads (a ValueError naming the variable for a bad value)."""
    if spec.base_url_from is not None:
        module, _, function = spec.base_url_from.partition(":")
        found: str | None = getattr(import_module(module), function)(env)
        return found
    return env.get(f"{spec.env_prefix}_BASE_URL") or spec.default_base_url
