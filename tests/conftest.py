"""Shared fixtures: a simulated upstream and gateways on real loopback sockets."""

from __future__ import annotations

import dataclasses
import logging
import traceback
from collections.abc import Iterator

import pytest

from switchboard.config.settings import Settings
from switchboard.core.runtime import build_gateway
from switchboard.http.app import create_app
from switchboard.http.serving import BackgroundServer
from switchboard.ledger.record import CallRecord
from switchboard.simulator import Script, SimulatorApp

GATEWAY_KEY = "sb-test-gateway-key-fake"
ADMIN_KEY = "sb-test-admin-key-fake"
OPENAI_KEY = "sk-test-openai-key-fake"
ANTHROPIC_KEY = "sk-ant-test-anthropic-key-fake"


class LogCapture(logging.Handler):
    """Every log record of the run, formatted with all its extra fields, for the secrets scan."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "_captured", False):  # seen by both the service logger and the root logger
            return
        record._captured = True
        fields = {k: v for k, v in record.__dict__.items() if k not in ("args", "exc_info")}
        text = record.getMessage() + " " + repr(fields)
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        self.lines.append(text)

    def records_with(self, message: str) -> list[logging.LogRecord]:
        return [line for line in self.lines if message in line]


class CaptureResponses:
    """ASGI wrapper keeping every response's headers and body, for the end-of-run secrets scan."""

    def __init__(self, app) -> None:
        self.app = app

    @property
    def state(self):
        return self.app.state

    async def __call__(self, scope, receive, send):
        async def capture(message):
            if message["type"] == "http.response.start":
                RESPONSES.append(repr(message.get("headers")))
            elif message["type"] == "http.response.body" and message.get("body"):
                RESPONSES.append(bytes(message["body"]).decode("utf-8", "replace"))
            await send(message)

        await self.app(scope, receive, capture)


LOGS = LogCapture()
RESPONSES: list[str] = []  # every byte every test gateway sent back
ALL_RECORDS: list[CallRecord] = []  # every call record any gateway in the run produced
LOGGED_RECORDS: list[CallRecord] = []  # those of gateways without a table, whose records go to the log
CALLER_KEY = "sk-caller-own-key-fake-123"  # sent in x-inference-provider-api-key by some tests
PLANTED_SECRETS = (GATEWAY_KEY, ADMIN_KEY, OPENAI_KEY, ANTHROPIC_KEY, CALLER_KEY)


@pytest.fixture(scope="session", autouse=True)
def scan_run_for_secrets():
    """After the whole run: no planted key in any log line or call record (a failure here fails the run)."""
    from switchboard.observability import logger

    targets = [logging.getLogger(), logging.getLogger(logger.name)]
    for target in targets:
        target.addHandler(LOGS)
    yield
    for target in targets:
        target.removeHandler(LOGS)
    if LOGGED_RECORDS:  # a gateway without a table ran: each of its calls logs its record
        assert LOGS.lines, "the scan saw no log lines: the capture is broken"
    assert not ALL_RECORDS or RESPONSES, "the scan saw no responses: the capture is broken"
    texts = LOGS.lines + [repr(r.to_dict()) for r in ALL_RECORDS] + RESPONSES + METRICS_OUTPUT
    leaks = find_leaks(texts, PLANTED_SECRETS + tuple(EXTRA_SECRETS))
    assert not leaks, f"keys leaked into logs or records: {leaks[:5]}"


def find_leaks(texts: list[str], planted: tuple[str, ...]) -> list[tuple[str, str]]:
    """(key prefix, where) for every planted key found in any text."""
    return [(key[:12], text[:200]) for text in texts for key in planted if key in text]


EXTRA_SECRETS: list[str] = []  # tests that create keys at run time add them here
METRICS_OUTPUT: list[str] = []  # EMF lines tests captured


@pytest.fixture(scope="session")
def local_aws():
    """One embedded AWS emulation (moto server) for the run; tests keep apart by table or task names."""
    from switchboard.ops.local_stack import LocalStack

    stack = LocalStack()
    info = stack.start(write_state=False)
    yield info
    stack.server.stop()


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
    app.client_ports.clear()
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
        observers = [records.append, ALL_RECORDS.append] + ([] if settings.table_name else [LOGGED_RECORDS.append])
        app = create_app(settings, build_gateway(settings, observers=observers))
        server = BackgroundServer(CaptureResponses(app)).start()
        started.append(server)
        return RunningGateway(server, records)

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def gateway(start_gateway) -> RunningGateway:
    return start_gateway()


@pytest.fixture
def ledger_env(local_aws) -> dict[str, str]:
    """Settings for a gateway that records into the embedded table and reads the embedded secrets."""
    return {**local_aws.env(), "SWITCHBOARD_SECRETS_MAX_AGE": "1"}
