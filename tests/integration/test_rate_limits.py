"""Per-key limits on requests per minute and concurrent streams, in one process and across instances."""

from __future__ import annotations

import threading
import time
import uuid

import httpx

from switchboard import aws
from switchboard.config.settings import Settings
from switchboard.ops.secrets_admin import SecretsAdmin
from tests.conftest import EXTRA_SECRETS, GATEWAY_KEY

HELLO = [{"role": "user", "content": "hi"}]


def post(gateway, key=GATEWAY_KEY, stream=True, **simulator) -> httpx.Response:
    body = {"model": "openai/gpt-sim", "messages": HELLO, "stream": stream, "simulator": simulator}
    return httpx.post(gateway.base_url + "/chat/completions", json=body, timeout=20,
                      headers={"authorization": f"Bearer {key}"})


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(response.headers["retry-after"]) <= 60


def test_requests_per_minute_in_one_process(start_gateway):
    gateway = start_gateway(SWITCHBOARD_RATE_LIMIT_RPM="3")
    assert [post(gateway).status_code for _ in range(3)] == [200, 200, 200]
    assert_limited(post(gateway))
    assert gateway.records[-1].status == 429


def test_concurrent_streams_in_one_process(start_gateway):
    gateway = start_gateway(SWITCHBOARD_RATE_LIMIT_CONCURRENT="2")
    slow = [threading.Thread(target=post, args=(gateway,), kwargs={"tokens": 8, "gap_ms": 100}) for _ in range(2)]
    for thread in slow:
        thread.start()
    time.sleep(0.3)
    assert_limited(post(gateway))
    for thread in slow:
        thread.join()
    assert post(gateway).status_code == 200  # the slots came back when the streams ended


def limited_key(ledger_env: dict, **limits: int) -> str:
    settings = Settings.from_env(ledger_env)
    admin = SecretsAdmin(aws.client("secretsmanager", settings), settings.provider_keys_secret,
                         settings.gateway_keys_secret)
    key = admin.create_key("limited-" + uuid.uuid4().hex[:8], **limits)
    EXTRA_SECRETS.append(key)
    return key


def test_requests_per_minute_across_instances(start_gateway, ledger_env):
    key = limited_key(ledger_env, rpm=4)
    first, second = start_gateway(**ledger_env), start_gateway(**ledger_env)  # two instances, one table
    if time.time() % 60 > 55:
        time.sleep(6)  # stay inside one minute window
    statuses = [post(instance, key).status_code for instance in (first, second, first, second)]
    assert statuses == [200, 200, 200, 200]
    # Each instance has seen only two requests; the shared counter has seen four.
    assert_limited(post(first, key))
    assert_limited(post(second, key, stream=False))


def test_concurrent_streams_across_instances(start_gateway, ledger_env):
    key = limited_key(ledger_env, concurrent=1)
    first, second = start_gateway(**ledger_env), start_gateway(**ledger_env)
    holder = threading.Thread(target=post, args=(first, key), kwargs={"tokens": 10, "gap_ms": 100})
    holder.start()
    time.sleep(0.3)
    assert_limited(post(second, key))  # only the shared counter knows about the stream on the first instance
    holder.join()
    assert post(second, key).status_code == 200


def test_leaked_slot_is_reset_when_the_counter_goes_quiet(local_aws):
    from switchboard.limits.ratelimit import STALE_AFTER_S, Limits, RateLimiter

    settings = Settings.from_env(local_aws.env())
    db = aws.client("dynamodb", settings)
    limiter = RateLimiter(lambda: db, settings.table_name)
    name = "leaky-" + uuid.uuid4().hex[:8]
    stale = int(time.time()) - STALE_AFTER_S - 5
    db.put_item(TableName=settings.table_name, Item={"pk": {"S": f"LIMIT#{name}"}, "sk": {"S": "ACTIVE"},
                                                     "active": {"N": "1"}, "updated_at": {"N": str(stale)}})
    limiter.held["req-1"] = (name, False)  # a call in flight
    limiter._check_shared("req-1", name, Limits(concurrent=1), int(time.time() // 60))  # no 429: reset
    item = db.get_item(TableName=settings.table_name, Key={"pk": {"S": f"LIMIT#{name}"}, "sk": {"S": "ACTIVE"}})
    assert item["Item"]["active"]["N"] == "1" and int(item["Item"]["updated_at"]["N"]) > stale
