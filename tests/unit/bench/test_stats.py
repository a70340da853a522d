"""The bench harness's pure parts: percentiles, the watchers that clock TTFT (chat, Responses, ConverseStream),
import times, the `added` baselines and comparisons, CPU per call from /proc, the floor relay's message framing,
cold-start ratios, the per-level tables, the targets. No servers."""

from __future__ import annotations

import binascii
import json
import math
import struct

import pytest

from bench.coldstart import Trial, summarize_trials
from bench.converse import AwsCredentials, ConverseWatcher
from bench.cpu import CpuAccount, ProcStat, group_ticks, parse_proc_stat, ticks_to_s
from bench.floor import BodyFraming, FramingError, parse_head, take_request
from bench.footprint import parse_status
from bench.load import (
    CONVERSE,
    RESPONSES,
    CpuReadings,
    Results,
    Sample,
    Target,
    batch_size,
    encoded_request,
    rotated,
)
from bench.report import format_comparisons, format_import, format_load, load_level
from bench.stats import (
    Check,
    ResponsesWatcher,
    StreamWatcher,
    added,
    evaluate,
    json_safe,
    max_overlap,
    median_ratio,
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
                    "start_to_first_token_ratio": 0.9, "first_minus_warm_ms": 30.0, "rss_peak_mb": 70.0,
                    "package_mb": 29.9}
        verdicts = {check.name: check.met for check in evaluate(measured)}
        assert verdicts == {
            "gateway added TTFT p50 at c=1": True,
            "gateway added TTFT p50 at c=10": False,
            "gw-asgi added TTFT p50 at c=1": None,
            "gw-asgi added TTFT p50 at c=10": None,
            "gw-asgi CPU per call / gw-asgi-base's at c=1": None,
            "gw-asgi CPU per call / gw-asgi-base's at c=10": None,
            "LiteLLM added / gateway added TTFT p50 at c=1": True,
            "LiteLLM added / gateway added TTFT p50 at c=10": False,
            "cold start to /health, gateway / bare app (medians)": True,
            "cold start to the first token, gateway / bare FastAPI proxy (medians)": False,
            "first chat TTFT minus warm chat TTFT in a fresh process (median)": True,
            "gateway peak RSS with 200 concurrent streams (as on Lambda)": True,
            "sam build: function + layer unzipped": True,
        }

    def test_package_limit_is_30_mb(self):
        def package_check(mb: float) -> Check:
            return next(c for c in evaluate({"package_mb": mb}) if c.name.startswith("sam build"))

        assert package_check(30.0).met is True and package_check(30.01).met is False
        assert package_check(30.0).limit == 30.0

    def test_missing_measurements_are_not_measured(self):
        checks = evaluate({})
        assert checks and all(check.met is None for check in checks)

    def test_the_deployed_shape_is_judged_on_issue_15s_targets(self):
        checks = evaluate({"gw_asgi_added_ttft_p50_ms_c1": 0.7, "gw_asgi_added_ttft_p50_ms_c10": 5.1,
                           "gw_asgi_cpu_ratio_c1": 0.5, "gw_asgi_cpu_ratio_c10": 0.51})
        verdicts = {check.name: check.met for check in checks if check.name.startswith("gw-asgi")}
        assert verdicts == {"gw-asgi added TTFT p50 at c=1": True, "gw-asgi added TTFT p50 at c=10": False,
                            "gw-asgi CPU per call / gw-asgi-base's at c=1": True,
                            "gw-asgi CPU per call / gw-asgi-base's at c=10": False}


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
    """One Responses event framed as the gateway frames it (formats/responses/stream.py): event: + data:."""
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
import time:      1000 |       3600 |     switchboard.http.app
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
        assert "takes 300.0 ms" in late[0] and "aiohttp is not part of the gateway" in late[0]


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


# CPU per call, the floor's framing, cold-start ratios, the per-level tables.

# A /proc/<pid>/stat line whose command name holds spaces and a `)`: utime 250, stime 50, cutime 7, cstime 3.
PROC_STAT = ("4242 (python -m ) x) S 1 4242 4242 0 -1 4194560 9000 0 0 0 250 50 7 3 20 0 3 0 12345 "
             "300000000 12000 18446744073709551615 1 1 0 0 0 0 0 16781312 134235650 0 0 0 17 1 0 0 0 0 0")


