"""Load and faults, the `make test` size: 200 concurrent streams, twice, against the simulator.

Upstream 5xx (with and without a fallback), connections cut mid-stream, slow first tokens past their
deadline, clients hanging up, and DynamoDB failing or stalling under the ledger: every request must
still end well-formed and leave exactly one call record, and the gateway must survive with flat memory.
`make soak` (bench/soak/) runs the same harness longer.
"""

from __future__ import annotations

from bench.soak import KINDS, run_soak

STREAMS = 200
WAVES = 2


def test_two_hundred_concurrent_streams_under_faults(tmp_path):
    # Shorter streams than `make soak`, so the whole run stays well under a minute on two cores.
    report = run_soak(streams=STREAMS, waves=WAVES, tokens=10, gap_ms=5, work_dir=tmp_path, keep_logs=True,
                      total_timeout_s=240)
    print("\n" + report.summary())

    sent = STREAMS * WAVES
    assert report.requests_sent == sent, report.failures
    assert sum(report.by_kind.values()) == sent
    assert report.well_formed + report.malformed == sent
    accounted = report.records_in_table + report.records_in_log + report.records_missing + report.records_duplicated
    assert accounted == sent - report.without_request_id

    assert report.peak_concurrent_requests >= 200
    for kind in KINDS:
        assert report.by_kind[kind.name] >= 1, f"no {kind.name} request was sent"
    assert report.upstream_faults >= 1 and report.client_disconnects >= 1
    assert report.dynamodb_faults["http_500"] >= 1 and report.dynamodb_faults["delay"] >= 1
    assert report.records_in_log >= 1, "DynamoDB faults left no record in the fallback log"

    assert report.malformed == 0, report.malformed_examples
    assert report.records_missing == 0, [e for e in report.record_examples if e["shape"] == "missing"]
    assert report.records_duplicated == 0, [e for e in report.record_examples if e["shape"] != "missing"]
    assert report.gateway_alive, "the gateway process died during the run"
    assert report.rss_growth_mb <= report.memory_threshold_mb, report.rss_after_wave_mb
    assert report.ok, report.failures
