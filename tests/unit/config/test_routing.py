"""SWITCHBOARD_ROUTING is validated once, at start-up: a bad value stops the start naming its field."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from switchboard.config.routing import routing_config
from switchboard.config.settings import Settings, SettingsError


@pytest.mark.parametrize(("config", "field"), [
    ({"tasks": {"t": {"first_token_timeout_ms": -5}}}, "tasks.t.first_token_timeout_ms"),
    ({"tasks": {"t": {"buffer_after_ms": "soon"}}}, "tasks.t.buffer_after_ms"),
    ({"tasks": {"t": {"total_timeout_ms": True}}}, "tasks.t.total_timeout_ms"),
    ({"aliases": {"fast": {"model": ""}}}, "aliases.fast.model"),
    ({"aliases": {"fast": {"fallbacks": "openai/gpt-4.1-mini"}}}, "aliases.fast.fallbacks"),
    ({"aliases": {"fast": {"first_token_timeout_ms": 600_001}}}, "aliases.fast.first_token_timeout_ms"),
    ({"tasks": {"t": {"first_token_timeout": 500}}}, "tasks.t.first_token_timeout"),  # a misspelt knob
])
def test_a_bad_value_names_its_field(config, field) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"SWITCHBOARD_ROUTING": json.dumps(config)})
    assert str(raised.value).startswith(f"SWITCHBOARD_ROUTING: {field}: ")


def test_a_good_configuration_reads_as_knobs() -> None:
    config = routing_config(json.dumps({
        "aliases": {"voice-fast": {"model": "groq/llama-3.3-70b-versatile", "fallbacks": ["openai/gpt-4.1-mini"]}},
        "tasks": {"support": {"first_token_timeout_ms": 1500, "buffer_after_ms": 0}}}))
    assert config.aliases["voice-fast"].model == "groq/llama-3.3-70b-versatile"
    assert config.aliases["voice-fast"].fallbacks == ("openai/gpt-4.1-mini",)
    assert (config.tasks["support"].first_token_timeout_ms, config.tasks["support"].buffer_after_ms) == (1500, 0)


def test_serve_exits_at_start_up_naming_the_field(tmp_path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "SWITCHBOARD_API_KEYS": "sb-test-not-a-real-key",
           "SWITCHBOARD_ROUTING": json.dumps({"tasks": {"t": {"first_token_timeout_ms": -5}}})}
    done = subprocess.run([sys.executable, "-m", "switchboard", "serve", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode != 0
    assert "tasks.t.first_token_timeout_ms" in done.stderr
    assert "serving on" not in done.stderr  # it never claimed to be up