class TestCpu:
    def test_parse_proc_stat_counts_fields_from_the_last_parenthesis(self):
        assert parse_proc_stat(PROC_STAT) == ProcStat(pid=4242, pgrp=4242, ticks=300, children_ticks=10)

    def test_group_sums_its_members_and_the_leaders_reaped_children(self):
        stats = [ProcStat(10, 10, 100, 5), ProcStat(11, 10, 40, 99), ProcStat(12, 99, 1000, 0)]
        assert group_ticks(stats, 10) == 100 + 40 + 5  # 11's own children are not counted, 12 is elsewhere
        assert group_ticks(stats, 11) is None  # not a group leader
        assert group_ticks([], 10) is None

    def test_ticks_to_seconds(self):
        assert ticks_to_s(250, per_s=100) == pytest.approx(2.5)

    def test_account_sums_the_deltas_of_its_batches_over_the_calls_sent(self):
        account = CpuAccount()
        account.add(1.00, 1.03, 10)
        account.add(5.00, 5.01, 10)  # other targets ran in between: their time is not in the sum
        assert account.seconds == pytest.approx(0.04)
        assert account.calls == 20 and account.batches == 2
        assert account.ms_per_call == pytest.approx(2.0)

    def test_account_without_calls_or_with_a_missing_reading_has_no_figure(self):
        assert CpuAccount().ms_per_call is None
        account = CpuAccount()
        account.add(1.0, 1.1, 10)
        account.add(None, 2.0, 10)
        assert account.unread == 1 and account.ms_per_call is None

    def test_time_going_backwards_leaves_no_figure(self):
        account = CpuAccount()
        account.add(1.0, 1.1, 10)
        account.add(2.0, 1.0, 10)  # not the same group any more: no honest delta
        assert account.unread == 1 and account.ms_per_call is None

    def test_results_charge_server_and_upstream_separately(self):
        out = Results()
        out.add_cpu("gw-asgi", CpuReadings(1.0, 3.0), CpuReadings(1.05, 3.02), 10)
        out.add_cpu("direct", CpuReadings(3.02, None), CpuReadings(3.04, None), 10)
        assert out.cpu["gw-asgi"].ms_per_call == pytest.approx(5.0)
        assert out.upstream_cpu["gw-asgi"].ms_per_call == pytest.approx(2.0)
        assert out.cpu["direct"].ms_per_call == pytest.approx(2.0) and "direct" not in out.upstream_cpu

    def test_readings_of_a_target(self):
        seen = {7: 1.5, 9: 0.25}
        target = Target("gw-asgi", "http://h/v1", "m", pid=7, upstream_pid=9)
        assert CpuReadings.of(target, seen.get) == CpuReadings(1.5, 0.25)
        assert CpuReadings.of(Target("x", "http://h/v1", "m"), seen.get) == CpuReadings()
        assert CpuReadings.of(target, None) == CpuReadings()


def cpu_results(p50s_ms: dict[str, tuple[float, float]], cpu_ms: dict[str, float]) -> Results:
    out = results(p50s_ms)
    for name, per_call in cpu_ms.items():
        out.add_cpu(name, CpuReadings(10.0), CpuReadings(10.0 + per_call * 3 / 1000), 3)
    return out


class TestLevelWithCpu:
    def test_cpu_per_call_and_the_gateway_over_the_floor(self):
        level = load_level(cpu_results({"direct": (1.0, 20.0), "floor": (1.25, 20.5), "gw-asgi": (2.0, 22.0)},
                                       {"direct": 1.0, "floor": 0.5, "gw-asgi": 2.0}))
        assert level["gw-asgi"]["cpu_ms_per_call"] == pytest.approx(2.0)
        assert level["floor"]["added_ttft_p50_ms"] == pytest.approx(0.25)
        assert level["gw-asgi"]["ttft_p50_minus_floor_ms"] == pytest.approx(0.75)
        assert level["gw-asgi"]["cpu_ms_per_call_minus_floor"] == pytest.approx(1.5)
        assert "ttft_p50_minus_floor_ms" not in level["floor"]

    def test_no_cpu_reading_leaves_the_column_empty(self):
        level = load_level(results({"direct": (1.0, 2.0), "gw-asgi": (2.0, 3.0)}))
        assert level["gw-asgi"]["cpu_ms_per_call"] is None and level["gw-asgi"]["cpu"] is None

    def test_one_table_per_level_with_the_floor_beside_the_gateway(self):
        level = load_level(cpu_results({"gw-asgi": (2.0, 22.0), "direct": (1.0, 20.0), "floor": (1.25, 20.5)},
                                       {"direct": 1.0, "floor": 0.5, "gw-asgi": 2.0}))
        load = {"settings": {"requests_per_target": 3, "tokens": 20, "targets": ["gw-asgi", "direct", "floor"],
                             "upstream": "spaced", "pause_ms": 2}, "levels": {"1": level, "10": level}}
        lines = format_load(load)
        assert sum(line == " c=1" for line in lines) == 1 and " c=10" in lines
        rows = [line.split()[0] for line in lines[lines.index(" c=1") + 2:lines.index(" c=1") + 5]]
        assert rows == ["direct", "floor", "gw-asgi"]
        gateway_row = next(line for line in lines if line.startswith("  gw-asgi ") and "1.00" in line)
        assert gateway_row.split()[1:6] == ["2.00", "2.40", "2.49", "1.00", "2.00"]  # p50 p90 p99 +TTFT CPU
        assert "  gw-asgi over the floor: +0.75 ms TTFT p50, +1.50 ms CPU per call" in lines


