"""The bench harness's pure parts: percentiles, the SSE watcher that clocks TTFT, the targets. No servers."""

from __future__ import annotations

import json
import math

import pytest

from bench.footprint import parse_status
from bench.load import batch_size, rotated
from bench.stats import Check, StreamWatcher, added, evaluate, json_safe, max_overlap, percentile, ratio, summarize


def chunk(content: str | None = None, finish: str | None = None, role: bool = False) -> bytes:
    delta: dict = {"role": "assistant", "content": ""} if role else {}
    if content is not None:
        delta["content"] = content
    event = {"id": "chatcmpl-x", "object": "chat.completion.chunk",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(event).encode() + b"\n\n"


STREAM = (chunk(role=True) + chunk("Hello") + chunk(" world") + chunk(finish="stop")
          + b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n' + b"data: [DONE]\n\n")


class TestPercentile:
    def test_matches_linear_interpolation_between_closest_ranks(self):
        values = [float(v) for v in range(1, 101)]  # 1..100
        assert percentile(values, 50) == pytest.approx(50.5)
        assert percentile(values, 90) == pytest.approx(90.1)
        assert percentile(values, 99) == pytest.approx(99.01)
        assert percentile(values, 0) == 1.0 and percentile(values, 100) == 100.0

    def test_order_of_input_does_not_matter(self):
        assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
        assert percentile([4.0, 1.0], 50) == 2.5

    def test_single_value(self):
        assert percentile([7.0], 99) == 7.0

    def test_empty_and_out_of_range_are_errors(self):
        with pytest.raises(ValueError):
            percentile([], 50)
        with pytest.raises(ValueError):
            percentile([1.0], 101)

    def test_summarize(self):
        summary = summarize([1.0, 2.0, 3.0, 4.0])
        assert summary["n"] == 4 and summary["p50"] == 2.5 and summary["mean"] == 2.5
        assert summary["min"] == 1.0 and summary["max"] == 4.0
        assert summarize([]) == {"n": 0}


class TestStreamWatcher:
    def test_whole_stream_at_once(self):
        watcher = StreamWatcher()
        watcher.feed(STREAM)
        assert watcher.first_token and watcher.done and watcher.error is None
        assert watcher.content_events == 2

    def test_role_chunk_with_empty_content_is_not_the_first_token(self):
        watcher = StreamWatcher()
        watcher.feed(chunk(role=True))
        assert not watcher.first_token
        watcher.feed(chunk("Hi"))
        assert watcher.first_token and not watcher.done

    @pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
    def test_split_every_few_bytes(self, size):
        watcher = StreamWatcher()
        seen_first_at = None
        for offset in range(0, len(STREAM), size):
            watcher.feed(STREAM[offset:offset + size])
            if watcher.first_token and seen_first_at is None:
                seen_first_at = offset + size
        first_token_end = len(chunk(role=True) + chunk("Hello"))
        # the first token counts only once its event is complete: its closing blank line arrived
        assert first_token_end <= seen_first_at < first_token_end + size
        assert watcher.done and watcher.content_events == 2

    def test_split_between_cr_and_lf(self):
        crlf = STREAM.replace(b"\n", b"\r\n")
        cut = crlf.index(b"\r\n\r\n", crlf.index(b"Hello")) + 1  # between \r and \n of the blank line's end
        watcher = StreamWatcher()
        watcher.feed(crlf[:cut])
        watcher.feed(crlf[cut:])
        assert watcher.first_token and watcher.done and watcher.content_events == 2

    def test_event_not_complete_until_blank_line(self):
        watcher = StreamWatcher()
        watcher.feed(chunk("Hi")[:-1])  # one newline short
        assert not watcher.first_token
        watcher.feed(b"\n")
        assert watcher.first_token

    def test_comments_event_names_and_no_space_after_colon(self):
        watcher = StreamWatcher()
        watcher.feed(b": keep-alive\n\nevent: message\nid: 1\ndata:" + chunk("x")[6:] + b"data:[DONE]\n\n")
        assert watcher.first_token and watcher.done

    def test_multi_line_data_is_joined(self):
        watcher = StreamWatcher()
        watcher.feed(b'data: {"choices": [{"delta":\ndata: {"content": "a"}}]}\n\n')
        assert watcher.first_token

    def test_error_event_is_reported(self):
        watcher = StreamWatcher()
        watcher.feed(b'data: {"error": {"message": "upstream failed"}}\n\ndata: [DONE]\n\n')
        assert watcher.error and "upstream failed" in watcher.error
        assert watcher.done and not watcher.first_token

    def test_garbage_is_an_error_not_a_crash(self):
        watcher = StreamWatcher()
        watcher.feed(b"data: not json\n\n")
        assert watcher.error and not watcher.first_token

    def test_tool_call_chunks_are_not_content(self):
        event = {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "end_call"}}]}}]}
        watcher = StreamWatcher()
        watcher.feed(b"data: " + json.dumps(event).encode() + b"\n\n")
        assert not watcher.first_token


