"""x-inference-provider-url safety beyond the allowlist: DNS answers and redirects."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import GATEWAY_KEY

HELLO = [{"role": "user", "content": "hi"}]


def post(gateway, headers, model="groq/llama-sim") -> httpx.Response:
    return httpx.post(gateway.base_url + "/chat/completions", json={"model": model, "messages": HELLO},
                      headers={"authorization": f"Bearer {GATEWAY_KEY}", **headers}, timeout=20)


@pytest.mark.parametrize("answer", [["169.254.169.254"], ["10.1.2.3"], ["127.0.0.1"], ["fd00::1"],
                                    ["93.184.216.34", "192.168.0.10"]])
def test_allowlisted_name_resolving_to_an_internal_address_is_refused(start_gateway, answer):
    gateway = start_gateway(SWITCHBOARD_ALLOWED_PROVIDER_HOSTS="*.models.example")
    asked = []

    async def fake_dns(host: str) -> list[str]:
        asked.append(host)
        return answer

    gateway.server.app.state.gateway.resolve_addresses = fake_dns
    response = post(gateway, {"x-inference-provider-url": "llm.models.example"})
    assert asked == ["llm.models.example"]
    assert response.status_code == 400 and response.json()["error"]["code"] == "provider_url_refused"
    assert "internal address" in response.json()["error"]["message"]


def test_unresolvable_name_is_a_502(start_gateway):
    gateway = start_gateway(SWITCHBOARD_ALLOWED_PROVIDER_HOSTS="*.models.example")

    async def no_dns(host: str) -> list[str]:
        raise OSError("no such host")

    gateway.server.app.state.gateway.resolve_addresses = no_dns
    response = post(gateway, {"x-inference-provider-url": "llm.models.example"})
    assert response.status_code == 502


def test_exactly_allowlisted_host_is_trusted_and_redirects_are_not_followed(start_gateway, simulator, sim_app):
    host = f"127.0.0.1:{simulator.port}"
    gateway = start_gateway(SWITCHBOARD_ALLOWED_PROVIDER_HOSTS=host)
    response = post(gateway, {"x-inference-provider-url": f"http://{host}"}, model="openai/fail-307")
    assert response.status_code == 502 and "307" in response.json()["error"]["message"]
    assert len(sim_app.requests) == 1  # the redirect to the metadata address was not followed


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://api.openai.com", "ftp://api.openai.com",
                                 "https://user:pass@api.openai.com", "https://api.openai.com#frag"])
def test_odd_schemes_and_userinfo_are_refused(gateway, url):
    response = post(gateway, {"x-inference-provider-url": url})
    assert response.status_code == 400
