"""The Adapter contract (providers/base.py), one suite for every provider family.

Each family is driven through `Adapters(env)(family)` against the simulator over a real loopback socket, in
its own wire format (OpenAI SSE, Anthropic named events, Bedrock's signed Converse and binary event stream),
with `UpstreamClient` as the client. What is checked is what the gateway relies on whichever family answers:
OpenAI chunks with the simulated text, one finish, usage; the first token relayed while the upstream is still
talking; the same answer from `complete`; an upstream's refusal as UpstreamError with the status the caller
gets; a cut connection as a stream_error, not a hang; an early `aclose` that leaves nothing behind; and
`usable` / `warm` that never raise.

Where a family legitimately differs, it says so in FAMILIES below, and nowhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from switchboard.http.serving import BackgroundServer
from switchboard.providers import bedrock
from switchboard.providers.adapters import Adapters
from switchboard.providers.base import Adapter, UpstreamStats
from switchboard.providers.transport.client import UpstreamClient
from switchboard.simulator import Script, SimulatorApp
from switchboard.simulator.bedrock_api import AwsKey
from switchboard.wire.chat import Chunk, Route, UpstreamError, is_visible
from tests.conftest import ANTHROPIC_KEY, EXTRA_SECRETS, OPENAI_KEY

ACCESS_KEY = "AKIDTESTFAKECONFORM1"
SECRET = "conformance-secret-fake-0123456789"
BEDROCK_MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
BOUND_S = 10.0  # no scenario may take longer: a hang fails the test instead of stalling the run
PROMPT_TOKENS = 7
TOKENS = 5


@dataclass(frozen=True)
class Family:
    """How the suite reaches one family through the simulator, and where the family differs from the rest.

    `statuses`: upstream HTTP status -> (the status the caller gets, the error's kind), where it is not the
    default (a 4xx passed on as it is, anything else a 502; kind http_error).
    """

    provider: str
    model: str
    base_url: Callable[[str], str]  # the route's base URL, from the simulator's
    api_key: str | None
    statuses: Mapping[int, tuple[int, str]] = field(default_factory=dict)
    # Calls are signed with the gateway's own AWS credentials: without any, usable() says why.
    needs_aws_credentials: bool = False
    # The upstream reports its own latency figure, which the adapter hands back in UpstreamStats.
    reports_latency: bool = False


FAMILIES: dict[str, Family] = {
    "openai_compat": Family("openai", "gpt-sim", lambda url: url + "/v1", OPENAI_KEY),
    "anthropic": Family("anthropic", "claude-sim", lambda url: url, ANTHROPIC_KEY),
    # Bedrock (providers/bedrock/errors.py): ModelTimeoutException (408) is a timeout; ModelErrorException
    # (424) is the model failing, worth another route, so a 502 rather than the caller's fault.
    "bedrock": Family("bedrock", BEDROCK_MODEL, lambda url: url, None,
                      statuses={408: (504, "timeout"), 424: (502, "http_error")},
                      needs_aws_credentials=True, reports_latency=True),
}


def expected_error(family: Family, upstream_status: int) -> tuple[int, str]:
    if upstream_status in family.statuses:
        return family.statuses[upstream_status]
    return (upstream_status if 400 <= upstream_status < 500 else 502), "http_error"


T = TypeVar("T")


@pytest.fixture(scope="module")
def simulated_upstream():
    EXTRA_SECRETS.append(SECRET)
    server = BackgroundServer(SimulatorApp(Script(), aws_keys={ACCESS_KEY: AwsKey(SECRET)})).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    """Fake AWS credentials in the environment, nothing else botocore could find, a fresh credential cache."""
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


@pytest.fixture(params=sorted(FAMILIES))
def family_name(request) -> str:
    return request.param


@pytest.fixture
def family(family_name: str) -> Family:
    return FAMILIES[family_name]


@pytest.fixture
def adapter(family_name: str, simulated_upstream: BackgroundServer) -> Adapter:
    env = {"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": simulated_upstream.url, "AWS_REGION": "us-east-1"}
    return Adapters(env)(family_name)


@pytest.fixture
def route(family_name: str, family: Family, simulated_upstream: BackgroundServer) -> Route:
    return Route(family.provider, family_name, family.model,
                 family.base_url(simulated_upstream.url), family.api_key, f"{family.provider}/{family.model}")


def body(**simulator: object) -> dict:
    """A client's request, with the simulator's knobs for this call (the families forward them)."""
    return {"model": "any", "messages": [{"role": "user", "content": "Hello"}], "stream": True,
            "simulator": {"tokens": TOKENS, "prompt_tokens": PROMPT_TOKENS, **simulator}}


def simulated_text(tokens: int = TOKENS) -> str:
    return "".join(Script(tokens=tokens).words())


def run(scenario: Callable[[UpstreamClient], Awaitable[T]]) -> T:
    """`scenario(client)` on a fresh loop and client, bounded by BOUND_S; the client is closed after."""

    async def main() -> T:
        async with asyncio.timeout(BOUND_S):
            async with UpstreamClient(connect_timeout=5, read_timeout=5) as client:
                return await scenario(client)

    return asyncio.run(main())


def content(chunks: list[Chunk]) -> str:
    return "".join(parsed["choices"][0]["delta"].get("content") or "" for _raw, parsed in chunks
                   if parsed.get("choices"))


def other_tasks() -> list[asyncio.Task]:
    return [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]


# --- streaming ------------------------------------------------------------------------------------------------


def test_a_streamed_answer_is_openai_chunks_with_the_text_one_finish_and_usage(adapter, route, family):
    stats = UpstreamStats()

    async def scenario(client: UpstreamClient) -> list[list[Chunk]]:
        return [batch async for batch in adapter.stream(client, route, body(), stats)]

    batches = run(scenario)
    assert batches and all(batches), "one non-empty batch per read"
    chunks = [pair for batch in batches for pair in batch]
    for _raw, parsed in chunks:
        ChatCompletionChunk.model_validate(parsed)  # what the OpenAI SDK would parse
    assert content(chunks) == simulated_text()
    finishes = [parsed["choices"][0]["finish_reason"] for _raw, parsed in chunks
                if parsed.get("choices") and parsed["choices"][0].get("finish_reason")]
    assert finishes == ["stop"]
    usage = [parsed["usage"] for _raw, parsed in chunks if parsed.get("usage")]
    assert len(usage) == 1
    assert (usage[0]["prompt_tokens"], usage[0]["completion_tokens"]) == (PROMPT_TOKENS, TOKENS)
    assert (stats.latency_ms is not None) == family.reports_latency


def test_the_first_token_is_handed_over_while_the_upstream_is_still_sending(adapter, route):
    """Relay-ability: the batch with the first visible token comes while the rest is still on its way (here
    the second token is a second off), not once the answer is complete."""
    gap_s = 1.0

    async def scenario(client: UpstreamClient) -> tuple[list[Chunk], bool]:
        batches = adapter.stream(client, route, body(tokens=2, gap_ms=gap_s * 1000))
        try:
            seen: list[Chunk] = []
            while not any(is_visible(parsed) for _raw, parsed in seen):
                seen += await batches.__anext__()
            try:
                await asyncio.wait_for(batches.__anext__(), gap_s / 4)
                rest_pending = False
            except TimeoutError:
                rest_pending = True
            return seen, rest_pending
        finally:
            await batches.aclose()

    seen, rest_pending = run(scenario)
    assert content(seen) == simulated_text(1)
    assert rest_pending, "the first token came only with the rest of the answer"


def test_complete_returns_a_chat_completion_with_the_same_text_and_usage(adapter, route, family):
    stats = UpstreamStats()

    async def scenario(client: UpstreamClient) -> dict:
        return await adapter.complete(client, route, {**body(), "stream": False}, stats)

    completion = run(scenario)
    ChatCompletion.model_validate(completion)
    assert completion["object"] == "chat.completion"
    choice = completion["choices"][0]
    assert choice["message"]["content"] == simulated_text() and choice["finish_reason"] == "stop"
    usage = completion["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (PROMPT_TOKENS, TOKENS)
    assert (stats.latency_ms is not None) == family.reports_latency


# --- failures -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["stream", "complete"])
@pytest.mark.parametrize("upstream_status", [400, 404, 408, 424, 429, 500, 503, 529])
def test_an_upstream_refusal_is_an_upstream_error_with_the_callers_status(adapter, route, family, method,
                                                                          upstream_status):
    request = body(fail_status=upstream_status)
    received: list[Chunk] = []

    async def scenario(client: UpstreamClient) -> None:
        if method == "complete":
            await adapter.complete(client, route, {**request, "stream": False})
            return
        async for batch in adapter.stream(client, route, request):
            received.extend(batch)

    with pytest.raises(UpstreamError) as raised:
        run(scenario)
    assert (raised.value.status, raised.value.kind) == expected_error(family, upstream_status)
    assert raised.value.upstream_status == upstream_status
    assert received == []  # refused before the first batch
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, SECRET):
        assert secret not in raised.value.message


def test_a_connection_cut_mid_stream_is_a_stream_error_after_what_came_before(adapter, route):
    received: list[Chunk] = []

    async def scenario(client: UpstreamClient) -> None:
        async for batch in adapter.stream(client, route, body(cut_after=2)):
            received.extend(batch)

    with pytest.raises(UpstreamError) as raised:
        run(scenario)  # bounded: a hang would be a TimeoutError here instead
    assert raised.value.kind == "stream_error" and raised.value.status == 502
    assert content(received) == simulated_text(2)
    assert not any(parsed["choices"][0].get("finish_reason") for _raw, parsed in received if parsed.get("choices"))


# --- resources ------------------------------------------------------------------------------------------------


def test_closing_a_stream_early_leaves_nothing_pending_and_the_client_usable(adapter, route):
    async def scenario(client: UpstreamClient) -> tuple[list[asyncio.Task], str]:
        batches = adapter.stream(client, route, body(tokens=3, gap_ms=500))
        try:
            async for batch in batches:
                if any(is_visible(parsed) for _raw, parsed in batch):
                    break
        finally:
            await batches.aclose()
        await asyncio.sleep(0)
        left = other_tasks()
        after = [pair async for batch in adapter.stream(client, route, body()) for pair in batch]
        return left, content(after)

    left, next_text = run(scenario)
    assert left == []
    assert next_text == simulated_text()


def test_a_stream_never_iterated_can_be_closed_without_a_request(adapter, route, simulated_upstream):
    sent_before = len(simulated_upstream.app.requests)

    async def scenario(client: UpstreamClient) -> list[asyncio.Task]:
        await adapter.stream(client, route, body()).aclose()
        return other_tasks()

    assert run(scenario) == []
    assert len(simulated_upstream.app.requests) == sent_before


# --- usable and warm ------------------------------------------------------------------------------------------


def test_usable_is_none_or_a_reason_and_none_once_warmed_with_credentials(adapter, route):
    for verdict in (adapter.usable(), adapter.usable(route)):
        assert verdict is None or (isinstance(verdict, str) and verdict)
    adapter.warm()
    assert adapter.usable() is None and adapter.usable(route) is None


def test_warm_without_credentials_fails_quietly_and_usable_says_why(adapter, family, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    adapter.warm()  # never raises: the call itself reports properly
    reason = adapter.usable()
    assert (reason is not None) == family.needs_aws_credentials
    assert reason is None or "credentials" in reason
