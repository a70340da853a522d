"""The bench harness's pure parts: percentiles, the watchers that clock TTFT (chat, Responses, ConverseStream),
import times, the `added` baselines and comparisons, the targets. No servers."""

from __future__ import annotations

import binascii
import json
import math
import struct

import pytest

from bench.converse import AwsCredentials, ConverseWatcher
from bench.footprint import parse_status
from bench.load import CONVERSE, RESPONSES, Results, Sample, Target, batch_size, encoded_request, rotated
from bench.report import format_comparisons, format_import, load_level
from bench.stats import (
    Check,
    ResponsesWatcher,
    StreamWatcher,
    added,
    evaluate,
    json_safe,
    max_overlap,
    package_import_ms,
    percentile,
    ratio,
    summarize,
)


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
                    "first_minus_warm_ms": 30.0, "rss_peak_mb": 70.0, "package_mb": 29.9}
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

    def test_package_limit_is_30_mb_now_the_layer_carries_aiohttp(self):
        def package_check(mb: float) -> Check:
            return next(c for c in evaluate({"package_mb": mb}) if c.name.startswith("sam build"))

        assert package_check(30.0).met is True and package_check(30.01).met is False
        assert package_check(30.0).limit == 30.0

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


def responses_event(event_type: str, **fields) -> bytes:
    """One Responses event framed as the gateway frames it (handler/switchboard/responses.py): event: + data:."""
    return (f"event: {event_type}\ndata: ".encode() + json.dumps({"type": event_type, **fields}).encode() + b"\n\n")


RESPONSES_STREAM = (responses_event("response.created", response={"status": "in_progress"})
                    + responses_event("response.output_item.added", output_index=0)
                    + responses_event("response.content_part.added", output_index=0)
                    + responses_event("response.output_text.delta", delta="Hello", sequence_number=4)
                    + responses_event("response.output_text.delta", delta=" world", sequence_number=5)
                    + responses_event("response.output_text.done", text="Hello world")
                    + responses_event("response.completed", response={"status": "completed"}))


class TestResponsesWatcher:
    def test_first_token_is_the_first_text_delta_and_done_is_completed(self):
        watcher = ResponsesWatcher()
        opening_end = RESPONSES_STREAM.index(b"event: response.output_text.delta")
        watcher.feed(RESPONSES_STREAM[:opening_end])
        assert not watcher.first_token  # created / item added / part added are not speech
        watcher.feed(RESPONSES_STREAM[opening_end:])
        assert watcher.first_token and watcher.done and watcher.error is None
        assert watcher.content_events == 2

    @pytest.mark.parametrize("size", [1, 3, 7, 64])
    def test_split_anywhere_with_crlf(self, size):
        stream = RESPONSES_STREAM.replace(b"\n", b"\r\n")
        watcher = ResponsesWatcher()
        for offset in range(0, len(stream), size):
            watcher.feed(stream[offset:offset + size])
        assert watcher.first_token and watcher.done and watcher.content_events == 2

    def test_not_done_before_completed(self):
        watcher = ResponsesWatcher()
        watcher.feed(RESPONSES_STREAM[:RESPONSES_STREAM.index(b"event: response.completed")])
        assert watcher.first_token and not watcher.done

    def test_empty_delta_is_not_a_token(self):
        watcher = ResponsesWatcher()
        watcher.feed(responses_event("response.output_text.delta", delta=""))
        assert not watcher.first_token

    def test_failed_response_ends_the_stream_as_an_error(self):
        watcher = ResponsesWatcher()
        watcher.feed(responses_event("response.failed", response={"error": {"message": "upstream went away"}}))
        assert watcher.done and watcher.error and "upstream went away" in watcher.error

    def test_a_done_marker_is_not_how_responses_end(self):
        watcher = ResponsesWatcher()
        watcher.feed(b"data: [DONE]\n\n")
        assert not watcher.done and watcher.error


def event_stream_message(headers: dict[str, str], payload: dict) -> bytes:
    """AWS's binary event stream framing (prelude, CRC, string headers, payload, CRC), written out here."""
    body = json.dumps(payload).encode()
    header_bytes = b"".join(struct.pack(">B", len(k)) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
                            for k, v in headers.items())
    prelude = struct.pack(">II", 16 + len(header_bytes) + len(body), len(header_bytes))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + header_bytes + body
    return message + struct.pack(">I", binascii.crc32(message))


