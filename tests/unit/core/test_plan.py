"""core/plan: the routes a call tries, in order, and its clocks: settings, then alias and task, then headers."""

from __future__ import annotations

import json

import pytest

from switchboard.config.settings import Settings
from switchboard.core.plan import plan, resolve, split_model
from switchboard.wire.errors import GatewayError

KEYS = {"openai": "sk-test-openai-not-real", "groq": "gsk-test-not-real", "anthropic": "sk-ant-test-not-real"}
ROUTING = {"aliases": {"voice-fast": {"model": "groq/llama-3.3-70b-versatile", "fallbacks": ["openai/gpt-4.1-mini"],
                                      "first_token_timeout_ms": 700}},
           "tasks": {"support": {"fallbacks": ["anthropic/claude-haiku-4-5"], "first_token_timeout_ms": 1500,
                                 "buffer_after_ms": 0}}}


def settings(**env: str) -> Settings:
    return Settings.from_env({"SWITCHBOARD_ROUTING": json.dumps(ROUTING), **env})


def planned(model: str, task: str = "default", headers: dict | None = None, **env: str):
    return plan(model, task, headers or {}, settings(**env), KEYS.get)


def test_an_alias_names_the_primary_and_its_fallbacks_in_order() -> None:
    call = planned("voice-fast")
    assert [(r.provider, r.model) for r in call.routes] == [("groq", "llama-3.3-70b-versatile"),
                                                           ("openai", "gpt-4.1-mini")]
    assert call.routes[0].requested_model == "groq/llama-3.3-70b-versatile"


def test_the_task_clock_wins_over_the_alias_and_the_header_over_both() -> None:
    assert planned("voice-fast").first_token_timeout_s == 0.7
    assert planned("voice-fast", "support").first_token_timeout_s == 1.5
    header = {"x-switchboard-first-token-timeout-ms": "250"}
    assert planned("voice-fast", "support", header).first_token_timeout_s == 0.25


def test_zero_milliseconds_turns_a_clock_off_and_no_value_keeps_the_setting() -> None:
    assert planned("openai/gpt-4.1-mini", "support").buffer_after_s is None
    assert planned("openai/gpt-4.1-mini", SWITCHBOARD_FIRST_TOKEN_TIMEOUT_MS="3000").first_token_timeout_s == 3.0


def test_header_fallbacks_replace_the_configured_ones_and_are_capped() -> None:
    call = planned("voice-fast", "support", {"x-switchboard-fallbacks": "anthropic/claude-sonnet-4-6"})
    assert [r.provider for r in call.routes] == ["groq", "anthropic"]
    with pytest.raises(GatewayError) as raised:
        planned("voice-fast", headers={"x-switchboard-fallbacks": ",".join(["openai/gpt-4.1-mini"] * 5)})
    assert (raised.value.status, raised.value.code) == (400, "too_many_fallbacks")


def test_a_fallback_equal_to_the_primary_is_tried_once() -> None:
    call = planned("openai/gpt-4.1-mini", headers={"x-switchboard-fallbacks": "openai/gpt-4.1-mini"})
    assert len(call.routes) == 1


@pytest.mark.parametrize("value", ["-1", "1.5", "soon", "600001"])
def test_a_bad_clock_header_is_a_400_naming_it(value) -> None:
    with pytest.raises(GatewayError) as raised:
        planned("openai/gpt-4.1-mini", headers={"x-switchboard-buffer-after-ms": value})
    assert (raised.value.status, raised.value.param) == (400, "x-switchboard-buffer-after-ms")


def test_a_caller_named_provider_url_binds_the_primary_only() -> None:
    headers = {"x-inference-provider-url": "api.groq.com", "x-inference-provider-api-key": "gsk-caller-not-real"}
    call = planned("llama-3.3-70b-versatile", headers={**headers, "x-switchboard-fallbacks": "openai/gpt-4.1-mini"})
    primary, fallback = call.routes
    assert (primary.provider, primary.api_key, primary.billed_as) == ("custom", "gsk-caller-not-real", "groq")
    assert (fallback.provider, fallback.api_key) == ("openai", KEYS["openai"])


def test_model_names_split_by_prefix_or_well_known_bare_names() -> None:
    assert split_model("groq/llama-3.3-70b") == ("groq", "llama-3.3-70b")
    assert split_model("gpt-4.1-mini") == ("openai", "gpt-4.1-mini")
    assert split_model("claude-haiku-4-5") == ("anthropic", "claude-haiku-4-5")
    for bad in ("mystery-model", "groq/"):
        with pytest.raises(GatewayError):
            split_model(bad)


def test_a_provider_without_its_key_is_refused_with_the_variable_to_set() -> None:
    with pytest.raises(GatewayError) as raised:
        resolve("together/llama", {}, settings(), KEYS.get)
    assert raised.value.code == "provider_not_configured" and "TOGETHER_API_KEY" in raised.value.message
