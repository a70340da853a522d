"""The Bedrock adapter: request and stream translation checked against botocore's own service model, then
real signed calls over loopback to the simulated Bedrock, whose SigV4 check is written from AWS's spec
(so a wrongly signed request is refused for real) and whose event stream boto3's own client must parse."""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
import time

import boto3
import botocore.session
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError
from botocore.serialize import create_serializer
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from switchboard.core.attempts import retryable
from switchboard.http.serving import BackgroundServer
from switchboard.providers import _translate as claude_rules
from switchboard.providers import bedrock
from switchboard.providers._env import ConfigError
from switchboard.providers.base import UpstreamStats
from switchboard.providers.bedrock import errors as bedrock_errors
from switchboard.providers.bedrock import request as converse
from switchboard.providers.bedrock import stream as converse_stream
from switchboard.providers.bedrock.config import BedrockConfig
from switchboard.providers.registry import PROVIDERS
from switchboard.providers.transport.client import UpstreamClient
from switchboard.simulator import Script, SimulatorApp
from switchboard.simulator.bedrock_api import (
    AwsKey,
    encode_message,
    event_message,
    exception_message,
    request_problem,
)
from switchboard.wire.chat import Route, UpstreamError
from switchboard.wire.errors import GatewayError
from tests.conftest import EXTRA_SECRETS, LOGS

ACCESS_KEY = "AKIDTESTFAKEUNIT0001"
SECRET = "bedrock-unit-secret-fake-0123456789"
WRONG_SECRET = "bedrock-unit-wrong-secret-fake-987"
MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
PROFILE_ARN = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/{MODEL}"
CONFIG = BedrockConfig(region="us-east-1")
ADAPTER = bedrock.create(CONFIG)
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["c", "f"]}}}}}
NO_ARGS_TOOL = {"type": "function", "function": {"name": "skip_turn", "description": "",
                                                 "parameters": {"type": "object", "properties": {}}}}
HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def bedrock_sim():
    EXTRA_SECRETS.extend([SECRET, WRONG_SECRET])
    app = SimulatorApp(Script(), aws_keys={ACCESS_KEY: AwsKey(SECRET)})
    server = BackgroundServer(app).start()
    yield app, server.url
    server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    """Fake credentials in the environment, nothing else botocore could find, and a fresh credential cache."""
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CREDENTIAL_EXPIRATION",
                 "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_LAMBDA_FUNCTION_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(bedrock, "CREDENTIALS", bedrock.AwsCredentials())


def _route(base_url: str, model: str = MODEL) -> Route:
    return Route("bedrock", "bedrock", model, base_url, None, f"bedrock/{model}")


def _body(**fields) -> dict:
    return {"model": f"bedrock/{MODEL}", "stream": True, "stream_options": {"include_usage": True},
            "messages": HELLO, **fields}


async def _pairs(base_url: str, body: dict, model: str = MODEL,
                 stats: UpstreamStats | None = None) -> list[tuple[bytes, dict]]:
    async with UpstreamClient(connect_timeout=5, read_timeout=5) as client:
        out = []
        async for batch in ADAPTER.stream(client, _route(base_url, model), body, stats):
            assert batch, "batches are never empty"
            out += batch
        return out


def _stream(base_url: str, body: dict, model: str = MODEL) -> list[dict]:
    chunks = [parsed for _raw, parsed in asyncio.run(_pairs(base_url, body, model))]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    return chunks


def _stream_until_error(base_url: str, body: dict, model: str = MODEL) -> tuple[list[dict], UpstreamError]:
    chunks: list[dict] = []

    async def run() -> None:
        async with UpstreamClient(connect_timeout=5, read_timeout=5) as client:
            async for batch in ADAPTER.stream(client, _route(base_url, model), body):
                chunks.extend(parsed for _raw, parsed in batch)

    with pytest.raises(UpstreamError) as caught:
        asyncio.run(run())
    return chunks, caught.value


def _complete(base_url: str, body: dict, model: str = MODEL, stats: UpstreamStats | None = None) -> dict:
    async def run() -> dict:
        async with UpstreamClient(connect_timeout=5, read_timeout=5) as client:
            return await ADAPTER.complete(client, _route(base_url, model), body, stats)

    return asyncio.run(run())


def _deltas(chunks: list[dict]) -> list[dict]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


def _valid_for_aws(payload: dict) -> None:
    """What AWS accepts, by botocore's service model and Bedrock's conversation rules (the simulator's check)."""
    assert request_problem(payload, MODEL, streaming=True) is None


# --- request translation ---------------------------------------------------------------------------


def test_system_turns_become_system_blocks_and_same_role_turns_merge():
    payload = converse.converse_request({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Speak French."}]},
        {"role": "user", "content": "Bonjour"},
        {"role": "user", "content": [{"type": "text", "text": "Ça va ?"}, {"type": "text", "text": "  "}]},
        {"role": "system", "content": "   "},
    ], "model": "bedrock/x", "stream": True, "stream_options": {"include_usage": True}, "n": 1, "user": "u1"})
    assert payload == {"system": [{"text": "Be brief."}, {"text": "Speak French."}],
                       "messages": [{"role": "user", "content": [{"text": "Bonjour"}, {"text": "Ça va ?"}]}]}
    _valid_for_aws(payload)


