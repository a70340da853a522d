"""core/attempts: which route a call commits to, against a scripted fake adapter (no sockets).

Each route's upstream is a "play": a list of steps the fake's `stream` acts out in order. A list is one batch
of chunks the upstream sends, a number is a silence of that many seconds, an UpstreamError is raised where it
stands. `complete` plays the same way, a dict being the completion it returns. What the tests look at is what
a caller and an operator would notice: which route answered, what it had sent by then, what the call record
says about each attempt, whether buffer words were said, and which error the client would get.

Deadlines are small (0.05 s) and a silent upstream stays silent for 5 s, so an assertion on elapsed time needs
only "well under 5 s"; everything else is about order and outcome.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from switchboard.config.settings import Settings
from switchboard.core import attempts as attempts_module
from switchboard.core.attempts import BUDGET_DOWNGRADED, Attempts, Committed
from switchboard.core.plan import CallPlan
from switchboard.ledger.record import CallRecord
from switchboard.providers.base import UpstreamStats
from switchboard.wire.chat import Chunk, Route, UpstreamError
from switchboard.wire.errors import GatewayError

SILENT_S = 5.0  # an upstream that says nothing for this long; a test never waits for it
WELL_UNDER_SILENT_S = SILENT_S / 2
SETTINGS = Settings.from_env({})
BODY = {"model": "a", "messages": [{"role": "user", "content": "hi"}], "stream": True}
CLIENT = object()  # the adapters get the attempts' client as it was handed in; the fake checks that


def chunk(delta: dict, finish: str | None = None) -> Chunk:
    parsed = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake",
              "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return json.dumps(parsed).encode(), parsed


ROLE = chunk({"role": "assistant", "content": ""})  # seen by no one: does not commit a route
USAGE = (b"{}", {"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 3}})  # nor does this
FINISH = chunk({}, "stop")


def token(text: str) -> Chunk:
    return chunk({"content": text})


def fails(status: int, kind: str = "http_error", retry_after: str | None = None) -> UpstreamError:
    return UpstreamError(status, f"simulated {status}", kind=kind, upstream_status=status, retry_after=retry_after)


def completion(text: str) -> dict:
    return {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                      "finish_reason": "stop"}]}


def route(name: str, family: str = "openai_compat") -> Route:
    return Route(name, family, name, f"http://{name}.invalid/v1", None, f"{name}/{name}")


A, B, C = route("a"), route("b"), route("c")


def call_plan(*routes: Route, first_token_timeout_s: float | None = 2.0, total_timeout_s: float = 10.0,
              buffer_after_s: float | None = None, max_retries: int = 0, retry_max_wait_s: float = 1.0) -> CallPlan:
    return CallPlan(list(routes or (A, B)), first_token_timeout_s, total_timeout_s, buffer_after_s, max_retries,
                    retry_max_wait_s)


class FakeAdapter:
    """An Adapter whose every call acts out the next play scripted for its route's model. `log` is one timeline
    for the whole call: ("open", model), ("send", model, text), ("close", model), ("buffer_words",), ("verdict",)."""

    def __init__(self, plays: dict[Route, list[list]], log: list[tuple]) -> None:
        self.plays = {r.model: list(p) for r, p in plays.items()}
        self.log = log
        self.families: list[str] = []  # the family each call was looked up under

    def lookup(self, family: str) -> FakeAdapter:
        self.families.append(family)
        return self

    def _next_play(self, client: object, route: Route) -> list:
        assert client is CLIENT, "the adapter gets the attempts' own client"
        assert self.plays.get(route.model), f"no play left for {route.model}: an attempt nobody expected"
        return self.plays[route.model].pop(0)

    def stream(self, client, route: Route, body: dict, stats: UpstreamStats | None = None):
        return self._act(route.model, self._next_play(client, route))

    async def _act(self, model: str, play: list):
        # "open" when the generator first runs: where a real adapter sends its request
        self.log.append(("open", model))
        try:
            for step in play:
                if isinstance(step, UpstreamError):
                    raise step
                if isinstance(step, int | float):
                    await asyncio.sleep(step)
                else:
                    self.log.append(("send", model, text_of(step)))
                    yield list(step)
        finally:
            self.log.append(("close", model))

    async def complete(self, client, route: Route, body: dict, stats: UpstreamStats | None = None) -> dict:
        play = self._next_play(client, route)
        self.log.append(("open", route.model))
        try:
            for step in play:
                if isinstance(step, UpstreamError):
                    raise step
                if isinstance(step, int | float):
                    await asyncio.sleep(step)
                elif isinstance(step, dict):
                    if stats is not None:
                        stats.latency_ms = step.get("latency_ms")
                    return step
            raise AssertionError("a complete() play must end with a completion or an error")
        finally:
            self.log.append(("close", route.model))

    def usable(self, route: Route | None = None) -> str | None:
        return None

    def warm(self) -> None:
        pass


@dataclass
class Outcome:
    """What one call came to: the route committed (with what it had sent, and the rest of its stream) or the
    error the client gets, the record, and the call's timeline."""

    record: CallRecord
    log: list[tuple]
    fake: FakeAdapter
    elapsed_s: float
    committed: Committed | None = None
    rest: list[Chunk] = field(default_factory=list)
    error: BaseException | None = None
    tasks_left: list[asyncio.Task] = field(default_factory=list)

    @property
    def held_text(self) -> str:
        assert self.committed is not None, f"no route committed: {self.error!r}"
        return text_of(self.committed.held)

    @property
    def attempts(self) -> list[tuple[str, str, int]]:
        return [(a["provider"], a["outcome"], a["status"]) for a in self.record.attempts]

    @property
    def opened(self) -> list[str]:
        return [entry[1] for entry in self.log if entry[0] == "open"]

    @property
    def closed(self) -> list[str]:
        return [entry[1] for entry in self.log if entry[0] == "close"]


