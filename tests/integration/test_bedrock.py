"""Bedrock end to end: the official openai SDK -> the gateway -> signed Converse calls -> the simulated Bedrock,
which checks every signature against the fake credentials set here. Every switchboard feature on Bedrock:
streaming text and ElevenLabs tool calls with usage, in-stream exceptions before and after the first token,
fallbacks both ways, deadlines, buffer words, hang-ups, credential errors and refreshes, records and metrics."""

from __future__ import annotations

import json
import sys
import time

import httpx
import openai
import pytest

from switchboard.http.serving import BackgroundServer
from switchboard.providers import bedrock
from switchboard.simulator import Script, SimulatorApp
from switchboard.simulator.bedrock_api import AwsKey
from tests import sse
from tests.conftest import EXTRA_SECRETS, GATEWAY_KEY, LOGS, METRICS_OUTPUT, find_leaks

ACCESS_KEY = "AKIDTESTFAKEINTEG001"
SECRET = "bedrock-integ-secret-fake-0123456789"
SESSION_TOKEN = "bedrock-integ-session-token-fake-0123456789"  # as a Lambda role's credentials carry one
MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
ROUTE = f"bedrock/{MODEL}"
HELLO = [{"role": "system", "content": "You are a receptionist."}, {"role": "user", "content": "hi"}]
# ElevenLabs system tools, as an agent sends them: end_call takes a reason, skip_turn takes nothing.
END_CALL = {"type": "function", "function": {
    "name": "end_call", "description": "End the call when the conversation is over.",
    "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]}}}
SKIP_TURN = {"type": "function", "function": {
    "name": "skip_turn", "description": "Wait silently for the user.", "parameters": {"type": "object",
                                                                                       "properties": {}}}}


@pytest.fixture(scope="module")
def bedrock_sim():
    EXTRA_SECRETS.extend([SECRET, SESSION_TOKEN])
    app = SimulatorApp(Script(), aws_keys={ACCESS_KEY: AwsKey(SECRET, SESSION_TOKEN)})
    server = BackgroundServer(app).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    """The fake credentials in the environment and nothing else botocore could find; a fresh credential cache."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CREDENTIAL_EXPIRATION", "AWS_ROLE_ARN",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_LAMBDA_FUNCTION_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(bedrock, "CREDENTIALS", bedrock.AwsCredentials())


def fresh_credentials(monkeypatch) -> None:
    """Forget what the credential chain found (the gateway resolves it at start-up, in the background)."""
    monkeypatch.setattr(bedrock, "CREDENTIALS", bedrock.AwsCredentials())


@pytest.fixture
def gateway(start_gateway, bedrock_sim):
    return start_gateway(AWS_ENDPOINT_URL_BEDROCK_RUNTIME=bedrock_sim.url, AWS_REGION="us-east-1")


def post(gateway, model: str = ROUTE, *, stream=True, headers=None, timeout=20, **fields) -> httpx.Response:
    body = {"model": model, "messages": HELLO, "stream": stream, **fields}
    return httpx.post(gateway.base_url + "/chat/completions", json=body, timeout=timeout,
                      headers={"authorization": f"Bearer {GATEWAY_KEY}", **(headers or {})})


def content_of(response: httpx.Response) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in sse.objects(response) if c.get("choices"))


def outcomes(record) -> list[tuple[str, str, str]]:
    return [(a["provider"], a["model"], a["outcome"]) for a in record.attempts]


def wait_for_record(gateway, count: int = 1, within_s: float = 3) -> None:
    deadline = time.time() + within_s
    while len(gateway.records) < count and time.time() < deadline:
        time.sleep(0.02)


# --- what a new user tries first ---------------------------------------------------------------------


def test_the_openai_sdk_streams_text_with_usage(gateway, bedrock_sim):
    stream = gateway.client().chat.completions.create(model=ROUTE, messages=HELLO, stream=True,
                                                      stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("(simulated)") and len(text.split()) == 12
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12 and chunks[-1].usage.prompt_tokens > 0
    assert bedrock_sim.app.request_paths[-1] == f"/model/{MODEL.replace(':', '%3A')}/converse-stream"
    record = gateway.records[-1]
    assert (record.provider, record.model, record.status, record.outcome) == ("bedrock", MODEL, 200, "stop")
    assert record.completion_tokens == 12 and record.prompt_tokens == chunks[-1].usage.prompt_tokens
    assert 0 < record.ttft_ms <= record.total_ms and not record.usage_estimated


@pytest.mark.parametrize("include_usage", [True, False])
def test_nothing_follows_the_finish_but_usage(gateway, include_usage):
    response = post(gateway, stream_options={"include_usage": include_usage})
    data = [event.data for event in sse.events(response)]
    finish_at = next(i for i, payload in enumerate(data) if '"finish_reason":"stop"' in payload)
    after = data[finish_at + 1:]
    if include_usage:
        assert len(after) == 2 and json.loads(after[0])["choices"] == [] and after[1] == "[DONE]"
    else:
        assert after == ["[DONE]"]  # no trailing empty chunk (BerriAI/litellm#36767)


@pytest.mark.parametrize(("tool", "arguments"), [("end_call", {"reason": "simulated"}), ("skip_turn", {})])
def test_an_elevenlabs_system_tool_call(gateway, bedrock_sim, tool, arguments):
    stream = gateway.client().chat.completions.create(
        model=ROUTE, messages=HELLO, stream=True, tools=[END_CALL, SKIP_TURN], stream_options={"include_usage": True},
        extra_body={"simulator": {"tool_call": tool}})
    chunks = list(stream)
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert calls[0].function.name == tool and calls[0].id.startswith("tooluse_")
    assert json.loads("".join(call.function.arguments or "" for call in calls)) == arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage.completion_tokens > 0
    record = gateway.records[-1]
    assert record.tool_calls == [tool] and record.outcome == "tool_calls"
    sent = bedrock_sim.app.requests[-1]
    assert [t["toolSpec"]["name"] for t in sent["toolConfig"]["tools"]] == ["end_call", "skip_turn"]
    assert not {"stream", "model", "tools", "stream_options"} & set(sent)


def test_a_non_streamed_completion(gateway):
    completion = gateway.client().chat.completions.create(model=ROUTE, messages=HELLO,
                                                          extra_body={"simulator": {"tokens": 4}})
    assert completion.choices[0].message.content.startswith("(simulated)")
    assert completion.choices[0].finish_reason == "stop" and completion.usage.completion_tokens == 4
    record = gateway.records[-1]
    assert record.provider == "bedrock" and record.completion_tokens == 4 and record.status == 200


def test_a_non_streamed_completion_keeps_bedrock_latency_off_the_wire(gateway):
    """Bedrock's own latency figure goes to the record, not to the client."""
    response = post(gateway, stream=False)
    assert response.status_code == 200 and "x_bedrock_latency_ms" not in response.json()
    assert gateway.records[-1].upstream_latency_ms is not None


def test_usage_and_cache_tokens_reach_the_record(gateway):
    response = post(gateway, simulator={"tokens": 5, "prompt_tokens": 100, "cached_tokens": 60,
                                        "cache_write_tokens": 30})
    assert response.status_code == 200
    record = gateway.records[-1]
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (100, 5, 105)
    assert (record.cached_tokens, record.cache_write_tokens) == (60, 30)


def test_the_call_is_priced_from_the_catalog(gateway):
    """NEEDS THE LEAD: Bedrock prices in ledger/prices.json (Haiku 4.5: 1.00 in, 5.00 out, 0.10 cache read,
    1.25 cache write per million, as Anthropic's own list price)."""
    post(gateway, simulator={"tokens": 5, "prompt_tokens": 100, "cached_tokens": 60, "cache_write_tokens": 30})
    record = gateway.records[-1]
    assert record.priced
    assert record.cost_usd == pytest.approx((10 * 1.00 + 60 * 0.10 + 30 * 1.25 + 5 * 5.00) / 1e6)


def test_bedrock_latency_lands_on_the_record(gateway):
    """The usage chunk's Bedrock latency (metrics.latencyMs) lands on the record as upstream_latency_ms."""
    post(gateway, simulator={"tokens": 3, "gap_ms": 30})
    record = gateway.records[-1]
    assert record.upstream_latency_ms is not None and 50 <= record.upstream_latency_ms <= record.total_ms


def test_metrics_carry_the_bedrock_provider_and_model(start_gateway, bedrock_sim, capsys):
    gateway = start_gateway(AWS_ENDPOINT_URL_BEDROCK_RUNTIME=bedrock_sim.url, AWS_REGION="us-east-1",
                            SWITCHBOARD_METRICS="true")
    capsys.readouterr()
    assert post(gateway).status_code == 200
    emf = [line for line in capsys.readouterr().out.splitlines() if '"CloudWatchMetrics"' in line]
    METRICS_OUTPUT.extend(emf)
    [blob] = [json.loads(line) for line in emf]
    assert blob["provider"] == "bedrock" and blob["model"] == MODEL and blob["TTFT"][0] > 0
    assert blob["CompletionTokens"][0] == 12


# --- credentials -----------------------------------------------------------------------------------------


def test_wrong_credentials_tell_the_caller_only_that_and_the_log_where_they_came_from(gateway, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "bedrock-integ-wrong-secret-fake-42")
    EXTRA_SECRETS.append("bedrock-integ-wrong-secret-fake-42")
    fresh_credentials(monkeypatch)  # the gateway's warm-up already resolved the right ones
    logged = len(LOGS.lines)
    response = post(gateway, headers={"x-switchboard-fallbacks": "anthropic/claude-sim"})
    assert response.status_code == 403
    message = response.json()["error"]["message"]
    assert message == "Upstream provider 'bedrock' refused the gateway's AWS credentials (InvalidSignatureException)."
    assert "environment variables" not in response.text and "botocore" not in response.text
    [line] = [line for line in LOGS.lines[logged:] if line.startswith("Bedrock refused the gateway's AWS credentials")]
    assert "'error_type': 'InvalidSignatureException'" in line and "'region': 'us-east-1'" in line
    assert "do not match" in line and "environment variables (AWS_ACCESS_KEY_ID" in line
    record = gateway.records[-1]
    assert "environment variables" not in record.error
    assert record.status == 403 and outcomes(record) == [("bedrock", MODEL, "http_error")]  # a 4xx: no fallback
    assert find_leaks([response.text, repr(record.to_dict())], ("bedrock-integ-wrong-secret-fake-42", SECRET)) == []


def test_an_unknown_access_key_and_a_missing_session_token(gateway, monkeypatch):
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    fresh_credentials(monkeypatch)
    response = post(gateway)
    assert response.status_code == 403 and "UnrecognizedClientException" in response.json()["error"]["message"]


def test_no_credentials_at_all_falls_back(gateway, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    fresh_credentials(monkeypatch)
    response = post(gateway, headers={"x-switchboard-fallbacks": "anthropic/claude-sim"})
    assert response.status_code == 200 and content_of(response).startswith("(simulated)")
    record = gateway.records[-1]
    assert [a["outcome"] for a in record.attempts][0] == "aws_credentials" and record.provider == "anthropic"
    logged = len(LOGS.lines)
    response = post(gateway)
    assert response.status_code == 502 and "no usable AWS credentials" in response.json()["error"]["message"]
    assert any("found no AWS credentials" in line for line in LOGS.lines[logged:])


def test_why_credentials_failed_to_load_goes_to_the_log_not_to_the_caller(gateway, monkeypatch, tmp_path):
    """A credential_process that fails: what it printed (here, an account and a path) is the operator's to read."""
    script = tmp_path / "broken_process.py"
    script.write_text("import sys\nsys.stderr.write('SSO token for ops-admin@corp in /home/ops/.aws/sso expired')\n"
                      "sys.exit(1)\n")
    (tmp_path / "config").write_text(f"[profile broken]\ncredential_process = {sys.executable} {script}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "broken")
    fresh_credentials(monkeypatch)
    logged = len(LOGS.lines)
    response = post(gateway)
    assert response.status_code == 502
    assert response.json()["error"]["message"] == ("Upstream provider 'bedrock' cannot sign requests: the gateway "
                                                   "has no usable AWS credentials (its log says why).")
    assert "ops-admin" not in gateway.records[-1].error
    lines = [line for line in LOGS.lines[logged:] if line.startswith("Bedrock calls cannot be signed")]
    assert lines and all("custom-process" in line and "ops-admin@corp" in line for line in lines)  # one per attempt


# A credential_process (botocore's default chain, profile in AWS_CONFIG_FILE) that hands out short-lived
# session credentials, a new set each run, recording each in a file the simulated account reads.
CREDENTIAL_PROCESS = '''
import json, sys, time
from datetime import datetime, timezone
state, lifetime = sys.argv[1], float(sys.argv[2])
try:
    issued = json.load(open(state))
except FileNotFoundError:
    issued = []
n = len(issued) + 1
expires = time.time() + lifetime
entry = {"key": "AKIDTESTFAKEPROC%04d" % n, "secret": "proc-secret-%d-fake" % n, "token": "proc-token-%d-fake" % n,
         "expires_at": expires}
json.dump(issued + [entry], open(state, "w"))
print(json.dumps({"Version": 1, "AccessKeyId": entry["key"], "SecretAccessKey": entry["secret"],
                  "SessionToken": entry["token"],
                  "Expiration": datetime.fromtimestamp(expires, timezone.utc).isoformat()}))
'''


def test_expiring_credentials_are_refreshed_before_they_are_refused(start_gateway, monkeypatch, tmp_path):
    # The two first calls must fall before the refresh-ahead window (lifetime - 2 s): 4 s for about 0.1 s of work.
    lifetime_s = 6.0
    state = tmp_path / "issued.json"
    script = tmp_path / "credential_process.py"
    script.write_text(CREDENTIAL_PROCESS)
    (tmp_path / "config").write_text(
        f"[profile rotating]\ncredential_process = {sys.executable} {script} {state} {lifetime_s}\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "rotating")
    monkeypatch.setattr(bedrock, "CREDENTIALS", bedrock.AwsCredentials(refresh_ahead_s=2.0, must_refresh_s=1.0))

    def issued() -> list[dict]:
        return json.loads(state.read_text()) if state.exists() else []

    def lookup(access_key: str) -> AwsKey | None:
        for entry in issued():
            if entry["key"] == access_key:
                return AwsKey(entry["secret"], entry["token"], entry["expires_at"])
        return None

    app = SimulatorApp(Script(), aws_keys=lookup)
    with BackgroundServer(app) as sim:
        gateway = start_gateway(AWS_ENDPOINT_URL_BEDROCK_RUNTIME=sim.url, AWS_REGION="us-east-1")
        assert post(gateway).status_code == 200
        assert post(gateway).status_code == 200
        resolved = len(issued())  # the second call reused the cached credentials
        first_key = issued()[-1]["key"]
        time.sleep(max(0.0, issued()[-1]["expires_at"] - time.time()) + 0.2)  # they have now expired
        assert post(gateway).status_code == 200
    EXTRA_SECRETS.extend(entry["secret"] for entry in issued())
    used = [headers["authorization"].split("Credential=")[1][:20] for headers in app.request_headers]
    assert used[:2] == [first_key, first_key] and used[2] != first_key
    assert len(used) == 3  # refreshed before signing: AWS never had to refuse an expired token
    assert len(issued()) > resolved


# --- in-stream exceptions, fallbacks, retries ------------------------------------------------------------


def test_an_in_stream_throttle_before_the_first_token_is_retried(gateway):
    """Bedrock answers 200 then raises (Portkey-AI/gateway#1047): retried like a 429, and the caller never knows."""
    model = f"throws-throttlingException-1-{time.time_ns()}"
    response = post(gateway, f"bedrock/{model}")
    assert response.status_code == 200 and content_of(response).startswith("(simulated)")
    assert outcomes(gateway.records[-1]) == [("bedrock", model, "stream_error"), ("bedrock", model, "ok")]


def test_an_in_stream_server_error_before_the_first_token_falls_back_to_anthropic(gateway):
    response = post(gateway, "bedrock/throws-modelStreamErrorException",
                    headers={"x-switchboard-fallbacks": "anthropic/claude-sim"})
    assert response.status_code == 200 and content_of(response).startswith("(simulated)")
    record = gateway.records[-1]
    assert [a[2] for a in outcomes(record)] == ["stream_error", "stream_error", "ok"]
    assert record.provider == "anthropic" and record.model == "claude-sim"
    assert content_of(response).count("(simulated)") == 1  # nothing of the failed attempt reached the caller


def test_an_in_stream_validation_error_is_the_callers_and_is_not_retried(gateway):
    response = post(gateway, "bedrock/throws-validationException",
                    headers={"x-switchboard-fallbacks": "anthropic/claude-sim"})
    assert response.status_code == 400 and "validationException" in response.json()["error"]["message"]
    assert outcomes(gateway.records[-1]) == [("bedrock", "throws-validationException", "stream_error")]


def test_an_exception_after_the_first_token_is_an_error_event_and_the_end(gateway):
    response = post(gateway, simulator={"tokens": 8, "error_after": 3},
                    headers={"x-switchboard-fallbacks": "anthropic/claude-sim"})
    assert response.status_code == 200 and content_of(response) == "(simulated) This is"
    *_, last, end = response.text.rstrip().split("\n\n")
    assert last.startswith('data: {"error"') and "modelStreamErrorException" in last and end == "data: [DONE]"
    record = gateway.records[-1]
    assert record.status == 502 and outcomes(record) == [("bedrock", MODEL, "ok")]


def test_anthropic_falls_back_to_bedrock(gateway):
    response = post(gateway, "anthropic/fail-503", headers={"x-switchboard-fallbacks": ROUTE})
    assert response.status_code == 200 and content_of(response).startswith("(simulated)")
    record = gateway.records[-1]
    assert outcomes(record)[-1] == ("bedrock", MODEL, "ok") and record.provider == "bedrock"


@pytest.mark.parametrize("stream", [True, False])
def test_bedrock_falls_back_to_anthropic(gateway, stream):
    response = post(gateway, "bedrock/fail-503", stream=stream,
                    headers={"x-switchboard-fallbacks": "anthropic/claude-sim"})
    assert response.status_code == 200
    record = gateway.records[-1]
    assert outcomes(record) == [("bedrock", "fail-503", "http_error"), ("bedrock", "fail-503", "http_error"),
                                ("anthropic", "claude-sim", "ok")]


def test_a_throttled_bedrock_call_is_a_429_with_the_aws_error_type(gateway):
    response = post(gateway, "bedrock/fail-429")
    assert response.status_code == 429 and "ThrottlingException" in response.json()["error"]["message"]
    assert [a[2] for a in outcomes(gateway.records[-1])] == ["http_error", "http_error"]  # retried once, as a 429


def test_a_missing_permission_tells_the_operator_which_action_to_grant(gateway):
    response = post(gateway, "bedrock/fail-403")
    assert response.status_code == 403
    assert "bedrock:InvokeModelWithResponseStream" in response.json()["error"]["message"]
    response = post(gateway, "bedrock/fail-403", stream=False)
    message = response.json()["error"]["message"]
    assert response.status_code == 403 and "bedrock:InvokeModel " in message
    assert "InvokeModelWithResponseStream" not in message


# --- deadlines, buffer words, hang-ups ---------------------------------------------------------------------


def test_first_token_deadline_moves_to_the_fallback(gateway):
    # Expected about 1.1 s; the bound (3 s) is over 2x that and half the failure (waiting 6 s for the slow one). The
    # deadline is generous because it applies to the fallback too, whose first call may load the credentials.
    started = time.perf_counter()
    response = post(gateway, "bedrock/slow-6000", headers={"x-switchboard-first-token-timeout-ms": "1000",
                                                           "x-switchboard-fallbacks": ROUTE})
    assert response.status_code == 200 and content_of(response).startswith("(simulated)")
    assert time.perf_counter() - started < 3.0
    assert outcomes(gateway.records[-1]) == [("bedrock", "slow-6000", "first_token_timeout"), ("bedrock", MODEL, "ok")]


def test_total_deadline_ends_a_long_stream(gateway):
    response = post(gateway, simulator={"tokens": 40, "gap_ms": 50}, headers={"x-switchboard-timeout-ms": "400"})
    assert response.status_code == 200 and response.text.rstrip().endswith('"code":"timeout"}}\n\ndata: [DONE]')
    assert gateway.records[-1].status == 504


def test_buffer_words_while_bedrock_thinks(gateway):
    # Buffer words are due at 0.15 s (never earlier); the bound (1 s) is over 6x that and half the failure mode
    # (no buffer words: the first bytes would be the answer, at 2 s).
    started = time.perf_counter()
    with httpx.stream("POST", gateway.base_url + "/chat/completions", timeout=20,
                      json={"model": "bedrock/slow-2000", "messages": HELLO, "stream": True},
                      headers={"authorization": f"Bearer {GATEWAY_KEY}",
                               "x-switchboard-buffer-after-ms": "150"}) as response:
        seen = [(time.perf_counter() - started, event.json()) for event in sse.events(response)
                if event.data.startswith("{")]
    first_at, first = seen[0]
    assert first["choices"][0]["delta"]["content"] == "... " and 0.15 <= first_at < 1.0
    record = gateway.records[-1]
    assert record.buffer_words and record.ttft_ms >= 2000 and record.provider == "bedrock"


def test_a_hang_up_cancels_the_bedrock_call_at_once(gateway):
    # The hang-up comes at about 0.1 s; the bound (3 s) is over 20x that and under half the failure mode (the call
    # running on to the slow model's first token at 8 s).
    with httpx.stream("POST", gateway.base_url + "/chat/completions", timeout=20,
                      json={"model": "bedrock/slow-8000", "messages": HELLO, "stream": True},
                      headers={"authorization": f"Bearer {GATEWAY_KEY}",
                               "x-switchboard-buffer-after-ms": "100"}) as response:
        for event in sse.events(response):
            if "... " in event.data:
                break  # the caller hung up right after the buffer words
    wait_for_record(gateway, within_s=10)
    [record] = gateway.records
    assert record.outcome == "client_disconnected" and record.total_ms < 3000 and record.provider == "bedrock"


# --- what the lead wires around the adapter ----------------------------------------------------------------


def test_models_lists_bedrock_when_credentials_are_found(gateway):
    """/v1/models lists bedrock/<id> from the catalog once the credential chain has found credentials."""
    assert post(gateway).status_code == 200  # credentials resolved by a call
    listed = {m.id for m in gateway.client().models.list()}
    assert ROUTE in listed


def test_models_does_not_list_bedrock_without_credentials(gateway, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)
    fresh_credentials(monkeypatch)
    listed = {m.id for m in gateway.client().models.list()}
    assert not any(model.startswith("bedrock/") for model in listed)


def test_the_responses_api_streams_from_bedrock(gateway):
    stream = gateway.client().responses.create(model=ROUTE, input="hi", instructions="Be brief.", stream=True)
    kinds, text = [], []
    for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text.append(event.delta)
    assert "".join(text).startswith("(simulated)") and kinds[-1] == "response.completed"
    record = gateway.records[-1]
    assert record.provider == "bedrock" and record.api == "responses" and record.completion_tokens == 12


def test_the_responses_api_calls_a_bedrock_tool(gateway):
    stream = gateway.client().responses.create(
        model=ROUTE, input="bye", stream=True, extra_body={"simulator": {"tool_call": "end_call"}},
        tools=[{"type": "function", "name": "end_call", "parameters": END_CALL["function"]["parameters"]}])
    done = [event for event in stream if event.type == "response.output_item.done"]
    call = done[-1].item
    assert call.type == "function_call" and call.name == "end_call"
    assert json.loads(call.arguments) == {"reason": "simulated"}


def test_keys_never_leave(gateway, bedrock_sim):
    """The secret key and session token sign requests; they appear in no response, record or log line."""
    responses = [post(gateway), post(gateway, stream=False), post(gateway, "bedrock/fail-403")]
    texts = [r.text + repr(dict(r.headers)) for r in responses] + [repr(r.to_dict()) for r in gateway.records]
    assert find_leaks(texts, (SECRET, SESSION_TOKEN)) == []
    sent = [h for h in bedrock_sim.app.request_headers[-3:]]
    assert all(h["x-amz-security-token"] == SESSION_TOKEN and SECRET not in repr(h) for h in sent)


def test_openai_sdk_error_type_for_wrong_credentials(gateway, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTFAKENOBODY01")
    fresh_credentials(monkeypatch)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        gateway.client().chat.completions.create(model=ROUTE, messages=HELLO)
    assert "UnrecognizedClientException" in str(caught.value)



# --- model ids: checked before anything is signed or sent ------------------------------------------------


PROFILE_ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"


@pytest.mark.parametrize("model", [".", "..", "...", "us.anthropic.claude/../../converse", "a/b", "model id",
                                   "claude%2F..", "x" * 2049, PROFILE_ARN + "..", PROFILE_ARN, "arn:aws:bedrock//x",
                                   "arn:aws:bedrock:us-east-1::foundation-model/./anthropic.claude-v2"])
@pytest.mark.parametrize("stream", [True, False])
def test_a_model_id_bedrock_cannot_take_is_the_caller_s_400_and_nothing_is_sent(gateway, bedrock_sim, model, stream):
    sent_before = len(bedrock_sim.app.requests)
    response = post(gateway, f"bedrock/{model}", stream=stream,
                    headers={"x-switchboard-fallbacks": "anthropic/claude-sim"})
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == ("model", "invalid_model", "invalid_request_error")
    assert "a model id" in error["message"] and "an inference profile id" in error["message"]
    assert "an ARN" in error["message"]
    assert len(bedrock_sim.app.requests) == sent_before  # not signed, not sent: no dot segment ever reached a path
    record = gateway.records[-1]
    assert (record.status, record.outcome, record.attempts) == (400, "invalid_model", [])  # and no fallback ran


@pytest.mark.parametrize("model", [MODEL, "anthropic.claude-3-haiku-20240307-v1:0",
                                   "global.anthropic.claude-sonnet-4-6", PROFILE_ARN + MODEL,
                                   "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
                                   "deepseek.r1-v1:0", "my_custom.model-1"])
def test_every_form_bedrock_takes_is_sent(gateway, bedrock_sim, model):
    response = post(gateway, f"bedrock/{model}")
    assert response.status_code == 200 and content_of(response).startswith("(simulated)")
    encoded = model.replace(":", "%3A").replace("/", "%2F")
    assert bedrock_sim.app.request_paths[-1] == f"/model/{encoded}/converse-stream"