def test_a_conversation_that_opens_with_the_agent_greeting_gets_a_user_turn_first():
    payload = converse.converse_request({"messages": [
        {"role": "system", "content": "You are a receptionist."},
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": "Book a table."}]})
    assert [m["role"] for m in payload["messages"]] == ["user", "assistant", "user"]
    assert payload["messages"][0]["content"] == [{"text": converse.CONVERSATION_START}]
    _valid_for_aws(payload)


def test_tool_calls_and_results_round_trip():
    payload = converse.converse_request({"tools": [WEATHER_TOOL], "messages": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{not json"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": ""},
        {"role": "user", "content": "And tomorrow?"},
    ]})
    assert payload["messages"][1] == {"role": "assistant", "content": [
        {"text": "Checking."},
        {"toolUse": {"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Paris"}}},
        {"toolUse": {"toolUseId": "call_2", "name": "get_weather", "input": {}}}]}
    assert payload["messages"][2] == {"role": "user", "content": [
        {"toolResult": {"toolUseId": "call_1", "content": [{"text": "18C"}]}},
        {"toolResult": {"toolUseId": "call_2", "content": [{"text": converse.EMPTY_TOOL_RESULT}]}},
        {"text": "And tomorrow?"}]}
    assert len(payload["messages"]) == 3
    _valid_for_aws(payload)


def test_tools_become_tool_specs_and_tool_choice_maps():
    payload = converse.converse_request({"messages": HELLO, "tools": [WEATHER_TOOL, NO_ARGS_TOOL],
                                        "tool_choice": "required"})
    assert payload["toolConfig"] == {"tools": [
        {"toolSpec": {"name": "get_weather", "description": "Weather for a city",
                      "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]}}},
        {"toolSpec": {"name": "skip_turn", "inputSchema": {"json": {"type": "object", "properties": {}}}}}],
        "toolChoice": {"any": {}}}
    _valid_for_aws(payload)
    choices = {"auto": {"auto": {}}, "required": {"any": {}},
               json.dumps({"type": "function", "function": {"name": "skip_turn"}}): {"tool": {"name": "skip_turn"}}}
    for given, expected in choices.items():
        choice = json.loads(given) if given.startswith("{") else given
        config = converse.converse_request({"messages": HELLO, "tools": [WEATHER_TOOL], "tool_choice": choice})
        assert config["toolConfig"]["toolChoice"] == expected
    assert "toolChoice" not in converse.converse_request({"messages": HELLO, "tools": [WEATHER_TOOL]})["toolConfig"]


def test_tool_choice_none_withholds_tools_unless_the_history_needs_them():
    assert "toolConfig" not in converse.converse_request({"messages": HELLO, "tools": [WEATHER_TOOL],
                                                         "tool_choice": "none"})
    history = HELLO + [
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "end_call", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}]
    payload = converse.converse_request({"messages": history, "tools": [WEATHER_TOOL], "tool_choice": "none"})
    # Converse refuses tool blocks without a tool config, and has no "none": only the tools used are declared.
    assert payload["toolConfig"] == {"tools": [
        {"toolSpec": {"name": "end_call", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]}
    _valid_for_aws(payload)
    assert converse.converse_request({"messages": history})["toolConfig"] == payload["toolConfig"]


def test_inference_config():
    payload = converse.converse_request({"messages": HELLO, "max_tokens": 50, "max_completion_tokens": 80,
                                        "temperature": 1.7, "top_p": 0.9, "stop": "END"})
    assert payload["inferenceConfig"] == {"maxTokens": 80, "temperature": 1.0, "topP": 0.9, "stopSequences": ["END"]}
    _valid_for_aws(payload)
    payload = converse.converse_request({"messages": HELLO, "max_tokens": True, "temperature": "hot",
                                        "stop": ["a", "", 3]})
    assert payload["inferenceConfig"] == {"stopSequences": ["a"]}
    assert "inferenceConfig" not in converse.converse_request({"messages": HELLO})


def test_images_travel_as_bytes_and_web_urls_are_refused():
    content = [{"type": "text", "text": "What is this?"},
               {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,aGVsbG8="}}]
    payload = converse.converse_request({"messages": [{"role": "user", "content": content}]})
    assert payload["messages"][0]["content"][1] == {"image": {"format": "jpeg", "source": {"bytes": "aGVsbG8="}}}
    _valid_for_aws(payload)
    for part in ({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                 {"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AAAA"}},
                 {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}):
        with pytest.raises(GatewayError) as caught:
            converse.converse_request({"messages": [{"role": "user", "content": [part]}]})
        assert caught.value.status == 400


# --- reasoning_effort -> additionalModelRequestFields ------------------------------------------------


def _reasoning(model: str, **fields) -> dict:
    payload = converse.converse_request({"messages": HELLO, **fields}, model, default_max_tokens=321)
    assert request_problem(payload, model, streaming=True) is None  # the simulated model's native API takes it
    return {name: payload[name] for name in ("additionalModelRequestFields", "inferenceConfig") if name in payload}


CLAUDE_OLD = ["anthropic.claude-3-7-sonnet-20250219-v1:0", MODEL, "eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
              "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-opus-4-1-20250805-v1:0"]
CLAUDE_ADAPTIVE = ["global.anthropic.claude-sonnet-4-6", "anthropic.claude-opus-4-6-v1", "us.anthropic.claude-opus-4-7",
                   "arn:aws:bedrock:us-east-1:123456789012:inference-profile/apac.anthropic.claude-sonnet-5-v1:0"]
NOT_REASONING = ["us.deepseek.r1-v1:0", "meta.llama3-3-70b-instruct-v1:0", "mistral.mistral-large-2407-v1:0",
                 "amazon.nova-pro-v1:0", "cohere.command-r-plus-v1:0",
                 "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3"]


@pytest.mark.parametrize("effort", ["low", "medium", "high", "xhigh", "max"])
def test_claude_on_bedrock_gets_the_anthropic_adapter_s_thinking(effort):
    budget = claude_rules.THINKING_BUDGETS[effort]
    for model in CLAUDE_OLD:
        assert _reasoning(model, reasoning_effort=effort) == {
            "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": budget}},
            "inferenceConfig": {"maxTokens": 321 + budget}}, model
    for model in CLAUDE_ADAPTIVE:
        assert _reasoning(model, reasoning_effort=effort) == {
            "additionalModelRequestFields": {"thinking": {"type": "adaptive"},
                                             "output_config": {"effort": claude_rules.ADAPTIVE_EFFORTS[effort]}},
            "inferenceConfig": {"maxTokens": 321 + budget}}, model


@pytest.mark.parametrize(("effort", "folded"), [("minimal", "low"), ("low", "low"), ("medium", "medium"),
                                                ("high", "high"), ("xhigh", "high"), ("max", "high")])
def test_gpt_oss_and_nova_2_get_their_own_fields_folded_to_low_medium_high(effort, folded):
    for model in ("openai.gpt-oss-120b-1:0", "us.openai.gpt-oss-20b-1:0"):
        assert _reasoning(model, reasoning_effort=effort, temperature=0.3) == {
            "additionalModelRequestFields": {"reasoning_effort": folded}, "inferenceConfig": {"temperature": 0.3}}
    for model in ("amazon.nova-2-lite-v1:0", "global.amazon.nova-2-lite-v1:0"):
        assert _reasoning(model, reasoning_effort=effort) == {"additionalModelRequestFields": {
            "reasoningConfig": {"type": "enabled", "maxReasoningEffort": folded}}}


@pytest.mark.parametrize("model", CLAUDE_OLD + CLAUDE_ADAPTIVE + NOT_REASONING + ["openai.gpt-oss-120b-1:0",
                                                                                  "amazon.nova-2-lite-v1:0"])
def test_none_and_absent_send_nothing(model):
    assert _reasoning(model, reasoning_effort="none") == {} and _reasoning(model) == {}


@pytest.mark.parametrize("model", NOT_REASONING)
def test_models_that_take_no_effort_get_nothing(model):
    """DeepSeek R1 always reasons; Llama, Mistral, Nova 1, Cohere never do (nor is an application profile's
    model known from its ARN): the simulator refuses reasoning fields they do not know, as they would."""
    assert _reasoning(model, reasoning_effort="high") == {}


def test_minimal_is_off_for_claude():
    assert _reasoning(MODEL, reasoning_effort="minimal") == {}


def test_claude_thinking_on_bedrock_keeps_anthropic_s_rules():
    assert _reasoning(MODEL, reasoning_effort="high", max_tokens=3000, temperature=0.2, top_p=0.5, stop="END") == {
        "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1500}},
        "inferenceConfig": {"maxTokens": 3000, "stopSequences": ["END"]}}
    assert _reasoning(MODEL, reasoning_effort="high", max_tokens=2047) == {"inferenceConfig": {"maxTokens": 2047}}
    assert _reasoning(MODEL, reasoning_effort="low", temperature=1, top_p=0.96)["inferenceConfig"] == {
        "maxTokens": 321 + 1024, "temperature": 1.0, "topP": 0.96}
    forced = _reasoning(MODEL, reasoning_effort="high", tools=[WEATHER_TOOL], tool_choice="required")
    assert "additionalModelRequestFields" not in forced
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert "additionalModelRequestFields" not in _reasoning(MODEL, reasoning_effort="high", tools=[WEATHER_TOOL],
                                                            tool_choice=named)
    assert "additionalModelRequestFields" in _reasoning(MODEL, reasoning_effort="high", tools=[WEATHER_TOOL])


@pytest.mark.parametrize(("tail", "thinks"), [
    ([], False),  # the tool-use turn in progress
    ([{"role": "user", "content": "And Rome?"}], False),  # the results still answer the tool call
    ([{"role": "assistant", "content": "It is 18C."}, {"role": "user", "content": "Thanks"}], True)])
def test_claude_on_bedrock_answers_a_tool_turn_in_progress_without_thinking(tail, thinks):
    history = HELLO + [
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"}] + tail
    fields = _reasoning(MODEL, reasoning_effort="high", tools=[WEATHER_TOOL], messages=history)
    assert ("additionalModelRequestFields" in fields) is thinks
    prefill = _reasoning(MODEL, reasoning_effort="high", messages=HELLO + [{"role": "assistant", "content": "It"}])
    assert prefill == {}


@pytest.mark.parametrize("effort", ["extreme", "", 2, None.__class__.__name__])
def test_an_unknown_effort_is_a_400(effort):
    with pytest.raises(GatewayError) as caught:
        converse.converse_request({"messages": HELLO, "reasoning_effort": effort}, MODEL)
    assert (caught.value.status, caught.value.param, caught.value.code) == (400, "reasoning_effort",
                                                                          "invalid_reasoning_effort")


def test_the_claude_tables_are_the_anthropic_adapter_s():
    """One set of Claude rules for both families (providers/_translate.py): a model named the Bedrock way thinks
    exactly as the same model named the Anthropic way."""
    from switchboard.providers import anthropic
    from switchboard.providers.anthropic.config import AnthropicConfig

    for model in ("claude-opus-4-7", "claude-3-7-sonnet-20250219", "claude-opus-4-20250514", "claude-sonnet-5",
                  "claude-sim"):
        assert claude_rules.claude_version("anthropic." + model + "-v1:0") == claude_rules.claude_version(model)
        for effort in claude_rules.REASONING_EFFORTS:
            for max_tokens in ({}, {"max_tokens": 3000}, {"max_tokens": 1500}):
                body = {"messages": HELLO, "reasoning_effort": effort, **max_tokens}
                on_bedrock = converse.converse_request(body, "anthropic." + model + "-v1:0", 321)
                on_anthropic = anthropic.messages_request(body, model, AnthropicConfig(default_max_tokens=321), True)
                fields = on_bedrock.get("additionalModelRequestFields", {})
                assert fields.get("thinking") == on_anthropic.get("thinking"), (model, effort)
                assert fields.get("output_config") == on_anthropic.get("output_config"), (model, effort)
                if "thinking" in fields:
                    assert on_bedrock["inferenceConfig"]["maxTokens"] == on_anthropic["max_tokens"]


def test_the_base_model_is_found_as_the_price_catalog_finds_it():
    from switchboard.ledger.pricing import bedrock_base_model

    for model in [MODEL, PROFILE_ARN, "global.anthropic.claude-sonnet-4-6", "us-gov.anthropic.claude-3-haiku-v1:0",
                  "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-2-lite-v1:0",
                  "meta.llama3-8b-instruct-v1:0"]:
        assert converse.base_model_id(model) == bedrock_base_model(model)


def test_reasoning_deltas_drop_signatures_and_redacted_content():
    chunks, _ = _translate([
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hm."}}}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "SIG"}}}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"reasoningContent": {"redactedContent": "QkxPQg=="}}}),
        ("contentBlockStop", {"contentBlockIndex": 1}),
        ("contentBlockDelta", {"contentBlockIndex": 2, "delta": {"text": "Yes."}}),
        ("messageStop", {"stopReason": "end_turn"})])
    assert _deltas(chunks) == [{"role": "assistant", "content": ""}, {"reasoning_content": "Hm."},
                               {"content": "Yes."}, {}]
    assert "SIG" not in json.dumps(chunks) and "QkxPQg" not in json.dumps(chunks)


@pytest.mark.parametrize(("model", "extra", "inference", "message"), [
    (MODEL, {"thinking": {"type": "enabled", "budget_tokens": 1000}}, {"maxTokens": 4000}, "greater than or equal"),
    (MODEL, {"thinking": {"type": "enabled", "budget_tokens": 4000}}, {"maxTokens": 4000}, "must be greater than"),
    (MODEL, {"thinking": {"type": "enabled", "budget_tokens": 4096}}, None, "must be greater than"),  # 4096 assumed
    (MODEL, {"thinking": {"type": "enabled", "budget_tokens": 1024}}, {"maxTokens": 4000, "temperature": 0.5},
     "temperature may only be set to 1"),
    (MODEL, {"thinking": {"type": "enabled", "budget_tokens": 1024}}, {"maxTokens": 4000, "topP": 0.5}, "top_p"),
    ("us.anthropic.claude-opus-4-7", {"thinking": {"type": "enabled", "budget_tokens": 1024}}, {"maxTokens": 4000},
     "not supported for this model"),
    (MODEL, {"thinking": {"type": "adaptive"}}, {"maxTokens": 4000}, "adaptive thinking is not supported"),
    ("openai.gpt-oss-120b-1:0", {"reasoning_effort": "max"}, None, "reasoning_effort must be one of"),
    ("amazon.nova-2-lite-v1:0", {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "max"}}, None,
     "reasoningConfig"),
    ("meta.llama3-3-70b-instruct-v1:0", {"reasoning_effort": "low"}, None, "extraneous key [reasoning_effort]"),
    ("openai.gpt-oss-120b-1:0", {"thinking": {"type": "enabled", "budget_tokens": 1024}}, None,
     "extraneous key [thinking]"),
])
def test_the_simulator_refuses_what_each_model_s_native_api_refuses(model, extra, inference, message):
    payload = {"messages": [{"role": "user", "content": [{"text": "hi"}]}], "additionalModelRequestFields": extra}
    if inference:
        payload["inferenceConfig"] = inference
    assert message in (request_problem(payload, model, streaming=True) or "")


def test_the_simulator_wants_claude_s_thinking_block_in_a_tool_turn_and_a_prefill():
    tool_turn = [{"role": "user", "content": [{"text": "hi"}]},
                 {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "t", "input": {}}}]},
                 {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "ok"}]}}]}]
    config = {"tools": [{"toolSpec": {"name": "t", "inputSchema": {"json": {"type": "object"}}}}]}
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    for messages, tool_config in ((tool_turn, config), (tool_turn[:1] + [{"role": "assistant",
                                                                         "content": [{"text": "It"}]}], None)):
        payload = {"messages": messages, "inferenceConfig": {"maxTokens": 4000},
                   "additionalModelRequestFields": thinking}
        if tool_config:
            payload["toolConfig"] = tool_config
        assert "must start with a thinking block" in request_problem(payload, MODEL, streaming=True)
    forced = {"messages": tool_turn[:1], "inferenceConfig": {"maxTokens": 4000},
              "additionalModelRequestFields": thinking, "toolConfig": {**config, "toolChoice": {"any": {}}}}
    assert "forces tool use" in request_problem(forced, MODEL, streaming=True)


