"""The upstream families switchboard speaks, and where each provider lives.

A provider is a name, an adapter (the wire protocol) and an official base URL. Every
OpenAI-compatible host shares the `openai_compat` adapter and differs only in base URL and key;
Anthropic has its own, and so has Amazon Bedrock, which needs no key (its requests are signed with
the gateway's AWS credentials) and whose regional base URL comes from settings. Adding an
OpenAI-compatible provider is one line in `PROVIDERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from types import ModuleType
from urllib.parse import urlsplit


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    adapter: str  # module in this package: "openai_compat", "anthropic" or "bedrock"
    default_base_url: str | None
    needs_key: bool = True

    @property
    def env_prefix(self) -> str:
        return self.name.upper()


PROVIDERS: dict[str, ProviderSpec] = {
    spec.name: spec
    for spec in (
        ProviderSpec("openai", "openai_compat", "https://api.openai.com/v1"),
        ProviderSpec("anthropic", "anthropic", "https://api.anthropic.com"),
        # Signed with the gateway's AWS credentials; settings.bedrock_endpoint() picks the regional endpoint.
        ProviderSpec("bedrock", "bedrock", None, needs_key=False),
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
        ProviderSpec("simulator", "openai_compat", None, needs_key=False),
    )
}

# Hosts a caller may name in `x-inference-provider-url` without extra configuration, and whose provider they
# belong to (a call there is priced as that provider's): every keyed provider's official host.
OFFICIAL_HOSTS: dict[str, str] = {
    urlsplit(spec.default_base_url).hostname or "": spec.name
    for spec in PROVIDERS.values() if spec.default_base_url and spec.needs_key
}

_adapters: dict[str, ModuleType] = {}


def adapter(name: str) -> ModuleType:
    """The adapter module (imported on first use, so cold start only pays for what it routes to)."""
    module = _adapters.get(name)
    if module is None:
        module = _adapters[name] = import_module(f"switchboard.providers.{name}")
    return module
