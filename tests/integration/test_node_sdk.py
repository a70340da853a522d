"""The official OpenAI Node SDK as a client: `node --test` on tests/node/ against a gateway on a real socket.

Each Node test tags its calls with an `x-inference-metadata-node-test` header, so besides node's verdict
this wrapper checks the gateway's side of every call: one record each, status 200, the tool it called.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import GATEWAY_KEY

NODE_TESTS = Path(__file__).resolve().parents[1] / "node"
NODE_TIMEOUT_S = 120
TAG = "node-test"  # the metadata name the Node tests' x-inference-metadata-node-test header is recorded under


@dataclass(frozen=True)
class ExpectedCall:
    tool_calls: tuple[str, ...] = ()
    completion_tokens: int = 12  # the simulator's default reply; a tool call counts 8


TOOL_CALL = ExpectedCall(tool_calls=("end_call",), completion_tokens=8)

# What each Node test file sends, by the tag on each call. A new *.test.mjs file needs its entry here.
EXPECTED_CALLS: dict[str, dict[str, ExpectedCall]] = {
    "chat.test.mjs": {
        "chat-text": ExpectedCall(),
        "chat-tool-call": TOOL_CALL,
        "chat-usage": ExpectedCall(),
        "chat-stream-helper": ExpectedCall(),
    },
    "responses.test.mjs": {
        "responses-text": ExpectedCall(),
        "responses-function-call": TOOL_CALL,
        "responses-stream-helper": ExpectedCall(),
    },
}


def test_every_node_test_file_is_wired_here():
    """A Node test file missing from EXPECTED_CALLS would never run: fail rather than drop it silently."""
    on_disk = {path.name for path in NODE_TESTS.glob("*.test.mjs")}
    assert on_disk == set(EXPECTED_CALLS)


@pytest.mark.parametrize("test_file", sorted(EXPECTED_CALLS))
def test_node_sdk(start_gateway, test_file):
    node = node_or_skip()
    gateway = start_gateway()
    result = run_node_tests(node, NODE_TESTS / test_file, gateway.base_url)
    assert result.returncode == 0, f"node --test {test_file} failed (exit {result.returncode}):\n{node_output(result)}"
    assert_recorded(gateway.records, EXPECTED_CALLS[test_file], node_output(result))


def node_or_skip() -> str:
    """The node binary, or a loud skip naming the command that makes these tests runnable."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node SDK tests NOT RUN: no `node` on PATH; install Node.js 20+, then `npm ci --prefix tests/node`")
    if not (NODE_TESTS / "node_modules" / "openai" / "package.json").is_file():
        pytest.skip("Node SDK tests NOT RUN: the openai package is not installed; run `npm ci --prefix tests/node`")
    return node


def run_node_tests(node: str, test_file: Path, base_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SWITCHBOARD_BASE_URL": base_url, "SWITCHBOARD_KEY": GATEWAY_KEY, "NO_COLOR": "1"}
    try:
        return subprocess.run([node, "--test", str(test_file)], cwd=NODE_TESTS, env=env, capture_output=True,
                              text=True, timeout=NODE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as expired:
        output = _text(expired.stdout) + _text(expired.stderr)
        pytest.fail(f"node --test {test_file.name} still running after {NODE_TIMEOUT_S} s:\n{output}")


def node_output(result: subprocess.CompletedProcess[str]) -> str:
    return f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


def assert_recorded(records: list, expected: dict[str, ExpectedCall], output: str) -> None:
    """Exactly one record per tagged call, each a streamed 200 with the expected tool calls and token count."""
    tags = [record.metadata.get(TAG) for record in records]
    assert sorted(tags, key=str) == sorted(expected), f"one record per call expected, got tags {tags}\n{output}"
    for record in records:
        call = expected[record.metadata[TAG]]
        summary = f"{record.metadata[TAG]}: {record.to_dict()}"
        assert record.status == 200 and record.error is None, summary
        assert record.stream, summary
        assert record.requested_model == "simulator/echo", summary
        assert record.tool_calls == list(call.tool_calls), summary
        assert record.completion_tokens == call.completion_tokens, summary


def _text(stream: str | bytes | None) -> str:
    return stream.decode("utf-8", "replace") if isinstance(stream, bytes) else (stream or "")