# --- model ids, checked before anything is signed -------------------------------------------------------


@pytest.mark.parametrize("model", [MODEL, "anthropic.claude-3-haiku-20240307-v1:0", PROFILE_ARN, "deepseek.r1-v1:0",
                                   "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0",
                                   "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3",
                                   "x" * 2048, "my_model.v-1:0"])
def test_model_ids_bedrock_takes(model):
    converse.check_model_id(model)


@pytest.mark.parametrize("model", ["", ".", "..", "....", "a/b", "us.anthropic/../x", "x" * 2049, "a b", "a%2Fb",
                                   "a?b", "a#b", "é", "arn:aws:bedrock:x:y:inference-profile/..",
                                   "arn:aws:bedrock:x:y:inference-profile/", "arn:aws:bedrock:x:y//z",
                                   "arn:aws:bedrock:x:y/./z", "/arn:x", "a\nb"])
def test_model_ids_bedrock_cannot_take_are_the_caller_s_400(model):
    with pytest.raises(GatewayError) as caught:
        converse.check_model_id(model)
    error = caught.value
    assert (error.status, error.param, error.code) == (400, "model", "invalid_model")
    assert converse.MODEL_ID_FORMS in error.message


# --- key material: scrubbed before parsing, never left at a cut -------------------------------------------


