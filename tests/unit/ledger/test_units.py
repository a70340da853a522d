"""Cost math, percentiles from the histogram, and the secret cache's timing rules."""

from __future__ import annotations

import json
import threading
import time

import pytest

from switchboard.keys.secrets import CachedSecret
from switchboard.ledger import schema
from switchboard.ledger.pricing import BUILTIN, PriceCatalog
from switchboard.ledger.usage import percentile, report


def test_cost_counts_cached_tokens_at_their_own_rate():
    prices = PriceCatalog.load()
    # openai/gpt-4.1-mini: 0.40 in, 0.10 cached in, 1.60 out per million tokens
    assert prices.cost("openai", "gpt-4.1-mini", 1_000_000, 0, 0) == pytest.approx(0.40)
    assert prices.cost("openai", "gpt-4.1-mini", 1_000_000, 0, 1_000_000) == pytest.approx(0.10)
    assert prices.cost("openai", "gpt-4.1-mini", 1000, 500, 200) == pytest.approx(
        (800 * 0.40 + 200 * 0.10 + 500 * 1.60) / 1e6)


def test_cached_tokens_never_exceed_prompt_and_missing_cached_price_uses_input():
    prices = PriceCatalog({"x/y": __import__("switchboard.ledger.pricing", fromlist=["Price"]).Price(2.0, 4.0)})
    assert prices.cost("x", "y", 100, 10, 500) == pytest.approx((100 * 2.0 + 10 * 4.0) / 1e6)


def test_unknown_model_costs_none_not_zero():
    prices = PriceCatalog.load()
    assert prices.cost("openai", "gpt-does-not-exist", 100, 100) is None
    assert prices.cost("openai", "gpt-4.1-mini", None, None) is None  # no usage reported
    assert prices.cost("simulator", "echo", 100, 100) == 0.0


def test_override_file_extends_and_overrides(tmp_path):
    override = tmp_path / "prices.json"
    override.write_text(json.dumps({"as_of": "2030-01-01", "models": {
        "openai/gpt-4.1-mini": {"input": 1.0, "output": 2.0},
        "groq/my-finetune": {"input": 0.5, "output": 0.5, "cached_input": 0.1}}}))
    prices = PriceCatalog.load(str(override))
    assert prices.as_of == "2030-01-01"
    assert prices.cost("openai", "gpt-4.1-mini", 1_000_000, 1_000_000) == pytest.approx(3.0)
    assert prices.cost("groq", "my-finetune", 1_000_000, 0, 1_000_000) == pytest.approx(0.1)


def test_builtin_catalog_is_dated_and_covers_every_hosted_provider():
    data = json.loads(BUILTIN.read_text())
    assert data["as_of"] and data["currency"] == "USD"
    providers = {name.split("/", 1)[0] for name in data["models"]}
    assert providers >= {"openai", "anthropic", "groq", "together", "fireworks", "cerebras", "deepinfra",
                         "openrouter", "mistral", "xai", "gemini", "sambanova"}


def test_percentiles_from_histogram():
    histogram = [0] * (len(schema.TTFT_BUCKETS_MS) + 1)
    assert percentile(histogram, 0.5) is None
    histogram[schema.bucket_index(120)] = 90  # 100-150 ms bucket
    histogram[schema.bucket_index(900)] = 10  # 800-1000 ms bucket
    assert 100 <= percentile(histogram, 0.5) <= 150
    assert 800 <= percentile(histogram, 0.95) <= 1000
    histogram[-1] = 1000  # the open top bucket reports its lower bound
    assert percentile(histogram, 0.99) == schema.TTFT_BUCKETS_MS[-1]


def test_report_totals_and_unpriced_flag():
    rows = [{"provider": "openai", "model": "a", "calls": 2, "errors": 1, "prompt_tokens": 10, "completion_tokens": 5,
             "cost_usd": 0.5, "ttft_sum_ms": 200, "ttft_count": 2, "h1": 2},
            {"provider": "openai", "model": "b", "calls": 1, "unpriced_calls": 1}]
    result = report(rows)
    assert result["totals"]["calls"] == 3 and result["totals"]["errors"] == 1
    assert result["totals"]["cost_usd"] == 0.5 and result["totals"]["cost_complete"] is False
    by_model = {r["model"]: r for r in result["models"]}
    assert by_model["a"]["ttft_avg_ms"] == 100 and by_model["b"]["cost_usd"] is None


def test_cached_secret_serves_memory_then_refreshes_ahead_and_serves_stale_while_refreshing():
    fetches = []
    release = threading.Event()

    def fetch():
        fetches.append(time.monotonic())
        if len(fetches) == 2:
            release.wait(4)
        return {"n": len(fetches)}

    secret = CachedSecret(fetch, max_age_s=0.5)
    assert secret.refresh() == {"n": 1}
    assert secret.get() == {"n": 1} and len(fetches) == 1  # warm: no fetch
    time.sleep(0.42)  # past 80% of the age: served from memory while a refresh runs behind
    started = time.monotonic()
    assert secret.get() == {"n": 1}
    assert time.monotonic() - started < 1.0  # not the refresh's 4 s
    release.set()
    deadline = time.monotonic() + 2
    while secret.get() != {"n": 2} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert secret.get() == {"n": 2}
    time.sleep(0.55)  # past the age: still served at once (stale-while-revalidate), refreshed behind the read
    assert not secret.fresh_enough()
    assert secret.get() == {"n": 2}
    deadline = time.monotonic() + 2
    while secret.get() != {"n": 3} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert secret.get() == {"n": 3}


def test_secret_scan_finds_a_planted_key():
    from tests.conftest import GATEWAY_KEY, find_leaks

    assert find_leaks(["harmless", f"header was Bearer {GATEWAY_KEY}"], (GATEWAY_KEY,)) == [
        (GATEWAY_KEY[:12], f"header was Bearer {GATEWAY_KEY}")]
    assert find_leaks(["harmless"], (GATEWAY_KEY,)) == []