def text_of(chunks: list[Chunk]) -> str:
    return "".join((parsed["choices"][0]["delta"].get("content") or "") for _raw, parsed in chunks
                   if parsed.get("choices"))


Budget = Callable[[list[tuple]], asyncio.Future]


def verdict_after(delay_s: float, routes: list[Route] | None = None, refusal: GatewayError | None = None) -> Budget:
    """A budget verdict that comes in after `delay_s` (0: already in when the call starts): carry on (None),
    move to `routes`, or refuse with `refusal`."""

    def make(log: list[tuple]) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()

        def decide() -> None:
            if future.done():
                return  # the attempts settled it (cancelled) already
            log.append(("verdict",))
            if refusal is not None:
                future.set_exception(refusal)
            else:
                future.set_result(routes)

        if delay_s:
            asyncio.get_running_loop().call_later(delay_s, decide)
        else:
            decide()
        return future

    return make


def never_decided(log: list[tuple]) -> asyncio.Future:
    return asyncio.get_running_loop().create_future()


def stream_call(plays: dict[Route, list[list]], plan: CallPlan | None = None, *, budget: Budget | None = None,
                settings: Settings = SETTINGS) -> Outcome:
    """Run `Attempts.start` as the relay does, then read what is left of the committed stream as the relay does
    (the read buffer words left pending first), and close it."""
    log: list[tuple] = []
    fake = FakeAdapter(plays, log)
    record = CallRecord()

    async def main() -> Outcome:
        started = time.perf_counter()
        future = budget(log) if budget is not None else None
        attempts = Attempts(CLIENT, fake.lookup, settings, plan or call_plan(), BODY, record, started, future)

        async def buffer_words() -> None:
            log.append(("buffer_words",))

        outcome = Outcome(record, log, fake, 0.0)
        try:
            outcome.committed = await attempts.start(buffer_words)
        except (UpstreamError, GatewayError) as exc:
            outcome.error = exc
        else:
            upstream = outcome.committed.upstream
            try:
                if not outcome.committed.ended:
                    pending = upstream.take_pending()
                    if pending is not None:
                        outcome.rest += await pending
                    async for batch in upstream.iterator:
                        outcome.rest += batch
            except StopAsyncIteration:
                pass
            finally:
                await upstream.aclose()
        outcome.elapsed_s = time.perf_counter() - started
        await asyncio.sleep(0)  # let whatever was cancelled finish
        outcome.tasks_left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return outcome

    return asyncio.run(main())