FAKE_KEY = "Zq7Xw9Kp2Lm4Nv6Bt8Rc0Yd3Hf5Gj1SaQe/W+uTz"


def _pieces(text: str, key: str = FAKE_KEY) -> list[str]:
    return [key[i:i + 8] for i in range(len(key) - 7) if key[i:i + 8] in text]


@pytest.mark.parametrize("left", [8, 12, 39])
def test_aws_error_cuts_leave_no_key_prefix(left):
    message = "m" * (1000 - left) + FAKE_KEY
    error_type, text = bedrock_errors.aws_error(json.dumps({"message": message}).encode(), {}, (FAKE_KEY, None))
    assert len(text) <= 1000 and _pieces(text) == [] and text.startswith("mmm")
    _, text = bedrock_errors.aws_error(b"E" * (300 - left) + FAKE_KEY.encode(), {}, (FAKE_KEY,))
    assert text.startswith("EEE") and _pieces(text) == []
    error_type, _ = bedrock_errors.aws_error(b"{}", {"x-amzn-errortype": "T" * (100 - left) + FAKE_KEY}, (FAKE_KEY,))
    assert error_type.startswith("TTT") and _pieces(error_type) == []


def test_stream_exceptions_are_scrubbed_and_cut_clean():
    error = bedrock_errors.stream_exception("bedrock", "validationException", "leaked " + FAKE_KEY, (FAKE_KEY, None))
    assert FAKE_KEY not in error.message and "[redacted]" in error.message
    prefix = "Upstream provider 'bedrock' failed mid-stream: validationException: "
    message = "m" * (1200 - len(prefix) - 12) + FAKE_KEY
    error = bedrock_errors.stream_exception("bedrock", "validationException", message, (FAKE_KEY,))
    assert len(error.message) <= 1200 and _pieces(error.message) == []


# --- addressing, settings ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [MODEL, "anthropic.claude-3-haiku-20240307-v1:0", "amazon.nova-micro-v1:0",
                                   "meta.llama3-3-70b-instruct-v1:0", "mistral.mistral-large-2407-v1:0",
                                   PROFILE_ARN, "global.anthropic.claude-sonnet-4-6"])
def test_model_ids_are_encoded_in_the_path_as_the_aws_sdk_encodes_them(model):
    operation = botocore.session.get_session().get_service_model("bedrock-runtime").operation_model("ConverseStream")
    sdk = create_serializer("rest-json").serialize_to_request({"modelId": model, "messages": []}, operation)
    url = converse.converse_url("https://bedrock-runtime.us-east-1.amazonaws.com", model, stream=True)
    assert url == "https://bedrock-runtime.us-east-1.amazonaws.com" + sdk["url_path"]
    assert ":" not in url.split("/model/")[1] and url.endswith("/converse-stream")
    assert converse.converse_url("http://h", model, stream=False).endswith("/converse")


def test_region_and_endpoint_settings():
    def config(**env: str) -> BedrockConfig:
        return BedrockConfig.from_env(env)

    assert config(AWS_DEFAULT_REGION="eu-west-1").endpoint == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    chosen = config(BEDROCK_REGION="us-west-2", AWS_REGION="eu-central-1", AWS_DEFAULT_REGION="ap-south-1")
    assert chosen.region == "us-west-2"
    assert chosen.endpoint == "https://bedrock-runtime.us-west-2.amazonaws.com"
    assert config(AWS_REGION="eu-central-1", AWS_DEFAULT_REGION="ap-south-1").region == "eu-central-1"
    assert config(AWS_REGION="cn-north-1").endpoint == "https://bedrock-runtime.cn-north-1.amazonaws.com.cn"
    local = config(AWS_REGION="us-east-1", AWS_ENDPOINT_URL_BEDROCK_RUNTIME="http://127.0.0.1:8100/")
    assert local.endpoint == "http://127.0.0.1:8100"
    assert not PROVIDERS["bedrock"].needs_key  # an endpoint is all Bedrock needs to be configured
    assert config(BEDROCK_BASE_URL="http://127.0.0.1:8200").endpoint == "http://127.0.0.1:8200"
    assert config().endpoint is None
    with pytest.raises(ConfigError, match="BEDROCK_REGION"):
        config(BEDROCK_REGION="us-east-1.evil.example")
    with pytest.raises(ConfigError, match="SWITCHBOARD_ANTHROPIC_MAX_TOKENS"):
        config(SWITCHBOARD_ANTHROPIC_MAX_TOKENS="lots")
    assert config(SWITCHBOARD_ANTHROPIC_MAX_TOKENS="321").default_max_tokens == 321


def test_signing_region():
    assert BedrockConfig(region="eu-west-3").signing_region("http://127.0.0.1:1") == "eu-west-3"
    assert BedrockConfig().signing_region("https://bedrock-runtime.ap-northeast-1.amazonaws.com") == \
        "ap-northeast-1"
    assert BedrockConfig().signing_region("http://127.0.0.1:8100") == "us-east-1"


# --- stream translation ------------------------------------------------------------------------------


def _translate(events: list[tuple[str, dict]]) -> tuple[list[dict], converse_stream.StreamTranslator]:
    translator = converse_stream.StreamTranslator(MODEL, "req-1", created=1)
    chunks = [chunk for event_type, event in events for chunk in translator.feed(event_type, event)]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    return chunks, translator


def _tool_start(block: int, tool_id: str, name: str) -> tuple[str, dict]:
    return "contentBlockStart", {"contentBlockIndex": block, "start": {"toolUse": {"toolUseId": tool_id, "name": name}}}


def _tool_input(block: int, fragment: str) -> tuple[str, dict]:
    return "contentBlockDelta", {"contentBlockIndex": block, "delta": {"toolUse": {"input": fragment}}}


def test_text_usage_and_latency_and_nothing_after_the_finish_but_usage():
    chunks, translator = _translate([
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": ""}}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}, "p": "abc"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " there"}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        ("messageStop", {"stopReason": "end_turn"}),
        ("metadata", {"usage": {"inputTokens": 5, "outputTokens": 2, "totalTokens": 97,
                                "cacheReadInputTokens": 60, "cacheWriteInputTokens": 30},
                      "metrics": {"latencyMs": 321}}),
    ])
    assert [c["choices"][0]["delta"] if c["choices"] else "usage" for c in chunks] == [
        {"role": "assistant", "content": ""}, {"content": "Hi"}, {"content": " there"}, {}, "usage"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1] == {"id": "chatcmpl-req-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
                          "choices": [], "usage": {"prompt_tokens": 95, "completion_tokens": 2, "total_tokens": 97,
                                                   "prompt_tokens_details": {"cached_tokens": 60,
                                                                             "cache_creation_tokens": 30}}}
    assert translator.latency_ms == 321 and translator.stopped and translator.complete


