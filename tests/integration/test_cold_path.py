"""What a call costs at start-up and on its path: the framework and the warm-up stay off it.

The call routes answer without FastAPI, so a gateway that has served /health and model calls has not imported
FastAPI, pydantic or Starlette at all; the admin app is built on its first request. The background warm-up
waits for the first call's first byte, so it never competes with the first token.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import GATEWAY_KEY

SCRIPT = textwrap.dedent('''
    import json, os, sys, threading
    import httpx
    from switchboard.http.serving import BackgroundServer
    import switchboard.asgi as asgi

    HEAVY = ("fastapi", "pydantic", "pydantic.v1", "starlette")  # (anyio: httpx, the client here, loads it)
    seen = {"after_import": sorted(m for m in HEAVY if m in sys.modules)}
    with BackgroundServer(asgi.app) as server:
        seen["warm_before_call"] = any(t.name == "warm-up" for t in threading.enumerate())
        health = httpx.get(server.url + "/health", timeout=20).status_code
        body = {"model": "simulator/echo", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        chat = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=20,
                          headers={"authorization": "Bearer " + os.environ["SWITCHBOARD_API_KEYS"]})
        plain = httpx.post(server.url + "/v1/responses", json={"model": "simulator/echo", "input": "hi"}, timeout=20,
                           headers={"authorization": "Bearer " + os.environ["SWITCHBOARD_API_KEYS"]})
        seen["after_calls"] = sorted(m for m in HEAVY if m in sys.modules)
        seen["statuses"] = [health, chat.status_code, plain.status_code]
        seen["streamed"] = chat.text.rstrip().endswith("data: [DONE]")
        admin = httpx.get(server.url + "/v1/usage", timeout=20)
        seen["admin_status"] = admin.status_code
        seen["after_admin"] = sorted(m for m in HEAVY if m in sys.modules)
    print(json.dumps(seen))
''')


def test_model_calls_never_import_the_framework_and_the_admin_app_loads_on_first_use(simulator, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SWITCHBOARD_API_KEYS": GATEWAY_KEY,
           "SIMULATOR_BASE_URL": simulator.url + "/v1", "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    assert seen["statuses"] == [200, 200, 200] and seen["streamed"]
    assert seen["after_import"] == [] and seen["after_calls"] == [], seen
    assert not seen["warm_before_call"], "the warm-up started before any call, competing with the first token"
    assert seen["admin_status"] == 401  # the admin app answered, built on demand
    assert "fastapi" in seen["after_admin"] and "pydantic.v1" not in seen["after_admin"]
