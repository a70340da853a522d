"""Only an authenticated caller chooses where its call is recorded (task, environment, metadata)."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ADMIN_KEY, GATEWAY_KEY

VICTIM_HEADERS = {"x-inference-task-id": "victim-task", "x-inference-environment": "prod",
                  "x-inference-metadata-conversation-id": "conv-of-someone-else"}
BODY = {"model": "simulator/echo", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("authorization", [None, "Bearer sb-wrong-key-fake", f"Bearer {ADMIN_KEY}"])
@pytest.mark.parametrize("path,body", [("/chat/completions", BODY),
                                       ("/responses", {"model": "simulator/echo", "input": "hi"})])
def test_refused_call_is_recorded_but_not_where_the_caller_asked(gateway, authorization, path, body):
    headers = dict(VICTIM_HEADERS)
    if authorization:
        headers["authorization"] = authorization
    response = httpx.post(gateway.base_url + path, json=body, headers=headers)
    assert response.status_code in (401, 403)
    [record] = gateway.records
    assert record.task_id == "unauthenticated" and record.environment is None and record.metadata == {}
    assert record.conversation_id is None and record.status == response.status_code


def test_authenticated_call_is_recorded_where_the_caller_asked(gateway):
    response = httpx.post(gateway.base_url + "/chat/completions", json=BODY,
                          headers={**VICTIM_HEADERS, "authorization": f"Bearer {GATEWAY_KEY}"})
    assert response.status_code == 200
    [record] = gateway.records
    assert record.task_id == "victim-task" and record.environment == "prod"
    assert record.conversation_id == "conv-of-someone-else"