def test_tool_use_with_input_and_without_input():
    chunks, _ = _translate([
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "One moment."}}),
        ("contentBlockStop", {"contentBlockIndex": 0}),
        _tool_start(1, "tooluse_a", "end_call"),
        _tool_input(1, '{"reason":'), _tool_input(1, ""), _tool_input(1, ' "done"}'),
        ("contentBlockStop", {"contentBlockIndex": 1}),
        _tool_input(1, "late"),  # after its block stopped: dropped
        _tool_start(2, "tooluse_b", "skip_turn"),
        ("contentBlockStop", {"contentBlockIndex": 2}),
        ("messageStop", {"stopReason": "tool_use"}),
    ])
    calls = [call for delta in _deltas(chunks) for call in delta.get("tool_calls") or []]
    assert calls[0] == {"index": 0, "id": "tooluse_a", "type": "function",
                        "function": {"name": "end_call", "arguments": ""}}
    assert json.loads("".join(c["function"]["arguments"] for c in calls if c["index"] == 0)) == {"reason": "done"}
    assert calls[-2] == {"index": 1, "id": "tooluse_b", "type": "function",
                         "function": {"name": "skip_turn", "arguments": ""}}
    assert calls[-1] == {"index": 1, "function": {"arguments": "{}"}}  # a tool without input still gets an object
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_tool_block_left_open_at_message_stop_still_gets_arguments():
    chunks, _ = _translate([_tool_start(0, "t", "skip_turn"), ("messageStop", {"stopReason": "tool_use"})])
    assert _deltas(chunks)[0] == {"role": "assistant", "content": ""}  # the role comes first even without messageStart
    assert _deltas(chunks)[-2] == {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}


def test_reasoning_becomes_reasoning_content():
    chunks, _ = _translate([
        ("messageStart", {"role": "assistant"}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Let me think."}}}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}}),
        ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"redactedContent": "eA=="}}}),
        ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "Yes."}}),
    ])
    assert _deltas(chunks)[1:] == [{"reasoning_content": "Let me think."}, {"content": "Yes."}]


@pytest.mark.parametrize(("stop_reason", "finish"), [
    ("end_turn", "stop"), ("tool_use", "tool_calls"), ("max_tokens", "length"), ("stop_sequence", "stop"),
    ("guardrail_intervened", "content_filter"), ("content_filtered", "content_filter"),
    ("model_context_window_exceeded", "length"), ("malformed_model_output", "stop"), ("something_new", "stop")])
def test_every_stop_reason(stop_reason, finish):
    chunks, _ = _translate([("messageStart", {}), ("messageStop", {"stopReason": stop_reason})])
    assert chunks[-1]["choices"][0]["finish_reason"] == finish


def test_translator_survives_malformed_events():
    chunks, translator = _translate([
        ("messageStart", {"role": 3}), ("contentBlockStart", {"start": "oops"}),
        ("contentBlockStart", {"contentBlockIndex": "1", "start": {"toolUse": {"name": "x"}}}),
        ("contentBlockDelta", {"delta": None}), ("contentBlockDelta", {"contentBlockIndex": 7,
                                                                       "delta": {"toolUse": {"input": "{}"}}}),
        ("noSuchEvent", {}), ("__init__", {}), ("metadata", {"usage": [3], "metrics": {"latencyMs": "slow"}}),
    ])
    assert chunks[-1]["usage"]["total_tokens"] == 0 and translator.latency_ms is None


def test_non_streamed_converse_response():
    completion = converse_stream.completion_from_converse({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "Hmm.", "signature": "s"}}},
            {"text": "Calling."}, {"toolUse": {"toolUseId": "t1", "name": "end_call", "input": {"reason": "bye"}}},
            {"toolUse": {"toolUseId": "t2", "name": "skip_turn", "input": {}}}]}},
        "stopReason": "tool_use", "usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7},
        "metrics": {"latencyMs": 55}}, MODEL, "req-9", created=1)
    latency = converse_stream.latency({"latencyMs": 55})
    assert "x_bedrock_latency_ms" not in completion  # the figure is the adapter's to report, not the completion's
    ChatCompletion.model_validate(completion)
    message = completion["choices"][0]["message"]
    assert message["content"] == "Calling." and message["reasoning_content"] == "Hmm."
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in message["tool_calls"]] == [
        ("end_call", '{"reason": "bye"}'), ("skip_turn", "{}")]
    assert completion["choices"][0]["finish_reason"] == "tool_calls" and latency == 55
    assert completion["usage"]["total_tokens"] == 7 and completion["id"] == "chatcmpl-req-9"


# --- over the socket: signed calls to the simulated Bedrock ---------------------------------------------


def test_text_stream_over_socket(bedrock_sim):
    app, base_url = bedrock_sim
    stats = UpstreamStats()
    pairs = asyncio.run(_pairs(base_url, _body(simulator={"tokens": 6, "prompt_tokens": 100, "cached_tokens": 60,
                                                          "cache_write_tokens": 30}), stats=stats))
    chunks = [parsed for _raw, parsed in pairs]
    sent, headers = app.requests[-1], app.request_headers[-1]
    assert app.request_paths[-1] == "/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/converse-stream"
    assert set(sent) == {"messages", "system", "simulator"}  # no OpenAI-only field reaches AWS
    assert headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert "/us-east-1/bedrock/aws4_request" in headers["authorization"] and "x-amz-date" in headers
    assert "x-api-key" not in headers and SECRET not in json.dumps(headers)

    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(d.get("content") or "" for d in _deltas(chunks))
    assert text.startswith("(simulated)") and len(text.split()) == 6
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
        "prompt_tokens": 100, "completion_tokens": 6, "total_tokens": 106,
        "prompt_tokens_details": {"cached_tokens": 60, "cache_creation_tokens": 30}}
    # Bedrock's own latency figure goes to the call's stats for the record, never in the client's bytes.
    raw_usage, parsed_usage = pairs[-1]
    assert isinstance(stats.latency_ms, int) and b"latency" not in raw_usage
    assert "x_bedrock_latency_ms" not in parsed_usage
    assert all(ChatCompletionChunk.model_validate_json(raw) for raw, _ in pairs)
    assert len({c["id"] for c in chunks}) == 1 and {c["model"] for c in chunks} == {MODEL}


@pytest.mark.parametrize(("tool", "expected"), [("get_weather", {"city": "simulated", "unit": "c"}),
                                                ("skip_turn", {})])
def test_tool_call_stream_over_socket(bedrock_sim, tool, expected):
    _, base_url = bedrock_sim
    chunks = _stream(base_url, _body(tools=[WEATHER_TOOL, NO_ARGS_TOOL], simulator={"tool_call": tool}))
    calls = [call for delta in _deltas(chunks) for call in delta.get("tool_calls") or []]
    assert calls[0]["id"].startswith("tooluse_") and calls[0]["function"]["name"] == tool
    assert {call["index"] for call in calls} == {0}
    assert json.loads("".join(call["function"]["arguments"] for call in calls)) == expected
    if expected:
        assert len(calls) > 2  # the input really arrived in fragments
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls" and chunks[-1]["usage"]["completion_tokens"] > 0


def test_reasoning_and_max_tokens_over_socket(bedrock_sim):
    _, base_url = bedrock_sim
    chunks = _stream(base_url, _body(max_tokens=3, simulator={"tokens": 10, "reasoning_tokens": 2}))
    deltas = _deltas(chunks)
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "Thinking it over"
    assert len("".join(d.get("content") or "" for d in deltas).split()) == 3
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("stop_reason", ["guardrail_intervened", "content_filtered", "stop_sequence"])
def test_scripted_stop_reasons_over_socket(bedrock_sim, stop_reason):
    _, base_url = bedrock_sim
    chunks = _stream(base_url, _body(simulator={"tokens": 2, "stop_reason": stop_reason}))
    assert chunks[-2]["choices"][0]["finish_reason"] == converse_stream.finish_reason(stop_reason)


