"""reasoning_effort means the same on every provider, end to end: the official openai SDK (or httpx) -> the
gateway -> the simulated upstream, which refuses what the real API refuses (a budget under 1024 or not under
max_tokens, temperature with thinking, a forced tool with thinking, a final assistant message without the
thinking block Anthropic signed; Claude 4.7 refusing budget_tokens; extraneous reasoning keys on Bedrock).
Each test checks what the upstream received, what the caller got back, and the call record."""

from __future__ import annotations

import json

import httpx
import pytest

from switchboard.http.serving import BackgroundServer
from switchboard.providers import bedrock
from switchboard.simulator import Script, SimulatorApp
from switchboard.simulator.bedrock_api import AwsKey
from tests import sse
from tests.conftest import EXTRA_SECRETS, GATEWAY_KEY

ACCESS_KEY = "AKIDTESTFAKEREASON01"
SECRET = "reasoning-integ-secret-fake-0123456789"
HELLO = [{"role": "user", "content": "What is 17 times 23?"}]
DEFAULT_MAX_TOKENS = 4096  # SWITCHBOARD_ANTHROPIC_MAX_TOKENS's default: the gateways here leave it unset
END_CALL = {"type": "function", "function": {
    "name": "end_call", "description": "End the call.",
    "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}}}}
TOOL_TURN = HELLO + [
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "end_call", "arguments": '{"reason":"done"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "ended"}]
THINKING_WORDS = "Thinking it over it over"  # the simulators' reasoning for three tokens


@pytest.fixture(scope="module")
def bedrock_sim():
    EXTRA_SECRETS.append(SECRET)
    app = SimulatorApp(Script(), aws_keys={ACCESS_KEY: AwsKey(SECRET)})
    server = BackgroundServer(app).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
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


@pytest.fixture
def gateway(start_gateway, bedrock_sim):
    return start_gateway(AWS_ENDPOINT_URL_BEDROCK_RUNTIME=bedrock_sim.url, AWS_REGION="us-east-1")


def post(gateway, model: str, *, stream: bool = True, **fields) -> httpx.Response:
    body = {"model": model, "messages": HELLO, "stream": stream, **fields}
    return httpx.post(gateway.base_url + "/chat/completions", json=body, timeout=20,
                      headers={"authorization": f"Bearer {GATEWAY_KEY}"})


def deltas(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text[:500]
    chunks = sse.objects(response)
    return [chunk["choices"][0]["delta"] for chunk in chunks if chunk.get("choices")]


def reasoning_then_text(response: httpx.Response) -> tuple[str, str]:
    """(reasoning, content) of a streamed answer, checking that all the reasoning came before the first word."""
    seen = deltas(response)
    kinds = [("reasoning" if d.get("reasoning_content") else "content") for d in seen
             if d.get("reasoning_content") or d.get("content")]
    assert kinds == sorted(kinds, key=lambda kind: kind != "reasoning"), kinds
    return ("".join(d.get("reasoning_content") or "" for d in seen), "".join(d.get("content") or "" for d in seen))


def sent_to_anthropic(sim_app: SimulatorApp) -> dict:
    [sent] = [body for body in sim_app.requests if "max_tokens" in body]  # the Messages request
    return sent


# --- Anthropic: adaptive thinking on Claude 4.6 and later, a budget before ------------------------------


@pytest.mark.parametrize(("effort", "budget"), [("low", 1024), ("medium", 4096), ("high", 16384), ("xhigh", 32768),
                                                ("max", 32768)])
def test_an_older_claude_thinks_with_the_effort_s_budget_and_room_for_the_answer(gateway, sim_app, effort, budget):
    response = post(gateway, "anthropic/claude-sonnet-4-5-20250929", reasoning_effort=effort,
                    stream_options={"include_usage": True})
    reasoning, text = reasoning_then_text(response)
    assert reasoning == THINKING_WORDS and text.startswith("(simulated)")
    sent = sent_to_anthropic(sim_app)
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert sent["max_tokens"] == DEFAULT_MAX_TOKENS + budget and "output_config" not in sent
    record = gateway.records[-1]
    assert record.status == 200 and record.completion_tokens == 12 + 3  # thinking is billed as output


@pytest.mark.parametrize(("model", "effort", "expected"), [
    ("claude-sonnet-4-6", "low", "low"), ("claude-opus-4-7", "medium", "medium"),
    ("claude-opus-4-7-20260301", "high", "high"), ("claude-sonnet-5", "xhigh", "max"),
    ("claude-opus-5-5", "max", "max")])
def test_claude_4_6_and_later_think_adaptively(gateway, sim_app, model, effort, expected):
    """Claude 4.7 and later refuse budget_tokens (the simulator too): adaptive thinking with an effort instead."""
    reasoning, text = reasoning_then_text(post(gateway, f"anthropic/{model}", reasoning_effort=effort))
    assert reasoning and text.startswith("(simulated)")
    sent = sent_to_anthropic(sim_app)
    assert sent["thinking"] == {"type": "adaptive"} and sent["output_config"] == {"effort": expected}


@pytest.mark.parametrize("effort", ["none", "minimal", None])
def test_none_and_minimal_mean_no_thinking(gateway, sim_app, effort):
    fields = {} if effort is None else {"reasoning_effort": effort}
    seen = deltas(post(gateway, "anthropic/claude-opus-4-7", **fields))
    assert not any(d.get("reasoning_content") for d in seen)
    sent = sent_to_anthropic(sim_app)
    assert "thinking" not in sent and "output_config" not in sent and sent["max_tokens"] == DEFAULT_MAX_TOKENS
    assert "reasoning_effort" not in sent


@pytest.mark.parametrize(("max_tokens", "budget"), [(40000, 16384), (3000, 1500), (2048, 1024)])
def test_the_client_s_max_tokens_is_kept_and_bounds_the_budget(gateway, sim_app, max_tokens, budget):
    """OpenAI's max_tokens bounds reasoning and answer together: kept as is, the budget at most half of it."""
    reasoning, _ = reasoning_then_text(post(gateway, "anthropic/claude-sonnet-4-5", reasoning_effort="high",
                                            max_completion_tokens=max_tokens))
    assert reasoning
    sent = sent_to_anthropic(sim_app)
    assert sent["max_tokens"] == max_tokens and sent["thinking"] == {"type": "enabled", "budget_tokens": budget}


def test_a_max_tokens_too_small_for_the_minimum_budget_leaves_thinking_off(gateway, sim_app):
    seen = deltas(post(gateway, "anthropic/claude-sonnet-4-5", reasoning_effort="high", max_tokens=2047))
    assert not any(d.get("reasoning_content") for d in seen)
    sent = sent_to_anthropic(sim_app)
    assert sent["max_tokens"] == 2047 and "thinking" not in sent
    sim_app.requests.clear()
    reasoning, _ = reasoning_then_text(post(gateway, "anthropic/claude-sonnet-4-5", reasoning_effort="high",
                                            max_tokens=2048))
    assert reasoning and sent_to_anthropic(sim_app)["thinking"]["budget_tokens"] == 1024  # the smallest that thinks


def test_thinking_drops_the_temperature_and_top_p_anthropic_refuses_with_it(gateway, sim_app):
    reasoning, _ = reasoning_then_text(post(gateway, "anthropic/claude-sonnet-4-5", reasoning_effort="low",
                                            temperature=0.2, top_p=0.5))
    sent = sent_to_anthropic(sim_app)
    assert reasoning and "temperature" not in sent and "top_p" not in sent
    sim_app.requests.clear()
    reasoning, _ = reasoning_then_text(post(gateway, "anthropic/claude-sonnet-4-5", reasoning_effort="low",
                                            temperature=1, top_p=0.97))
    sent = sent_to_anthropic(sim_app)
    assert reasoning and sent["temperature"] == 1 and sent["top_p"] == 0.97  # what thinking allows stays
    sim_app.requests.clear()
    post(gateway, "anthropic/claude-sonnet-4-5", temperature=0.2, top_p=0.5)
    sent = sent_to_anthropic(sim_app)
    assert (sent["temperature"], sent["top_p"]) == (0.2, 0.5)  # without thinking nothing changes


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "end_call"}}])
def test_a_forced_tool_wins_over_thinking(gateway, sim_app, tool_choice):
    seen = deltas(post(gateway, "anthropic/claude-sonnet-4-5", reasoning_effort="high", tools=[END_CALL],
                       tool_choice=tool_choice, simulator={"tool_call": True}))
    assert [call["function"]["name"] for d in seen for call in d.get("tool_calls") or [] if call.get("id")] == [
        "end_call"]
    sent = sent_to_anthropic(sim_app)
    assert "thinking" not in sent and sent["tool_choice"]["type"] in ("any", "tool")
    sim_app.requests.clear()
    reasoning, _ = reasoning_then_text(post(gateway, "anthropic/claude-sonnet-4-5", reasoning_effort="high",
                                            tools=[END_CALL], tool_choice="auto"))
    assert reasoning and sent_to_anthropic(sim_app)["thinking"]["type"] == "enabled"  # a tool offered, not forced