def complete_call(plays: dict[Route, list[list]], plan: CallPlan | None = None) -> tuple[Outcome, dict | None]:
    log: list[tuple] = []
    fake = FakeAdapter(plays, log)
    record = CallRecord()

    async def main() -> tuple[Outcome, dict | None]:
        started = time.perf_counter()
        attempts = Attempts(CLIENT, fake.lookup, SETTINGS, plan or call_plan(), BODY, record, started)
        outcome, answer = Outcome(record, log, fake, 0.0), None
        try:
            answer = await attempts.complete()
        except (UpstreamError, GatewayError) as exc:
            outcome.error = exc
        outcome.elapsed_s = time.perf_counter() - started
        return outcome, answer

    return asyncio.run(main())


# --- committing to a route -----------------------------------------------------------------------------------


def test_the_first_route_to_send_a_visible_token_is_committed_with_everything_it_sent():
    call = stream_call({A: [[[ROLE], 0.01, [token("Hello")], [token(" there"), FINISH], [USAGE]]],
                        B: [[[token("never")]]]})
    assert call.error is None and call.attempts == [("a", "ok", 200)]
    assert call.committed.held == [ROLE, token("Hello")]  # the invisible role chunk is held, not dropped
    assert not call.committed.ended
    assert call.rest == [token(" there"), FINISH, USAGE]  # the rest of the same stream, in order
    assert (call.record.provider, call.record.model) == ("a", "a")
    assert call.opened == ["a"] and call.closed == ["a"]
    assert not call.record.buffer_words and ("buffer_words",) not in call.log
    assert call.tasks_left == []


def test_each_route_is_called_through_its_own_family():
    anthropic, bedrock = route("a", "anthropic"), route("b", "bedrock")
    call = stream_call({anthropic: [[fails(503)]], bedrock: [[[token("hi")]]]}, call_plan(anthropic, bedrock))
    assert call.held_text == "hi"
    assert call.fake.families == ["anthropic", "bedrock"]


def test_a_finish_without_content_commits_too():
    call = stream_call({A: [[[ROLE, FINISH], [USAGE]]], B: [[[token("never")]]]})
    assert call.attempts == [("a", "ok", 200)] and call.committed.held == [ROLE, FINISH]
    assert call.opened == ["a"]


def test_a_stream_that_ends_before_any_token_is_committed_as_ended():
    call = stream_call({A: [[[ROLE], [USAGE]]], B: [[[token("never")]]]})
    assert call.attempts == [("a", "ok", 200)]
    assert call.committed.ended and call.committed.held == [ROLE, USAGE] and call.rest == []
    assert call.opened == ["a"]


# --- falling back and retrying before the first token ---------------------------------------------------------


@pytest.mark.parametrize(("error", "outcome"), [(fails(502, "connect_error"), "connect_error"),
                                                (fails(502, "stream_error"), "stream_error"),
                                                (fails(503), "http_error"), (fails(429), "http_error")],
                         ids=["connect", "broken-stream", "503", "429"])
def test_a_route_that_fails_before_its_first_token_hands_the_call_to_the_next(error, outcome):
    call = stream_call({A: [[[ROLE], 0.01, error]], B: [[[ROLE], [token("from b")], [FINISH]]]})
    assert call.error is None and call.held_text == "from b"
    assert call.attempts == [("a", outcome, error.status), ("b", "ok", 200)]
    assert call.record.provider == "b"
    assert call.log.index(("close", "a")) < call.log.index(("open", "b"))  # a is closed before b is asked
    assert call.tasks_left == []