@pytest.mark.parametrize(("exception", "status", "can_retry"), [
    ("throttlingException", 429, True), ("modelStreamErrorException", 502, True),
    ("internalServerException", 502, True), ("serviceUnavailableException", 502, True),
    ("validationException", 400, False)])
def test_in_stream_exception_before_the_first_token(bedrock_sim, exception, status, can_retry):
    """Bedrock answers 200 and then raises: treated exactly like the matching HTTP status, so fallbacks fire."""
    _, base_url = bedrock_sim
    chunks, error = _stream_until_error(base_url, _body(simulator={"error_after": 0, "error_type": exception}))
    assert [d for d in _deltas(chunks)] == [{"role": "assistant", "content": ""}]  # nothing the caller would hear
    assert error.status == status and retryable(error) is can_retry and error.kind == "stream_error"
    assert exception in error.message


def test_in_stream_exception_after_the_first_token(bedrock_sim):
    _, base_url = bedrock_sim
    chunks, error = _stream_until_error(base_url, _body(simulator={"tokens": 8, "error_after": 3}))
    assert len(chunks) == 4 and error.status == 502 and "modelStreamErrorException" in error.message


def test_a_cut_connection_is_a_502(bedrock_sim):
    _, base_url = bedrock_sim
    chunks, error = _stream_until_error(base_url, _body(simulator={"tokens": 8, "cut_after": 2}))
    assert len(chunks) == 3 and error.status == 502 and error.kind == "stream_error"


@pytest.mark.parametrize(("fail", "status", "kind", "error_type"), [
    (400, 400, "http_error", "ValidationException"), (404, 404, "http_error", "ResourceNotFoundException"),
    (429, 429, "http_error", "ThrottlingException"), (500, 502, "http_error", "InternalServerException"),
    (503, 502, "http_error", "ServiceUnavailableException"), (408, 504, "timeout", "ModelTimeoutException"),
    (424, 502, "http_error", "ModelErrorException")])
def test_http_errors_carry_the_aws_error_type(bedrock_sim, fail, status, kind, error_type):
    _, base_url = bedrock_sim
    chunks, error = _stream_until_error(base_url, _body(simulator={"fail_status": fail}))
    assert chunks == [] and error.status == status and error.kind == kind and error.upstream_status == fail
    assert f"returned {fail} {error_type}: simulated" in error.message


@pytest.mark.parametrize(("streamed", "action"), [(True, "bedrock:InvokeModelWithResponseStream"),
                                                  (False, "bedrock:InvokeModel")])
def test_a_missing_permission_names_the_iam_action_to_grant(bedrock_sim, streamed, action):
    _, base_url = bedrock_sim
    body = _body(stream=streamed, simulator={"fail_status": 403})
    if streamed:
        _, error = _stream_until_error(base_url, body)
    else:
        with pytest.raises(UpstreamError) as caught:
            _complete(base_url, body)
        error = caught.value
    assert error.status == 403 and "AccessDeniedException" in error.message
    assert f"Grant the gateway's IAM role {action} on this model" in error.message
    assert ("InvokeModelWithResponseStream" in error.message) is streamed


def test_wrong_secret_is_refused_as_aws_does_and_only_the_log_says_where_the_keys_came_from(bedrock_sim, monkeypatch):
    app, base_url = bedrock_sim
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", WRONG_SECRET)
    logged = len(LOGS.lines)
    chunks, error = _stream_until_error(base_url, _body())
    assert chunks == [] and error.status == 403 and not retryable(error)
    assert error.message == ("Upstream provider 'bedrock' refused the gateway's AWS credentials "
                             "(InvalidSignatureException).")
    [line] = [line for line in LOGS.lines[logged:] if line.startswith("Bedrock refused the gateway's AWS credentials")]
    assert "'error_type': 'InvalidSignatureException'" in line and "'region': 'us-east-1'" in line
    assert "do not match" in line and "environment variables (AWS_ACCESS_KEY_ID" in line
    assert WRONG_SECRET not in line + error.message and SECRET not in line + error.message
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTFAKEUNKNOWN1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    _, error = _stream_until_error(base_url, _body())
    assert "UnrecognizedClientException" in error.message and "not recognised by AWS" in LOGS.lines[-1]


def test_refused_credentials_are_resolved_afresh_on_the_next_call(bedrock_sim, monkeypatch):
    _, base_url = bedrock_sim
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", WRONG_SECRET)
    _stream_until_error(base_url, _body())
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)  # the operator fixed it: no restart needed
    assert _stream(base_url, _body())[-1]["usage"]


class _Sessions:
    """A botocore Session stand-in: hands out the given credentials, one per resolution, noting the thread."""

    def __init__(self, *credentials: Credentials | None) -> None:
        self.queue = list(credentials)
        self.threads: list[int] = []
        self.profile = None

    def __call__(self) -> _Sessions:
        return self

    def get_credentials(self) -> Credentials | None:
        self.threads.append(threading.get_ident())
        return self.queue.pop(0)


def test_expired_session_credentials_are_refreshed_and_the_call_retried_once(monkeypatch):
    keys = {"AKIDTESTFAKEOLD00001": AwsKey("old-secret-fake", "old-token-fake", expires_at=time.time() - 1),
            "AKIDTESTFAKENEW00001": AwsKey("new-secret-fake", "new-token-fake")}
    app = SimulatorApp(Script(), aws_keys=keys)
    sessions = _Sessions(Credentials("AKIDTESTFAKEOLD00001", "old-secret-fake", "old-token-fake"),
                         Credentials("AKIDTESTFAKENEW00001", "new-secret-fake", "new-token-fake"))
    monkeypatch.setattr(bedrock, "CREDENTIALS", bedrock.AwsCredentials(sessions))
    with BackgroundServer(app) as server:
        chunks = _stream(server.url, _body(simulator={"tokens": 2}))
    assert chunks[-1]["usage"]
    used = [h["authorization"].split("Credential=")[1][:20] for h in app.request_headers]
    assert used == ["AKIDTESTFAKEOLD00001", "AKIDTESTFAKENEW00001"]
    assert [h["x-amz-security-token"] for h in app.request_headers] == ["old-token-fake", "new-token-fake"]


def test_non_streaming_completion(bedrock_sim):
    app, base_url = bedrock_sim
    stats = UpstreamStats()
    completion = _complete(base_url, _body(stream=False, simulator={"tokens": 5, "cached_tokens": 2}), stats=stats)
    assert app.request_paths[-1].endswith("%3A0/converse")
    assert isinstance(stats.latency_ms, int) and "x_bedrock_latency_ms" not in completion
    ChatCompletion.model_validate(completion)
    choice = completion["choices"][0]
    assert choice["message"]["content"].startswith("(simulated)") and choice["finish_reason"] == "stop"
    usage = completion["usage"]
    assert usage["completion_tokens"] == 5 and usage["prompt_tokens_details"]["cached_tokens"] == 2


def test_non_streaming_tool_call(bedrock_sim):
    _, base_url = bedrock_sim
    completion = _complete(base_url, _body(stream=False, tools=[WEATHER_TOOL], simulator={"tool_call": True}))
    message = completion["choices"][0]["message"]
    assert message["content"] is None and completion["choices"][0]["finish_reason"] == "tool_calls"
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"city": "simulated", "unit": "c"}


