"""No key, of any kind, in a log line, record, error body, traceback or metric.

The whole run is scanned at the end (tests/conftest.py: logs, records, every response, EMF output);
this test makes sure the run exercises the paths where a key could slip out, with metrics switched on.
"""

from __future__ import annotations

import json

import httpx

from tests.conftest import CALLER_KEY, EXTRA_SECRETS, GATEWAY_KEY, METRICS_OUTPUT, OPENAI_KEY, find_leaks

WRONG_KEY = "sb-wrong-planted-key-fake-0123456789"
HELLO = [{"role": "user", "content": "hi"}]


def test_keys_stay_out_of_logs_records_bodies_and_metrics(start_gateway, simulator, capsys):
    EXTRA_SECRETS.append(WRONG_KEY)
    host = f"127.0.0.1:{simulator.port}"
    gateway = start_gateway(SWITCHBOARD_METRICS="true", SWITCHBOARD_ALLOWED_PROVIDER_HOSTS=host)
    url = gateway.base_url + "/chat/completions"
    auth = {"authorization": f"Bearer {GATEWAY_KEY}"}
    caller = {"x-inference-provider-url": f"http://{host}", "x-inference-provider-api-key": CALLER_KEY}
    bodies = [
        httpx.post(url, json={"model": "openai/gpt-sim", "messages": HELLO, "stream": True}, headers=auth),
        httpx.post(url, json={"model": "openai/fail-401", "messages": HELLO}, headers=auth),
        httpx.post(url, json={"model": "openai/gpt-sim", "messages": HELLO, "stream": True,
                              "simulator": {"error_after": 2}}, headers=auth),
        httpx.post(url, json={"model": "openai/gpt-sim", "messages": HELLO}, headers={**auth, **caller}),
        httpx.post(url, json={"model": "openai/fail-500", "messages": HELLO}, headers={**auth, **caller}),
        httpx.post(url, json={"model": "openai/gpt-sim", "messages": HELLO},
                   headers={"authorization": f"Bearer {WRONG_KEY}"}),
        httpx.post(url, content=b"{broken", headers={**auth, "content-type": "application/json"}),
    ]
    assert [r.status_code for r in bodies] == [200, 401, 200, 200, 502, 401, 400]
    emf = [line for line in capsys.readouterr().out.splitlines() if '"CloudWatchMetrics"' in line]
    METRICS_OUTPUT.extend(emf)
    assert len(emf) == len(bodies)  # one EMF blob per call, flushed at once
    blob = json.loads(emf[0])
    assert blob["provider"] == "openai" and blob["model"] == "gpt-sim" and blob["TTFT"][0] > 0
    dimensions = blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert ["service"] in dimensions and ["service", "provider", "model"] in dimensions
    planted = (GATEWAY_KEY, OPENAI_KEY, CALLER_KEY, WRONG_KEY)
    texts = emf + [r.text + repr(dict(r.headers)) for r in bodies] + [repr(r.to_dict()) for r in gateway.records]
    assert find_leaks(texts, planted) == []