def converse_event(event_type: str, payload: dict) -> bytes:
    return event_stream_message({":event-type": event_type, ":content-type": "application/json",
                                 ":message-type": "event"}, payload)


CONVERSE_STREAM = (converse_event("messageStart", {"role": "assistant"})
                   + converse_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}})
                   + converse_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " world"}})
                   + converse_event("contentBlockStop", {"contentBlockIndex": 0})
                   + converse_event("messageStop", {"stopReason": "end_turn"})
                   + converse_event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 2}}))


class TestConverseWatcher:
    @pytest.mark.parametrize("size", [1, 5, 13, 4096])
    def test_first_text_delta_then_metadata(self, size):
        watcher = ConverseWatcher()
        seen_first_at = None
        for offset in range(0, len(CONVERSE_STREAM), size):
            watcher.feed(CONVERSE_STREAM[offset:offset + size])
            if watcher.first_token and seen_first_at is None:
                seen_first_at = min(offset + size, len(CONVERSE_STREAM))
        first_end = len(CONVERSE_STREAM[:CONVERSE_STREAM.index(b"Hello")]) + len(b'Hello"}}') + 4  # + message CRC
        assert first_end <= seen_first_at < first_end + size
        assert watcher.done and watcher.error is None and watcher.content_events == 2

    def test_not_done_at_message_stop(self):
        watcher = ConverseWatcher()
        watcher.feed(CONVERSE_STREAM[:CONVERSE_STREAM.index(b"metadata") - 20])
        assert watcher.first_token and not watcher.done

    def test_tool_input_deltas_are_not_speech(self):
        watcher = ConverseWatcher()
        delta = {"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{"}}}
        watcher.feed(converse_event("contentBlockDelta", delta))
        assert not watcher.first_token

    def test_exception_in_the_stream_is_an_error(self):
        watcher = ConverseWatcher()
        watcher.feed(event_stream_message({":exception-type": "throttlingException", ":message-type": "exception"},
                                          {"message": "slow down"}))
        assert watcher.done and "throttlingException" in watcher.error

    def test_corrupt_bytes_are_an_error_not_a_crash(self):
        watcher = ConverseWatcher()
        broken = bytearray(CONVERSE_STREAM)
        broken[20] ^= 0xFF
        watcher.feed(bytes(broken))
        assert watcher.error and watcher.done


class TestConverseSigning:
    def test_the_simulator_accepts_the_signed_request(self):
        """What the bench sends to `direct-bedrock` must pass the simulator's SigV4 check, or there is no baseline."""
        from switchboard.simulator.bedrock_api import AwsKey, check_signature

        aws = AwsCredentials("FAKE-TEST-ACCESS-KEY", "test-secret-fake", "us-east-1")
        target = Target("direct-bedrock", "http://127.0.0.1:5999", "us.anthropic.claude-haiku-4-5-20251001-v1:0",
                        api=CONVERSE, aws=aws)
        body, headers = encoded_request(target)
        assert target.url.endswith("/model/us.anthropic.claude-haiku-4-5-20251001-v1%3A0/converse-stream")
        raw_path = target.url.removeprefix("http://127.0.0.1:5999")

        def scope(signed_headers: dict[str, str]) -> dict:
            sent = {"host": "127.0.0.1:5999", **signed_headers}
            return {"method": "POST", "path": raw_path, "raw_path": raw_path.encode(), "query_string": b"",
                    "headers": [(k.lower().encode(), v.encode()) for k, v in sent.items()]}

        keys = {aws.access_key_id: AwsKey(aws.secret_access_key)}.get
        assert check_signature(scope(headers), body, keys) is None
        assert json.loads(body)["messages"][0]["role"] == "user"
        wrong = {aws.access_key_id: AwsKey("another-secret-fake")}.get
        assert check_signature(scope(headers), body, wrong)[1] == "InvalidSignatureException"

    def test_responses_body_is_the_deployed_shape(self):
        body, headers = encoded_request(Target("gw-responses", "http://h/v1", "openai/echo", "sb-fake", api=RESPONSES))
        assert json.loads(body) == {"model": "openai/echo", "input": "Say something short.", "stream": True}
        assert headers["authorization"] == "Bearer sb-fake"
        assert Target("gw-responses", "http://h/v1", "m", api=RESPONSES).url == "http://h/v1/responses"