# --- the event stream: decoded as it arrives, refused when broken -------------------------------------


async def _serve(writes: list[bytes | float], status: int = 200, headers: bytes = b""):
    """A canned HTTP/1.1 server: the body written piece by piece (a float is a pause), chunked."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 %d X\r\ntransfer-encoding: chunked\r\n%s\r\n" % (status, headers))
        for piece in writes:
            if isinstance(piece, float):
                await asyncio.sleep(piece)
            else:
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


def _run_canned(writes: list[bytes | float], *, status: int = 200, headers: bytes = b"", streamed: bool = True):
    """(chunks with their arrival times, error or None) for one call against the canned server."""
    arrivals: list[tuple[float, dict]] = []

    async def run() -> None:
        server = await _serve(writes, status, headers)
        base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        started = time.perf_counter()
        try:
            async with UpstreamClient(connect_timeout=5, read_timeout=5) as client:
                if not streamed:
                    await ADAPTER.complete(client, _route(base_url), _body(stream=False))
                    return
                async for batch in ADAPTER.stream(client, _route(base_url), _body()):
                    arrivals.extend((time.perf_counter() - started, parsed) for _raw, parsed in batch)
        finally:
            server.close()

    try:
        asyncio.run(run())
    except UpstreamError as error:
        return arrivals, error
    return arrivals, None


START = event_message("messageStart", {"role": "assistant"})
HI = event_message("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}})
STOP = event_message("messageStop", {"stopReason": "end_turn"})
METADATA = event_message("metadata", {"usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                                      "metrics": {"latencyMs": 9}})


def test_events_are_decoded_as_bytes_arrive_never_after_the_stream_ends():
    """The upstream holds the rest of the stream back until the caller has the first word: an adapter that
    waited for more bytes (or for the end) would leave it waiting until it gives up, 10 s later."""
    problems: list[str] = []
    deltas: list[dict] = []

    async def run() -> None:
        first_word = asyncio.Event()

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b"%x\r\n%s\r\n" % (len(START + HI), START + HI))
            await writer.drain()
            try:
                await asyncio.wait_for(first_word.wait(), 10)
            except TimeoutError:
                problems.append("the first word had not reached the caller while the rest was held back")
            rest = STOP + METADATA
            writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            async with UpstreamClient(connect_timeout=5, read_timeout=15) as client:
                async for batch in ADAPTER.stream(client, _route(base_url), _body()):
                    for _raw, parsed in batch:
                        deltas.extend(choice["delta"] for choice in parsed["choices"])
                        if any(choice["delta"].get("content") for choice in parsed["choices"]):
                            first_word.set()
        finally:
            server.close()

    asyncio.run(run())
    assert problems == []
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Hi"}, {}]


def test_events_split_across_reads_byte_by_byte():
    whole = START + HI + STOP + METADATA
    arrivals, error = _run_canned([whole[i:i + 1] for i in range(len(whole))])
    assert error is None and [c["choices"][0]["delta"] for _, c in arrivals if c["choices"]] == [
        {"role": "assistant", "content": ""}, {"content": "Hi"}, {}]


@pytest.mark.parametrize(("writes", "reason"), [
    ([START, HI[:-5]], "mid-event"),
    ([START, HI[:-1] + bytes([HI[-1] ^ 0xFF])], "broken event stream"),
    ([START, HI], "before messageStop"),
    ([START, b"\x00\x00\x00\x20" + b"\x00" * 28], "broken event stream"),
    ([START, HI[:20] + b"X" + HI[21:]], "broken event stream"),
    ([START, HI[:12] + b"oops"], "mid-event"),
])
def test_broken_streams_are_502(writes, reason):
    arrivals, error = _run_canned(writes)
    assert error is not None and error.status == 502 and error.kind == "stream_error" and reason in error.message
    assert len(arrivals) <= 2


def test_exception_and_error_messages_and_non_json_events_in_a_canned_stream():
    arrivals, error = _run_canned([START + HI, exception_message("throttlingException", "Too many tokens")])
    assert len(arrivals) == 2 and error.status == 429 and "throttlingException: Too many tokens" in error.message
    generic = encode_message({":message-type": "error", ":error-code": "ThrottlingException",
                              ":error-message": "Rate exceeded"}, b"")
    _, error = _run_canned([START, generic])
    assert error.status == 502 and "ThrottlingException: Rate exceeded" in error.message
    not_json = encode_message({":message-type": "event", ":event-type": "contentBlockDelta"}, b"{oops")
    _, error = _run_canned([START, not_json])
    assert error.status == 502 and "not a JSON object" in error.message


def test_model_access_not_enabled_points_at_the_console():
    body = json.dumps({"message": "You don't have access to the model with the specified model ID."}).encode()
    _, error = _run_canned([body], status=403,
                           headers=b"x-amzn-errortype: AccessDeniedException:http://internal.amazon.com/coral/\r\n")
    assert error.status == 403 and "Enable access to this model in the Bedrock console" in error.message
    assert "bedrock:InvokeModelWithResponseStream" in error.message


def test_on_demand_not_supported_suggests_the_inference_profile():
    body = json.dumps({"message": "Invocation of model ID anthropic.claude-haiku-4-5-20251001-v1:0 with on-demand "
                                  "throughput isn't supported. Retry your request with the ID or ARN of an inference "
                                  "profile that contains this model."}).encode()
    _, error = _run_canned([body], status=400, headers=b"x-amzn-errortype: ValidationException\r\n", streamed=False)
    assert error.status == 400 and "bedrock/us.<model id>" in error.message


def test_a_redirect_is_never_followed_nor_retried():
    _, error = _run_canned([b"moved"], status=307, headers=b"location: http://169.254.169.254/latest/meta-data/\r\n")
    assert error.status == 502 and error.kind == "redirect_refused" and not retryable(error)


def test_a_200_that_is_not_a_converse_response_is_a_502():
    _, error = _run_canned([b'{"hello": "world"}'], streamed=False)
    assert error.status == 502 and "not a Converse response" in error.message


# --- credentials: botocore's chain, off the event loop, refreshed before expiry --------------------------


def test_credentials_resolve_once_off_the_event_loop():
    sessions = _Sessions(Credentials("AKIDTESTFAKECACHE001", "cache-secret-fake"))
    credentials = bedrock.AwsCredentials(sessions)

    async def twice() -> tuple[int, list[ReadOnlyCredentials]]:
        return threading.get_ident(), [await credentials.current(), await credentials.current()]

    loop_thread, frozen = asyncio.run(twice())
    assert [f.access_key for f in frozen] == ["AKIDTESTFAKECACHE001"] * 2
    assert len(sessions.threads) == 1 and sessions.threads[0] != loop_thread
    assert credentials.found and credentials.source.startswith("botocore's credential chain")


def test_no_credentials_is_a_clear_error_and_the_chain_is_not_asked_again_at_once():
    sessions = _Sessions(None, None)
    credentials = bedrock.AwsCredentials(sessions, retry_missing_s=60)
    for _ in range(2):
        with pytest.raises(bedrock.CredentialsUnavailable, match="found no AWS credentials"):
            asyncio.run(credentials.current())
    assert len(sessions.threads) == 1 and not credentials.found


def test_missing_credentials_fail_the_call_with_a_retryable_error(monkeypatch, bedrock_sim):
    _, base_url = bedrock_sim
    monkeypatch.setattr(bedrock, "CREDENTIALS", bedrock.AwsCredentials(_Sessions(None)))
    logged = len(LOGS.lines)
    chunks, error = _stream_until_error(base_url, _body())
    assert chunks == [] and error.kind == "aws_credentials" and retryable(error)  # a fallback may still answer
    assert error.message == ("Upstream provider 'bedrock' cannot sign requests: the gateway has no usable AWS "
                             "credentials (its log says why).")
    assert any("found no AWS credentials" in line for line in LOGS.lines[logged:])


class _RefreshFails(Credentials):
    def get_frozen_credentials(self):
        raise BotoCoreError()


def test_a_failed_refresh_names_the_profile_in_the_log_only(monkeypatch, bedrock_sim):
    """Where the credentials come from (a profile name, a file, a process) is the operator's business."""
    _, base_url = bedrock_sim
    sessions = _Sessions(_RefreshFails("AKIDTESTFAKEREFRESH1", "refresh-secret-fake", method="sso"))
    sessions.profile = "payments-admin"
    monkeypatch.setattr(bedrock, "CREDENTIALS", bedrock.AwsCredentials(sessions))
    logged = len(LOGS.lines)
    _, error = _stream_until_error(base_url, _body())
    assert error.kind == "aws_credentials" and "payments-admin" not in error.message and "SSO" not in error.message
    [line] = [line for line in LOGS.lines[logged:] if line.startswith("Bedrock calls cannot be signed")]
    assert "IAM Identity Center (SSO) login of profile payments-admin" in line and "refresh-secret-fake" not in line