def test_a_tool_use_turn_in_progress_is_answered_without_thinking(gateway, sim_app):
    """Anthropic would want the signed thinking block that opened the turn: the gateway never has it."""
    for model in ("claude-sonnet-4-5", "claude-opus-4-7"):
        sim_app.requests.clear()
        response = post(gateway, f"anthropic/{model}", reasoning_effort="high", tools=[END_CALL], messages=TOOL_TURN)
        assert not any(d.get("reasoning_content") for d in deltas(response))
        assert "thinking" not in sent_to_anthropic(sim_app)
    sim_app.requests.clear()
    next_turn = TOOL_TURN + [{"role": "assistant", "content": "The call has ended."},
                             {"role": "user", "content": "One more question."}]
    reasoning, _ = reasoning_then_text(post(gateway, "anthropic/claude-sonnet-4-5", reasoning_effort="high",
                                            tools=[END_CALL], messages=next_turn))
    assert reasoning and "thinking" in sent_to_anthropic(sim_app)  # a new turn thinks again


def test_a_prefill_is_continued_without_thinking(gateway, sim_app):
    prefill = HELLO + [{"role": "assistant", "content": "The answer is"}]
    seen = deltas(post(gateway, "anthropic/claude-sonnet-4-5", reasoning_effort="medium", messages=prefill))
    assert not any(d.get("reasoning_content") for d in seen)
    assert "thinking" not in sent_to_anthropic(sim_app)
    sim_app.requests.clear()
    greeted = [{"role": "assistant", "content": "Hello, how can I help?"}] + HELLO  # an agent's greeting first
    reasoning, _ = reasoning_then_text(post(gateway, "anthropic/claude-sonnet-4-5", reasoning_effort="medium",
                                            messages=greeted))
    assert reasoning and "thinking" in sent_to_anthropic(sim_app)  # an earlier assistant turn is no prefill