class TestBodyFraming:
    CHUNKED = b"5\r\nhello\r\n1a;ext=1\r\n" + b"x" * 26 + b"\r\n0\r\n\r\n"

    @pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 1000])
    def test_chunked_ends_after_the_zero_chunk_split_anywhere(self, size):
        framing = BodyFraming("chunked")
        taken = 0
        for offset in range(0, len(self.CHUNKED), size):
            assert not framing.done
            taken += framing.feed(self.CHUNKED[offset:offset + size])
        assert framing.done and taken == len(self.CHUNKED)

    def test_chunked_with_trailers_and_bytes_after_the_end(self):
        framing = BodyFraming("chunked")
        body = b"3\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\n"
        assert framing.feed(body + b"HTTP/1.1 200 OK") == len(body) and framing.done
        assert framing.feed(b"more") == 0

    def test_not_done_before_the_last_crlf(self):
        framing = BodyFraming("chunked")
        framing.feed(self.CHUNKED[:-1])
        assert not framing.done
        assert framing.feed(b"\n") == 1 and framing.done

    def test_a_chunk_holding_what_looks_like_a_zero_chunk_is_data(self):
        framing = BodyFraming("chunked")
        framing.feed(b"7\r\n0\r\n\r\nab\r\n")
        assert not framing.done

    def test_content_length_and_no_body(self):
        framing = BodyFraming("length", 5)
        assert framing.feed(b"hel") == 3 and not framing.done
        assert framing.feed(b"lo+next") == 2 and framing.done
        assert BodyFraming("length", 0).done and BodyFraming("none").done

    def test_framing_of_a_response(self):
        assert BodyFraming.of_response(200, {"transfer-encoding": "chunked"}, "POST").kind == "chunked"
        assert BodyFraming.of_response(200, {"content-length": "12"}, "GET").kind == "length"
        assert BodyFraming.of_response(204, {}, "GET").kind == "none"
        assert BodyFraming.of_response(200, {"content-length": "12"}, "HEAD").kind == "none"
        assert BodyFraming.of_response(200, {}, "GET").kind == "close"

    def test_bad_sizes_are_errors(self):
        with pytest.raises(FramingError):
            BodyFraming("chunked").feed(b"zz\r\n")
        with pytest.raises(FramingError):
            BodyFraming.of_response(200, {"content-length": "-1"}, "GET")


class TestTakeRequest:
    REQUEST = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n"
               b"Connection: keep-alive\r\n\r\n{}{}")

    def test_a_whole_request_and_what_follows(self):
        raw, method, close, rest = take_request(self.REQUEST + b"GET / HTTP/1.1\r\n")
        assert raw == self.REQUEST and method == "POST" and not close and rest == b"GET / HTTP/1.1\r\n"

    def test_incomplete_head_or_body_waits(self):
        assert take_request(self.REQUEST[:20]) is None
        assert take_request(self.REQUEST[:-1]) is None

    def test_close_and_no_body(self):
        raw, method, close, rest = take_request(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert method == "GET" and close and rest == b""

    def test_chunked_requests_are_refused(self):
        with pytest.raises(FramingError):
            take_request(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")

    def test_parse_head_lowercases_names(self):
        start, headers = parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A:  b \r\n\r\n")
        assert start == "HTTP/1.1 200 OK" and headers == {"content-type": "text/event-stream", "x-a": "b"}


class TestColdStartRatios:
    def test_median_ratio(self):
        assert median_ratio([850.0, 900.0, 800.0], [1000.0, 900.0, 1100.0]) == pytest.approx(850 / 1000)
        assert median_ratio([], [1.0]) is None and median_ratio([1.0], []) is None
        assert median_ratio([1.0], [0.0]) is None

    def test_each_gateway_against_the_bare_proxy(self):
        trials = [Trial("bare", 0.50, 0.60, 0.020, 0.003), Trial("gateway", 0.40, 0.45, 0.030, 0.004),
                  Trial("gateway-base", 0.70, 0.80, 0.020, 0.004), Trial("bare", 0.70, 0.80, 0.020, 0.003),
                  Trial("gateway", 0.60, 0.65, 0.030, 0.004), Trial("gateway-base", 0.90, 1.00, 0.020, 0.004)]
        summary = summarize_trials(trials)
        assert summary["trials_per_app"] == 2 and list(summary["apps"]) == ["bare", "gateway", "gateway-base"]
        assert summary["apps"]["bare"]["start_to_first_token_ms"]["median"] == pytest.approx(700.0)
        assert summary["ratios"]["gateway"]["start_to_first_token"] == pytest.approx(550 / 700)
        assert summary["ratios"]["gateway"]["health"] == pytest.approx(500 / 600)
        assert summary["ratios"]["gateway-base"]["start_to_first_token"] == pytest.approx(900 / 700)
        assert summary["start_to_first_token_ratio"] == summary["ratios"]["gateway"]["start_to_first_token"]
        assert summary["first_minus_warm_ms"]["median"] == pytest.approx(26.0)
        assert "bare" not in summary["ratios"]