class _Clock:
    def __init__(self) -> None:
        self.now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)

    def __call__(self) -> datetime.datetime:
        return self.now


def test_temporary_credentials_refresh_in_the_background_then_block_only_when_close_to_expiry():
    clock = _Clock()
    issued: list[str] = []

    def refresh() -> dict:
        issued.append(f"AKIDTESTFAKEROLE{len(issued) + 2:04d}")
        expiry = clock.now + datetime.timedelta(hours=1)
        return {"access_key": issued[-1], "secret_key": "role-secret-fake", "token": "role-token-fake",
                "expiry_time": expiry.isoformat()}

    first = RefreshableCredentials("AKIDTESTFAKEROLE0001", "role-secret-fake", "role-token-fake",
                                   clock.now + datetime.timedelta(hours=1), refresh, "container-role", clock)
    credentials = bedrock.AwsCredentials(_Sessions(first))

    async def key() -> str:
        return (await credentials.current()).access_key

    assert asyncio.run(key()) == "AKIDTESTFAKEROLE0001" and issued == []
    clock.now += datetime.timedelta(minutes=47)  # 13 minutes left: refreshed in the background, not waited for
    assert asyncio.run(key()) == "AKIDTESTFAKEROLE0001"
    deadline = time.monotonic() + 5
    while credentials._refreshing or not issued:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert asyncio.run(key()) == "AKIDTESTFAKEROLE0002"
    clock.now += datetime.timedelta(minutes=55)  # 5 minutes left of the new ones: this call waits for fresh ones
    assert asyncio.run(key()) == "AKIDTESTFAKEROLE0003"
    assert credentials.source == "the container's task role"


# --- the simulator is faithful to AWS: boto3's own client talks to it ------------------------------------


def _boto3_client(base_url: str, secret: str = SECRET):
    return boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=base_url,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=secret)


def test_boto3_signs_requests_the_simulator_accepts_and_parses_its_event_stream(bedrock_sim):
    _, base_url = bedrock_sim
    client = _boto3_client(base_url)
    answer = client.converse(modelId=PROFILE_ARN, messages=[{"role": "user", "content": [{"text": "hi"}]}])
    assert answer["output"]["message"]["content"][0]["text"].startswith("(simulated)")
    tools = {"tools": [{"toolSpec": {"name": "end_call", "inputSchema": {"json": {
        "type": "object", "properties": {"reason": {"type": "string"}}}}}}]}
    events = list(client.converse_stream(modelId="tools", messages=[{"role": "user", "content": [{"text": "bye"}]}],
                                         toolConfig=tools)["stream"])
    assert [next(iter(e)) for e in events] == ["messageStart", "contentBlockStart"] + ["contentBlockDelta"] * 3 + [
        "contentBlockStop", "messageStop", "metadata"]
    assert events[1]["contentBlockStart"]["start"]["toolUse"]["name"] == "end_call"
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 8
    with pytest.raises(ClientError) as caught:
        _boto3_client(base_url, WRONG_SECRET).converse(modelId=MODEL, messages=[{"role": "user",
                                                                                 "content": [{"text": "hi"}]}])
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def _signed(url: str, body: bytes, secret: str = SECRET) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url, data=body, headers={"content-type": "application/json"})
    SigV4Auth(ReadOnlyCredentials(ACCESS_KEY, secret, None), "bedrock", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def _rescoped(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Authorization": headers["Authorization"].replace("/bedrock/", "/s3/")}


def test_the_simulator_refuses_what_aws_refuses(bedrock_sim):
    _, base_url = bedrock_sim
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).encode()
    encoded = f"{base_url}/model/{MODEL.replace(':', '%3A')}/converse"
    raw = f"{base_url}/model/{MODEL}/converse"

    def post(url: str, headers: dict[str, str], content: bytes = body) -> httpx.Response:
        return httpx.post(url, content=content, headers=headers, timeout=5)

    assert post(encoded, _signed(encoded, body)).status_code == 200
    cases = {
        # signed with the path encoded as the SDKs encode it, sent with ":" as a plain-string URL would be
        "path": post(raw, _signed(encoded, body)),
        "body": post(encoded, _signed(encoded, body), content=body.replace(b"hi", b"ho")),
        "service": post(encoded, _rescoped(_signed(encoded, body))),
    }
    doubled = post(encoded, {**_signed(encoded, body), "authorization": _signed(encoded, body)["Authorization"]})
    assert doubled.status_code == 400 and doubled.headers["x-amzn-errortype"].startswith("IncompleteSignature")
    for name, response in cases.items():
        assert response.status_code == 403, name
        assert response.headers["x-amzn-errortype"].startswith("InvalidSignatureException:"), name
    unsigned = post(encoded, {"content-type": "application/json"})
    assert unsigned.status_code == 403 and unsigned.headers["x-amzn-errortype"].startswith(
        "MissingAuthenticationTokenException")
    openai_shaped = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}], "stream": True}).encode()
    refused = post(encoded, _signed(encoded, openai_shaped), content=openai_shaped)
    assert refused.status_code == 400 and 'Unknown parameter in input: "stream"' in refused.json()["message"]
    greeting_first = json.dumps({"messages": [{"role": "assistant", "content": [{"text": "Hello!"}]}]}).encode()
    refused = post(encoded, _signed(encoded, greeting_first), content=greeting_first)
    assert refused.status_code == 400 and "must start with a user message" in refused.json()["message"]


def test_the_simulator_refuses_stale_signatures(bedrock_sim, monkeypatch):
    _, base_url = bedrock_sim
    body = b'{"messages": [{"role": "user", "content": [{"text": "hi"}]}]}'
    url = f"{base_url}/model/echo/converse"
    monkeypatch.setattr("botocore.auth.get_current_datetime",
                        lambda: datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=20))
    response = httpx.post(url, content=body, headers=_signed(url, body), timeout=5)
    assert response.status_code == 403 and "Signature expired" in response.json()["message"]