def test_a_non_streamed_answer_carries_its_thinking_as_reasoning_content(gateway, sim_app):
    completion = gateway.client().chat.completions.create(model="anthropic/claude-opus-4-7", messages=HELLO,
                                                          reasoning_effort="medium")
    message = completion.choices[0].message
    assert message.content.startswith("(simulated)")
    assert message.model_extra["reasoning_content"] == THINKING_WORDS and "signature" not in json.dumps(
        completion.model_dump())
    assert completion.usage.completion_tokens == 12 + 3


def test_the_openai_sdk_streams_anthropic_thinking_as_reasoning_content(gateway):
    stream = gateway.client().chat.completions.create(model="anthropic/claude-haiku-4-5", messages=HELLO, stream=True,
                                                      reasoning_effort="low")
    chunks = [chunk for chunk in stream if chunk.choices]
    reasoning = "".join((chunk.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for chunk in chunks)
    assert reasoning == THINKING_WORDS
    assert "signature" not in repr([chunk.model_dump() for chunk in chunks])  # the signature_delta is dropped


def test_the_responses_api_s_reasoning_effort_reaches_anthropic(gateway, sim_app):
    with gateway.client().responses.stream(model="anthropic/claude-opus-4-7", input="What is 17 times 23?",
                                           reasoning={"effort": "high"}) as stream:
        events = list(stream)
    assert events[-1].type == "response.completed"
    sent = sent_to_anthropic(sim_app)
    assert sent["thinking"] == {"type": "adaptive"} and sent["output_config"] == {"effort": "high"}


@pytest.mark.parametrize("effort", ["extreme", 3, ""])
def test_an_unknown_effort_is_the_caller_s_400_before_anything_is_sent(gateway, sim_app, effort):
    response = post(gateway, "anthropic/claude-sonnet-4-5", reasoning_effort=effort)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "reasoning_effort" and error["code"] == "invalid_reasoning_effort"
    assert "none, minimal, low, medium, high, xhigh, max" in error["message"]
    assert sim_app.requests == [] and gateway.records[-1].status == 400


def test_openai_compatible_hosts_get_the_effort_as_sent(gateway, sim_app):
    for effort in ("minimal", "xhigh", "max"):
        sim_app.requests.clear()
        assert post(gateway, "openai/gpt-sim", reasoning_effort=effort).status_code == 200
        [sent] = sim_app.requests
        assert sent["reasoning_effort"] == effort and "thinking" not in sent


# --- Bedrock: by model family, in additionalModelRequestFields ------------------------------------------


def sent_to_bedrock(bedrock_sim) -> dict:
    return bedrock_sim.app.requests[-1]


@pytest.mark.parametrize(("model", "effort", "fields", "max_tokens"), [
    ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "medium",
     {"thinking": {"type": "enabled", "budget_tokens": 4096}}, DEFAULT_MAX_TOKENS + 4096),
    ("anthropic.claude-3-7-sonnet-20250219-v1:0", "xhigh",
     {"thinking": {"type": "enabled", "budget_tokens": 32768}}, DEFAULT_MAX_TOKENS + 32768),
    ("global.anthropic.claude-sonnet-4-6", "high",
     {"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}}, DEFAULT_MAX_TOKENS + 16384),
    ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-7", "max",
     {"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}}, DEFAULT_MAX_TOKENS + 32768),
    ("openai.gpt-oss-120b-1:0", "xhigh", {"reasoning_effort": "high"}, None),
    ("openai.gpt-oss-20b-1:0", "minimal", {"reasoning_effort": "low"}, None),
    ("us.amazon.nova-2-lite-v1:0", "minimal", {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "low"}},
     None),
    ("amazon.nova-2-lite-v1:0", "max", {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": "high"}}, None),
])
def test_bedrock_models_reason_in_their_family_s_own_fields(gateway, bedrock_sim, model, effort, fields, max_tokens):
    reasoning, text = reasoning_then_text(post(gateway, f"bedrock/{model}", reasoning_effort=effort))
    assert reasoning == THINKING_WORDS and text.startswith("(simulated)")
    sent = sent_to_bedrock(bedrock_sim)
    assert sent["additionalModelRequestFields"] == fields
    assert (sent.get("inferenceConfig") or {}).get("maxTokens") == max_tokens
    assert "reasoning_effort" not in sent
    assert gateway.records[-1].status == 200


@pytest.mark.parametrize("model", ["meta.llama3-3-70b-instruct-v1:0", "us.deepseek.r1-v1:0",
                                   "mistral.mistral-large-2407-v1:0", "amazon.nova-pro-v1:0"])
def test_other_bedrock_models_get_no_reasoning_fields(gateway, bedrock_sim, model):
    """The simulator refuses reasoning fields these models do not know, as their native APIs do."""
    assert deltas(post(gateway, f"bedrock/{model}", reasoning_effort="high"))
    assert "additionalModelRequestFields" not in sent_to_bedrock(bedrock_sim)


@pytest.mark.parametrize("model", ["us.anthropic.claude-haiku-4-5-20251001-v1:0", "openai.gpt-oss-120b-1:0",
                                   "amazon.nova-2-lite-v1:0"])
def test_bedrock_none_sends_nothing(gateway, bedrock_sim, model):
    assert deltas(post(gateway, f"bedrock/{model}", reasoning_effort="none"))
    assert "additionalModelRequestFields" not in sent_to_bedrock(bedrock_sim)


def test_claude_on_bedrock_keeps_anthropic_s_rules(gateway, bedrock_sim):
    model = "bedrock/us.anthropic.claude-haiku-4-5-20251001-v1:0"
    reasoning, _ = reasoning_then_text(post(gateway, model, reasoning_effort="high", max_tokens=3000,
                                            temperature=0.3, top_p=0.5))
    sent = sent_to_bedrock(bedrock_sim)
    assert reasoning and sent["inferenceConfig"] == {"maxTokens": 3000}  # temperature and topP dropped
    assert sent["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 1500}}
    for fields in ({"max_tokens": 2000}, {"tools": [END_CALL], "tool_choice": "required"},
                   {"tools": [END_CALL], "messages": TOOL_TURN},
                   {"messages": HELLO + [{"role": "assistant", "content": "The answer is"}]}):
        response = post(gateway, model, reasoning_effort="high", **fields)
        assert not any(d.get("reasoning_content") for d in deltas(response)), fields
        assert "additionalModelRequestFields" not in sent_to_bedrock(bedrock_sim), fields


def test_a_non_streamed_bedrock_answer_carries_reasoning_content(gateway):
    completion = gateway.client().chat.completions.create(model="bedrock/openai.gpt-oss-120b-1:0", messages=HELLO,
                                                          reasoning_effort="medium")
    assert completion.choices[0].message.model_extra["reasoning_content"] == THINKING_WORDS