def test_when_every_route_fails_the_last_error_is_the_callers():
    call = stream_call({A: [[fails(503)]], B: [[fails(502, "connect_error")]]})
    assert isinstance(call.error, UpstreamError) and call.error.kind == "connect_error"
    assert call.attempts == [("a", "http_error", 503), ("b", "connect_error", 502)]
    assert call.closed == ["a", "b"]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_retryable_failure_is_retried_on_the_same_route_up_to_max_retries(status):
    call = stream_call({A: [[fails(status)], [fails(status)], [fails(status)]], B: [[[token("b")]]]},
                       call_plan(max_retries=2, retry_max_wait_s=1.0))
    assert call.opened == ["a", "a", "a", "b"]
    assert call.attempts == [("a", "http_error", status)] * 3 + [("b", "ok", 200)]


def test_a_retry_that_succeeds_commits_the_same_route():
    call = stream_call({A: [[fails(503)], [[token("second time")]]], B: [[[token("b")]]]}, call_plan(max_retries=1))
    assert call.held_text == "second time"
    assert call.attempts == [("a", "http_error", 503), ("a", "ok", 200)] and call.opened == ["a", "a"]


def test_a_retry_waits_what_the_upstream_asked_for():
    call = stream_call({A: [[fails(429, retry_after="0.2")], [[token("ok")]]]},
                       call_plan(A, max_retries=1, retry_max_wait_s=1.0))
    assert call.held_text == "ok"
    first, second = call.record.attempts
    assert second["started_ms"] - first["started_ms"] >= 190  # never sooner than asked (sleeps are not early)


# the wait asked for, or the default backoff (50 ms first), beyond retry_max_wait: no retry on that route
@pytest.mark.parametrize(("retry_after", "retry_max_wait_s"), [(str(SILENT_S), 0.5), (None, 0.01)],
                         ids=["retry-after", "backoff"])
def test_a_retry_wait_longer_than_retry_max_wait_moves_on_at_once(retry_after, retry_max_wait_s):
    call = stream_call({A: [[fails(429, retry_after=retry_after)], [[token("a again")]]], B: [[[token("b")]]]},
                       call_plan(max_retries=1, retry_max_wait_s=retry_max_wait_s))
    assert call.held_text == "b" and call.opened == ["a", "b"]
    assert call.elapsed_s < WELL_UNDER_SILENT_S


def test_with_no_retries_a_failure_goes_straight_to_the_next_route():
    call = stream_call({A: [[fails(503)]], B: [[[token("b")]]]}, call_plan(max_retries=0))
    assert call.opened == ["a", "b"]


# A refused redirect is a 502 (providers.errors), but one that must not be chased either.
@pytest.mark.parametrize(("status", "kind"), [(400, "http_error"), (401, "http_error"), (404, "http_error"),
                                              (422, "http_error"), (502, "redirect_refused")])
def test_a_declared_client_error_is_neither_retried_nor_handed_to_a_fallback(status, kind):
    error = fails(status, kind)
    call = stream_call({A: [[[ROLE], error], [[token("retried")]]], B: [[[token("fell back")]]]},
                       call_plan(max_retries=2))
    assert call.error is error
    assert call.opened == ["a"] and call.closed == ["a"]
    assert call.attempts == [("a", error.kind, error.status)]
    assert call.record.provider is None  # nothing committed


# --- the clocks ------------------------------------------------------------------------------------------------


def test_the_first_token_deadline_moves_the_call_to_the_next_route_without_a_retry():
    call = stream_call({A: [[[ROLE], SILENT_S, [token("too late")]], [[token("retried")]]],
                        B: [[[token("b in time")]]]},
                       call_plan(first_token_timeout_s=0.05, max_retries=2))
    assert call.held_text == "b in time"
    assert call.attempts == [("a", "first_token_timeout", 504), ("b", "ok", 200)]
    assert call.opened == ["a", "b"] and call.closed[0] == "a"  # the slow route is given up, not waited on
    assert call.elapsed_s < WELL_UNDER_SILENT_S
    assert call.tasks_left == []


def test_the_first_token_deadline_counts_per_attempt():
    # b takes longer than a's window in all, but not longer than its own
    call = stream_call({A: [[0.3, [token("a")]]], B: [[0.1, [token("b")]]]},
                       call_plan(first_token_timeout_s=0.15))
    assert call.held_text == "b" and call.attempts[-1] == ("b", "ok", 200)


