"""The embedded AWS emulation `switchboard serve` starts when no AWS is configured.

moto in server mode, holding the call table and both secrets, so `make run` records and reports calls
on a machine with no AWS account through exactly the boto3 code used on AWS. It runs as a child
process, not a thread: moto's work would otherwise hold the gateway's GIL and slow every stream.
Its address is left in `$SWITCHBOARD_HOME/local-stack.json` (default `~/.switchboard/`) for the CLI
to find. Nothing is kept across restarts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from switchboard.config.settings import state_dir

TABLE = "switchboard-local-calls"
PROVIDER_KEYS_SECRET = "switchboard/local/provider-keys"
GATEWAY_KEYS_SECRET = "switchboard/local/gateway-keys"
STATE_FILE = "local-stack.json"


@dataclass(frozen=True)
class LocalStackInfo:
    endpoint: str
    table: str
    provider_keys_secret: str
    gateway_keys_secret: str
    pid: int

    def env(self) -> dict[str, str]:
        return {"SWITCHBOARD_AWS_ENDPOINT_URL": self.endpoint, "SWITCHBOARD_TABLE": self.table,
                "SWITCHBOARD_PROVIDER_KEYS_SECRET": self.provider_keys_secret,
                "SWITCHBOARD_GATEWAY_KEYS_SECRET": self.gateway_keys_secret}


class MotoProcess:
    """moto's server as a child process (switchboard.ops.local_moto), with ThreadedMotoServer's interface."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        if not self.port:
            with socket.socket() as probe:
                probe.bind((self.host, 0))
                self.port = probe.getsockname()[1]
        command = [sys.executable, "-m", "switchboard.ops.local_moto", str(os.getpid()), self.host, str(self.port)]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the AWS emulation (moto) exited at start with code {self.process.returncode}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("the AWS emulation (moto) did not start")

    def get_host_and_port(self) -> tuple[str, int]:
        return self.host, self.port

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class LocalStack:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = MotoProcess(host, port)
        self.info: LocalStackInfo | None = None

    def start(self, write_state: bool = True) -> LocalStackInfo:
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.info = LocalStackInfo(f"http://{host}:{port}", TABLE, PROVIDER_KEYS_SECRET, GATEWAY_KEYS_SECRET,
                                   os.getpid())
        provision(self.info)
        if write_state:
            path = state_dir() / STATE_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(asdict(self.info)))
        return self.info

    def stop(self) -> None:
        self.server.stop()
        path = state_dir() / STATE_FILE
        if self.info and read_state() == self.info:
            path.unlink(missing_ok=True)


def provision(info: LocalStackInfo) -> None:
    """The table and both secrets, as the SAM stack creates them (secrets start with an empty JSON)."""
    import boto3

    from switchboard.ledger.schema import create_table

    options = {"endpoint_url": info.endpoint, "region_name": "us-east-1", "aws_access_key_id": "local",
               "aws_secret_access_key": "local"}
    create_table(boto3.client("dynamodb", **options), info.table)
    secretsmanager = boto3.client("secretsmanager", **options)
    initial_values: dict[str, dict[str, list[object]]] = {info.provider_keys_secret: {},
                                                         info.gateway_keys_secret: {"keys": []}}
    for name, initial in initial_values.items():
        try:
            secretsmanager.create_secret(Name=name, SecretString=json.dumps(initial))
        except secretsmanager.exceptions.ResourceExistsException:
            pass


def read_state(path: Path | None = None) -> LocalStackInfo | None:
    """The running local stack, if its server process is still alive."""
    path = path or state_dir() / STATE_FILE
    try:
        info = LocalStackInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return info