class TestTargets:
    def test_added_and_ratio(self):
        assert added(3.5, 1.0) == 2.5
        assert added(None, 1.0) is None and added(1.0, None) is None
        assert ratio(20.0, 0.5) == 40.0
        assert ratio(20.0, 0.0) == math.inf and ratio(20.0, -0.1) == math.inf
        assert ratio(None, 1.0) is None and ratio(1.0, None) is None
        assert ratio(0.0, 0.0) is None

    def test_limits_are_inclusive(self):
        assert Check("x", 1.0, 1.0, "ms").met is True
        assert Check("x", 1.01, 1.0, "ms").met is False
        assert Check("x", 10.0, 10.0, "x", at_least=True).met is True
        assert Check("x", 9.9, 10.0, "x", at_least=True).met is False
        assert Check("x", None, 1.0, "ms").met is None
        assert Check("x", math.inf, 10.0, "x", at_least=True).verdict == "met"

    def test_evaluate_every_target(self):
        measured = {"gateway_added_ttft_p50_ms_c1": 0.8, "gateway_added_ttft_p50_ms_c10": 12.0,
                    "litellm_ratio_c1": 25.0, "litellm_ratio_c10": 9.0, "health_ratio": 1.2,
                    "first_minus_warm_ms": 30.0, "rss_peak_mb": 70.0, "package_mb": 21.5}
        verdicts = {check.name: check.met for check in evaluate(measured)}
        assert verdicts == {
            "gateway added TTFT p50 at c=1": True,
            "gateway added TTFT p50 at c=10": False,
            "LiteLLM added / gateway added TTFT p50 at c=1": True,
            "LiteLLM added / gateway added TTFT p50 at c=10": False,
            "cold start to /health, gateway / bare app (medians)": True,
            "first chat TTFT minus warm chat TTFT in a fresh process (median)": True,
            "gateway peak RSS with 200 concurrent streams (as on Lambda)": True,
            "sam build: function + layer unzipped": True,
        }

    def test_missing_measurements_are_not_measured(self):
        checks = evaluate({})
        assert checks and all(check.met is None for check in checks)

    def test_lambda_shaped_gateway_is_judged_when_measured(self):
        checks = evaluate({"gw_asgi_added_ttft_p50_ms_c1": 0.9, "gw_asgi_added_ttft_p50_ms_c10": 11.0})
        verdicts = {check.name: check.met for check in checks if check.name.startswith("gw-asgi")}
        assert verdicts == {"gw-asgi added TTFT p50 at c=1": True, "gw-asgi added TTFT p50 at c=10": False}


class TestHelpers:
    def test_max_overlap(self):
        assert max_overlap([]) == 0
        assert max_overlap([(0, 1), (2, 3)]) == 1
        assert max_overlap([(0, 5), (1, 2), (1.5, 6), (5, 7)]) == 3
        assert max_overlap([(0, 1), (1, 2)]) == 1  # one ends as the next starts

    def test_json_safe_spells_infinity(self):
        safe = json_safe({"ratio": math.inf, "nested": [1.0, -math.inf, {"x": math.nan}]})
        assert json.loads(json.dumps(safe)) == {"ratio": "inf", "nested": [1.0, "-inf", {"x": "nan"}]}

    def test_targets_take_turns_starting_with_the_next_one(self):
        assert [rotated(["a", "b", "c"], turn) for turn in range(4)] == [
            ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
        assert rotated([], 3) == []

    def test_batches_let_every_stream_overlap(self):
        assert batch_size(1) == 10 and batch_size(10) == 20 and batch_size(50) == 100

    def test_parse_proc_status(self):
        text = "Name:\tpython\nVmPeak:\t  900 kB\nVmHWM:\t   61440 kB\nVmRSS:\t   51200 kB\nThreads:\t3\n"
        assert parse_status(text) == {"VmHWM": 61440, "VmRSS": 51200}