def test_when_every_route_misses_its_first_token_deadline_the_caller_gets_a_504():
    call = stream_call({A: [[SILENT_S]], B: [[SILENT_S]]}, call_plan(first_token_timeout_s=0.05))
    assert isinstance(call.error, UpstreamError) and call.error.status == 504
    assert call.attempts == [("a", "first_token_timeout", 504), ("b", "first_token_timeout", 504)]
    assert call.elapsed_s < WELL_UNDER_SILENT_S


def test_the_total_deadline_ends_a_silent_call_with_a_504():
    call = stream_call({A: [[[ROLE], SILENT_S, [token("too late")]]]},
                       call_plan(A, first_token_timeout_s=None, total_timeout_s=0.1))
    assert isinstance(call.error, UpstreamError) and call.error.status == 504
    assert call.opened == ["a"] and call.closed == ["a"]
    assert call.elapsed_s < WELL_UNDER_SILENT_S
    assert call.tasks_left == []


def test_the_total_deadline_caps_the_first_token_deadline():
    call = stream_call({A: [[SILENT_S]]}, call_plan(A, first_token_timeout_s=SILENT_S * 2, total_timeout_s=0.1))
    assert isinstance(call.error, UpstreamError) and call.error.status == 504
    assert call.elapsed_s < WELL_UNDER_SILENT_S


def test_a_fallback_is_not_started_once_the_total_deadline_has_passed():
    call = stream_call({A: [[SILENT_S]], B: [[SILENT_S]], C: [[SILENT_S]]},
                       call_plan(A, B, C, first_token_timeout_s=None, total_timeout_s=0.1))
    assert isinstance(call.error, UpstreamError) and call.error.status == 504
    assert call.opened == ["a"]  # b and c could not have had any time: nothing should be sent to them


def test_the_504_at_the_total_deadline_says_so():
    call = stream_call({A: [[SILENT_S]], B: [[SILENT_S]]}, call_plan(first_token_timeout_s=None, total_timeout_s=0.1))
    assert isinstance(call.error, UpstreamError) and call.error.status == 504
    windows_ms = [int(figure) for figure in re.findall(r"-?\d+", call.error.message)]
    assert all(window > 0 for window in windows_ms), call.error.message


# --- buffer words ------------------------------------------------------------------------------------------------


def test_buffer_words_are_said_when_due_before_the_first_token_and_the_same_read_goes_on():
    call = stream_call({A: [[[ROLE], 0.3, [token("answer")], [FINISH]]]},
                       call_plan(A, buffer_after_s=0.05, first_token_timeout_s=2.0))
    assert call.record.buffer_words
    assert call.log.index(("buffer_words",)) < call.log.index(("send", "a", "answer"))
    assert call.log.count(("buffer_words",)) == 1
    assert call.held_text == "answer" and call.rest == [FINISH]
    assert call.opened == ["a"]  # waiting on buffer words neither restarts nor drops the upstream's read


def test_nothing_the_upstream_sends_is_lost_around_the_buffer_words():
    # the first token comes just after the buffer words, the next one after the handover to the relay
    call = stream_call({A: [[[ROLE], 0.1, [token("one")], 0.1, [token(" two")], [FINISH]]]},
                       call_plan(A, buffer_after_s=0.05))
    assert call.record.buffer_words
    assert call.held_text + text_of(call.rest) == "one two"


def test_no_buffer_words_when_the_first_token_comes_in_time():
    call = stream_call({A: [[[token("quick")], 0.2, [FINISH]]]}, call_plan(A, buffer_after_s=0.1))
    assert not call.record.buffer_words and ("buffer_words",) not in call.log
    assert call.rest == [FINISH]


def test_buffer_words_are_said_once_across_a_fallback():
    call = stream_call({A: [[0.1, fails(503)]], B: [[0.1, [token("b")]]]}, call_plan(buffer_after_s=0.05))
    assert call.held_text == "b" and call.log.count(("buffer_words",)) == 1
    assert call.log.index(("buffer_words",)) < call.log.index(("open", "b"))  # said while a was still silent