IMPORTTIME = """import time: self [us] | cumulative | imported package
import time:       100 |        100 |   _io
import time:       300 |        300 |           aiohttp.hdrs
import time:       200 |        200 |             multidict
import time:       400 |        600 |           aiohttp.helpers
import time:      1000 |       1900 |         aiohttp
import time:        50 |       2050 |       switchboard.providers.transport
import time:       500 |        500 |       aiohttp.web_response
import time:      1000 |       3600 |     switchboard.app
import time:       900 |       4500 | switchboard.asgi
"""


class TestImportTime:
    def test_sums_only_the_outermost_entries_of_the_package(self):
        # aiohttp (1.9 ms, its submodules and multidict inside) plus a submodule imported later from elsewhere
        assert package_import_ms(IMPORTTIME, "aiohttp") == pytest.approx(2.4)
        assert package_import_ms(IMPORTTIME, "switchboard") == pytest.approx(4.5)

    def test_a_package_never_imported_is_none(self):
        assert package_import_ms(IMPORTTIME, "boto3") is None
        assert package_import_ms(IMPORTTIME, "aiohttp_retry") is None  # a prefix is not the package

    def test_report_says_whether_it_was_at_start_up(self):
        at_start = format_import({"statement": "import switchboard.asgi", "aiohttp_ms": 120.0, "total_ms": 450.0})
        assert "during start-up: 120.0 ms of the 450.0 ms" in at_start[0]
        late = format_import({"statement": "import switchboard.asgi", "aiohttp_ms": None, "total_ms": 300.0})
        assert "NOT imported" in late[0]


def results(p50s_ms: dict[str, tuple[float, float]]) -> Results:
    """Three samples per target around the given (TTFT, total) medians."""
    out = Results()
    for name, (ttft, total) in p50s_ms.items():
        out.add(name, [Sample(0.0, (ttft + d) / 1000, (total + d) / 1000) for d in (-0.5, 0.0, 0.5)])
    return out


class TestBaselines:
    def test_bedrock_is_added_over_its_own_direct_and_compared_to_chat(self):
        level = load_level(results({"direct": (1.0, 2.0), "gw-asgi": (2.0, 3.5), "gw-responses": (2.5, 4.5),
                                    "direct-bedrock": (1.5, 2.5), "gw-bedrock": (4.0, 5.0)}))
        assert level["gw-asgi"]["added_ttft_p50_ms"] == pytest.approx(1.0)
        assert level["gw-responses"]["added_ttft_p50_ms"] == pytest.approx(1.5)
        assert level["gw-responses"]["ttft_p50_minus_chat_ms"] == pytest.approx(0.5)
        assert level["gw-responses"]["total_p50_minus_chat_ms"] == pytest.approx(1.0)
        assert level["gw-bedrock"]["baseline"] == "direct-bedrock"
        assert level["gw-bedrock"]["added_ttft_p50_ms"] == pytest.approx(2.5)
        assert level["gw-bedrock"]["added_ttft_minus_chat_added_ms"] == pytest.approx(1.5)
        assert level["direct-bedrock"]["added_ttft_p50_ms"] is None
        assert level["direct"]["added_ttft_p50_ms"] == 0.0

    def test_without_its_own_direct_bedrock_falls_back_to_chat_direct(self):
        level = load_level(results({"direct": (1.0, 2.0), "gw-asgi": (2.0, 3.0), "gw-bedrock": (3.0, 4.0)}))
        assert level["gw-bedrock"]["baseline"] == "direct"
        assert level["gw-bedrock"]["added_ttft_p50_ms"] == pytest.approx(2.0)

    def test_the_sentences_say_more_or_less(self):
        level = load_level(results({"direct": (1.0, 2.0), "gw-asgi": (2.0, 3.0), "gw-responses": (1.75, 3.5),
                                    "direct-bedrock": (1.0, 2.0), "gw-bedrock": (3.5, 4.0)}))
        lines = format_comparisons({"levels": {"10": level}})
        assert lines[0].startswith("  c=10: Responses adds 0.25 ms less than chat to TTFT")
        assert "0.50 ms more to total" in lines[0]
        assert "Bedrock adds 1.50 ms more than chat" in lines[1]
