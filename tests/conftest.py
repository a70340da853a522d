"""Shared fixtures: a simulated upstream and gateways on real loopback sockets."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from switchboard.app import create_app
from switchboard.ledger.record import CallRecord
from switchboard.runtime import build_gateway
from switchboard.serving import BackgroundServer
from switchboard.settings import Settings
from switchboard.simulator import Script, SimulatorApp

GATEWAY_KEY = "sb-test-gateway-key-fake"
ADMIN_KEY = "sb-test-admin-key-fake"
OPENAI_KEY = "sk-test-openai-key-fake"
ANTHROPIC_KEY = "sk-ant-test-anthropic-key-fake"


@pytest.fixture(scope="session")
def simulator() -> Iterator[BackgroundServer]:
    server = BackgroundServer(SimulatorApp(Script())).start()
    yield server
    server.stop()


@pytest.fixture
def sim_app(simulator: BackgroundServer) -> SimulatorApp:
    """The simulator's app with its request log cleared for this test."""
    app: SimulatorApp = simulator.app
    app.requests.clear()
    app.request_headers.clear()
    return app


@dataclasses.dataclass
class RunningGateway:
    server: BackgroundServer
    records: list[CallRecord]

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def base_url(self) -> str:
        return self.server.url + "/v1"

    def client(self, key: str = GATEWAY_KEY, **kwargs):
        import openai

        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 20)
        return openai.OpenAI(base_url=self.base_url, api_key=key, **kwargs)


def gateway_env(simulator: BackgroundServer, **overrides: str) -> dict[str, str]:
    env = {
        "SWITCHBOARD_API_KEYS": GATEWAY_KEY,
        "SWITCHBOARD_ADMIN_KEYS": ADMIN_KEY,
        "SIMULATOR_BASE_URL": simulator.url + "/v1",
        "OPENAI_BASE_URL": simulator.url + "/v1",
        "OPENAI_API_KEY": OPENAI_KEY,
        "ANTHROPIC_BASE_URL": simulator.url,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
    }
    env.update(overrides)
    return env


@pytest.fixture
def start_gateway(simulator: BackgroundServer, sim_app: SimulatorApp):
    """Factory: a gateway on a free loopback port, built from `gateway_env` plus overrides."""
    started: list[BackgroundServer] = []

    def start(**overrides: str) -> RunningGateway:
        records: list[CallRecord] = []
        settings = Settings.from_env(gateway_env(simulator, **overrides))
        app = create_app(settings, build_gateway(settings, observers=[records.append]))
        server = BackgroundServer(app).start()
        started.append(server)
        return RunningGateway(server, records)

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def gateway(start_gateway) -> RunningGateway:
    return start_gateway()