def test_buffer_words_fall_due_during_a_retry_wait_too():
    call = stream_call({A: [[fails(503, retry_after="0.3")], [[token("a again")]]]},
                       call_plan(A, buffer_after_s=0.05, max_retries=1))
    assert call.held_text == "a again" and call.log.count(("buffer_words",)) == 1
    assert call.log.index(("buffer_words",)) < call.log.index(("open", "a"), 1)  # before the retry is sent


def test_buffer_words_due_after_the_first_token_deadline_are_never_said():
    call = stream_call({A: [[SILENT_S]], B: [[[token("b")]]]},
                       call_plan(buffer_after_s=SILENT_S, first_token_timeout_s=0.05))
    assert call.held_text == "b" and ("buffer_words",) not in call.log


# --- the budget verdict -------------------------------------------------------------------------------------------


def test_a_downgrade_verdict_while_the_upstream_is_silent_moves_the_call_at_once():
    call = stream_call({A: [[[ROLE], SILENT_S, [token("expensive")]]], C: [[[token("cheap")]]]},
                       budget=verdict_after(0.05, routes=[C]))
    assert call.held_text == "cheap"
    assert call.attempts == [("a", BUDGET_DOWNGRADED, 0), ("c", "ok", 200)]
    assert call.log.index(("close", "a")) < call.log.index(("open", "c"))
    assert call.elapsed_s < WELL_UNDER_SILENT_S
    assert call.tasks_left == []


def test_a_verdict_already_in_moves_the_call_before_anything_is_sent_upstream():
    call = stream_call({A: [[[token("expensive")]]], C: [[[token("cheap")]]]}, budget=verdict_after(0, routes=[C]))
    assert call.held_text == "cheap" and call.opened == ["c"]
    assert call.attempts == [("c", "ok", 200)]


def test_a_downgrade_verdict_slower_than_the_first_token_still_decides_the_route():
    # a's token is in first, but nothing reaches the client before the verdict: the call still moves
    call = stream_call({A: [[[token("expensive")], SILENT_S]], C: [[[token("cheap")]]]},
                       budget=verdict_after(0.1, routes=[C]))
    assert call.held_text == "cheap"
    assert call.attempts == [("a", BUDGET_DOWNGRADED, 0), ("c", "ok", 200)]


def test_an_under_budget_verdict_lets_the_call_carry_on_with_the_same_upstream():
    call = stream_call({A: [[[ROLE], 0.2, [token("answer")], [FINISH]]], C: [[[token("never")]]]},
                       budget=verdict_after(0.05, routes=None))
    assert call.held_text == "answer" and call.rest == [FINISH]
    assert call.attempts == [("a", "ok", 200)] and call.opened == ["a"]
    assert call.log.index(("verdict",)) < call.log.index(("close", "a"))


def test_a_refusing_verdict_ends_the_call_with_its_error_and_closes_the_upstream():
    refusal = GatewayError(429, "over budget", code="budget_exceeded")
    call = stream_call({A: [[[ROLE], SILENT_S, [token("never")]]], B: [[[token("never")]]]},
                       budget=verdict_after(0.05, refusal=refusal))
    assert call.error is refusal
    assert call.opened == ["a"] and call.closed == ["a"]
    assert all(outcome != "ok" for _provider, outcome, _status in call.attempts)
    assert call.elapsed_s < WELL_UNDER_SILENT_S
    assert call.tasks_left == []


def test_a_refusing_verdict_after_the_first_token_still_refuses():
    refusal = GatewayError(429, "over budget", code="budget_exceeded")
    call = stream_call({A: [[[token("answer")], SILENT_S]]}, call_plan(A), budget=verdict_after(0.1, refusal=refusal))
    assert call.error is refusal and call.record.provider is None


def test_buffer_words_wait_for_an_under_budget_verdict_then_are_said():
    call = stream_call({A: [[0.4, [token("answer")]]]}, call_plan(A, buffer_after_s=0.05),
                       budget=verdict_after(0.15, routes=None))
    assert call.held_text == "answer"
    assert call.log.index(("verdict",)) < call.log.index(("buffer_words",)) < call.log.index(("send", "a", "answer"))


def test_buffer_words_wait_for_a_refusing_verdict_and_are_never_said():
    refusal = GatewayError(429, "over budget", code="budget_exceeded")
    call = stream_call({A: [[SILENT_S]]}, call_plan(A, buffer_after_s=0.05),
                       budget=verdict_after(0.2, refusal=refusal))
    assert call.error is refusal and ("buffer_words",) not in call.log  # refused before a byte went out


def test_buffer_words_during_a_retry_wait_wait_for_the_verdict_too():
    refusal = GatewayError(429, "over budget", code="budget_exceeded")
    call = stream_call({A: [[fails(503, retry_after="0.4")], [[token("a again")]]]},
                       call_plan(A, buffer_after_s=0.05, max_retries=1),
                       budget=verdict_after(0.2, refusal=refusal))
    assert call.error is refusal
    assert ("buffer_words",) not in call.log


def test_a_verdict_that_never_comes_lets_the_call_go_when_budget_on_error_is_open(monkeypatch):
    monkeypatch.setattr(attempts_module, "VERDICT_WAIT_S", 0.05)
    call = stream_call({A: [[[token("answer")], [FINISH]]]}, call_plan(A), budget=never_decided,
                       settings=Settings.from_env({"SWITCHBOARD_BUDGET_ON_ERROR": "open"}))
    assert call.error is None and call.held_text == "answer" and call.rest == [FINISH]
    assert call.elapsed_s < WELL_UNDER_SILENT_S


def test_a_verdict_that_never_comes_refuses_the_call_when_budget_on_error_is_closed(monkeypatch):
    monkeypatch.setattr(attempts_module, "VERDICT_WAIT_S", 0.05)
    call = stream_call({A: [[[token("answer")], [FINISH]]]}, call_plan(A), budget=never_decided,
                       settings=Settings.from_env({"SWITCHBOARD_BUDGET_ON_ERROR": "closed"}))
    assert isinstance(call.error, GatewayError) and call.error.status == 503
    assert call.error.code == "budget_unavailable" and call.record.provider is None
    assert call.elapsed_s < WELL_UNDER_SILENT_S


# --- complete(): the same routes, retries and deadline ----------------------------------------------------------


def test_complete_returns_the_first_routes_answer_and_its_latency_figure():
    call, answer = complete_call({A: [[0.01, {**completion("hello"), "latency_ms": 42}]], B: [[completion("b")]]})
    assert answer["choices"][0]["message"]["content"] == "hello"
    assert call.attempts == [("a", "ok", 200)] and call.opened == ["a"]
    assert call.record.upstream_latency_ms == 42 and call.record.provider == "a"


def test_complete_retries_then_falls_back():
    call, answer = complete_call({A: [[fails(503)], [fails(429)]], B: [[completion("from b")]]},
                                 call_plan(max_retries=1))
    assert answer["choices"][0]["message"]["content"] == "from b"
    assert call.attempts == [("a", "http_error", 503), ("a", "http_error", 429), ("b", "ok", 200)]


def test_complete_does_not_pass_a_client_error_on():
    call, answer = complete_call({A: [[fails(400)]], B: [[completion("never")]]}, call_plan(max_retries=2))
    assert answer is None and isinstance(call.error, UpstreamError) and call.error.status == 400
    assert call.opened == ["a"] and call.attempts == [("a", "http_error", 400)]


def test_complete_gives_a_504_at_the_total_deadline_and_sends_nothing_more():
    call, answer = complete_call({A: [[SILENT_S, completion("too late")]], B: [[completion("never")]]},
                                 call_plan(total_timeout_s=0.1, max_retries=2))
    assert answer is None and isinstance(call.error, UpstreamError) and call.error.status == 504
    assert call.opened == ["a"] and call.closed == ["a"]
    assert call.attempts == [("a", "timeout", 504)]  # b was never tried, so the record does not say it was
    assert call.elapsed_s < WELL_UNDER_SILENT_S
