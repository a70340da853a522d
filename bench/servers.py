"""The servers under test, each in a process of its own on a free loopback port, and their shutdown.

Every process starts in a new session, so Ctrl-C in the terminal reaches only the harness, which then
stops exactly the process groups it started (`Fleet.stop_all`, also run at exit).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.converse import AwsCredentials

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(os.environ.get("BENCH_VENV_BIN") or ROOT / ".venv" / "bin")
HOST = "127.0.0.1"

GATEWAY_KEY = "sb-bench-key-fake"
OPENAI_KEY = "sk-bench-fake"
LITELLM_MASTER_KEY = "sk-bench-master-fake"
LITELLM_VERSION = "1.106.2"
LITELLM_MODEL = "bench-echo"
# Bedrock calls are SigV4-signed with these by the gateway (botocore's chain reads them from the environment)
# and checked against them by the simulator, which accepts the AWS_* keys in its own environment.
BENCH_AWS = AwsCredentials("FAKE-BENCH-ACCESS-KEY", "bench-aws-secret-access-key-fake", "us-east-1")

UVICORN_FLAGS = ("--host", HOST, "--no-access-log", "--log-level", "warning", "--timeout-graceful-shutdown", "2")


class HarnessError(RuntimeError):
    """The harness could not do its job (a server would not start, an install failed)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def health_ok(port: int, path: str = "/health", timeout: float = 1.0) -> bool:
    """One raw HTTP/1.1 GET; True on a 200. Light enough to poll every 2 ms while a process starts."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
            return sock.recv(64).startswith((b"HTTP/1.1 200", b"HTTP/1.0 200"))
    except OSError:
        return False


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    port: int
    log_path: Path
    started_at: float  # perf_counter just before the process was spawned

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, path: str = "/health", timeout: float = 30.0, poll_s: float = 0.002) -> float:
        """Seconds from spawn to the first 200 on `path`; HarnessError if it dies or takes too long."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if health_ok(self.port, path):
                return time.perf_counter() - self.started_at
            if self.process.poll() is not None:
                raise HarnessError(f"{self.name} exited with {self.process.returncode}; {self.log_tail()}")
            time.sleep(poll_s)
        raise HarnessError(f"{self.name} not ready on {self.url}{path} within {timeout:.0f} s; {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return f"last of {self.log_path}:\n{text[-chars:]}"

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the process group this harness started, SIGKILL if it lingers."""
        if self.process.poll() is not None:
            return
        _signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # the group id is the pid: start_new_session made it the leader
    except ProcessLookupError:
        pass


@dataclass
class Fleet:
    """Starts servers and remembers them, so every exit path stops them all."""

    log_dir: Path
    servers: list[Server] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop_all)

    def spawn(self, name: str, argv: list[str], env: dict[str, str], port: int, cwd: Path = ROOT) -> Server:
        log_path = self.log_dir / f"{name}-{port}.log"
        log = log_path.open("wb")
        started_at = time.perf_counter()
        try:
            process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise HarnessError(f"cannot start {name} ({argv[0]}): {exc}") from None
        finally:
            log.close()  # the child holds its own copy
        server = Server(name, process, port, log_path, started_at)
        self.servers.append(server)
        return server

    def stop(self, server: Server) -> None:
        server.stop()
        if server in self.servers:
            self.servers.remove(server)

    def stop_all(self) -> None:
        while self.servers:
            self.servers.pop().stop()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()


def base_env(home: Path) -> dict[str, str]:
    """A clean environment: the caller's PATH and locale, no provider keys or AWS settings leaking in."""
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", AWS_DEFAULT_REGION="us-east-1", NO_PROXY="127.0.0.1,localhost")
    return env


def aws_env(aws: AwsCredentials) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": aws.access_key_id, "AWS_SECRET_ACCESS_KEY": aws.secret_access_key,
            "AWS_REGION": aws.region}


def gateway_env(home: Path, simulator_url: str) -> dict[str, str]:
    return {**base_env(home), "SIMULATOR_BASE_URL": simulator_url + "/v1", "OPENAI_BASE_URL": simulator_url + "/v1",
            "OPENAI_API_KEY": OPENAI_KEY, "SWITCHBOARD_API_KEYS": GATEWAY_KEY, "SWITCHBOARD_HOME": str(home)}


def lambda_env(home: Path, simulator_url: str) -> dict[str, str]:
    """The Lambda-shaped gateway's environment: as `gateway_env`, plus what Lambda always sets (the role's
    credentials, AWS_REGION, here fake) and the SDKs' own endpoint override pointing Bedrock at the simulator."""
    return {**gateway_env(home, simulator_url), **aws_env(BENCH_AWS), "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": simulator_url}


def start_simulator(fleet: Fleet, tokens: int, home: Path, gap_ms: float = 0.0) -> Server:
    """The simulated upstream: the first content token at once, then the others `gap_ms` apart (0: all in one
    burst). Its Bedrock routes accept signatures by the AWS keys in its environment."""
    port = free_port()
    argv = [str(VENV_BIN / "switchboard"), "simulator", "--host", HOST, "--port", str(port),
            "--first-token-ms", "0", "--tokens", str(tokens), "--gap-ms", f"{gap_ms:g}"]
    server = fleet.spawn("simulator", argv, {**base_env(home), **aws_env(BENCH_AWS)}, port)
    server.wait_ready("/health", timeout=30)
    return server


def start_gateway(fleet: Fleet, simulator_url: str, home: Path) -> Server:
    """`switchboard serve` as `make run` runs it: the embedded AWS emulation records every call."""
    port = free_port()
    argv = [str(VENV_BIN / "switchboard"), "serve", "--host", HOST, "--port", str(port), "--no-simulator"]
    server = fleet.spawn("gateway", argv, gateway_env(home, simulator_url), port)
    server.wait_ready("/health", timeout=60)
    return server


def start_floor(fleet: Fleet, simulator: Server, home: Path) -> Server:
    """The do-nothing relay in front of the simulator (bench/floor.py), a process of its own."""
    port = free_port()
    argv = [str(VENV_BIN / "python"), "-m", "bench.floor", "--port", str(port), "--upstream-port",
            str(simulator.port)]
    server = fleet.spawn("floor", argv, base_env(home), port)
    server.wait_ready("/health", timeout=30)
    return server


@dataclass(frozen=True)
class Tree:
    """A checkout whose gateway the bench runs: this one, or another (BENCH_COMPARE_TREE) with its own
    `.venv/bin` and its `handler/` first on PYTHONPATH, started from its own root."""

    root: Path
    venv_bin: Path
    own_pythonpath: bool = False

    def env(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, "PYTHONPATH": str(self.root / "handler")} if self.own_pythonpath else env

    def revision(self) -> str:
        """`git describe`-ish: the short commit, `+dirty` when the work tree has changes."""
        def git(*args: str) -> str:
            try:
                done = subprocess.run(["git", "-C", str(self.root), *args], capture_output=True, text=True,
                                      timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                return ""
            return done.stdout.strip() if done.returncode == 0 else ""

        commit = git("rev-parse", "--short", "HEAD") or "unknown"
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


MAIN_TREE = Tree(ROOT, VENV_BIN)


def compare_tree(path: str) -> Tree:
    """The other checkout named by BENCH_COMPARE_TREE; HarnessError when it cannot run a gateway."""
    root = Path(path).expanduser().resolve()
    tree = Tree(root, root / ".venv" / "bin", own_pythonpath=True)
    for needed in (tree.venv_bin / "python", root / "handler" / "switchboard" / "asgi.py"):
        if not needed.exists():
            raise HarnessError(f"BENCH_COMPARE_TREE={path}: no {needed} (a checkout with its own .venv is needed)")
    return tree


def spawn_uvicorn(fleet: Fleet, name: str, app: str, env: dict[str, str], tree: Tree = MAIN_TREE) -> Server:
    """`python -m uvicorn <app>`: how the bare FastAPI proxy is served (and an older tree's gateway was)."""
    port = free_port()
    argv = [str(tree.venv_bin / "python"), "-m", "uvicorn", app, "--port", str(port), *UVICORN_FLAGS]
    return fleet.spawn(name, argv, tree.env(env), port, cwd=tree.root)


def spawn_deployed(fleet: Fleet, name: str, env: dict[str, str], tree: Tree = MAIN_TREE) -> Server:
    """The gateway exactly as that tree's handler/run.sh starts it under the Lambda Web Adapter."""
    run_sh = (tree.root / "handler" / "run.sh").read_text()
    if "switchboard.http.serving" not in run_sh:  # a tree from before run.sh ran the gateway's own entry
        return spawn_uvicorn(fleet, name, "switchboard.asgi:app", env, tree)
    port = free_port()
    argv = [str(tree.venv_bin / "python"), "-m", "switchboard.http.serving", "--host", HOST, "--port", str(port)]
    return fleet.spawn(name, argv, tree.env(env), port, cwd=tree.root)


# LiteLLM's proxy, installed into a throwaway virtual environment under /tmp.

def litellm_venv() -> Path:
    return Path(os.environ.get("BENCH_LITELLM_VENV") or f"/tmp/switchboard-bench-litellm-{LITELLM_VERSION}")


def install_litellm(venv: Path, log: Path) -> tuple[Path, float]:
    """(the `litellm` command, seconds spent installing; 0 when a previous run's install is reused)."""
    marker = venv / ".bench-installed"
    command = venv / "bin" / "litellm"
    if marker.exists() and command.exists() and not os.environ.get("BENCH_LITELLM_FRESH"):
        return command, 0.0
    started = time.monotonic()
    steps = [[sys.executable, "-m", "venv", "--clear", str(venv)],
             [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              f"litellm[proxy]=={LITELLM_VERSION}"]]
    with log.open("wb") as out:
        for step in steps:
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=900).returncode != 0:
                raise HarnessError(f"installing LiteLLM failed ({' '.join(step[:4])} ...); see {log}")
    marker.touch()
    return command, time.monotonic() - started


def litellm_config(path: Path, simulator_url: str) -> Path:
    path.write_text(
        "model_list:\n"
        f"  - model_name: {LITELLM_MODEL}\n"
        "    litellm_params:\n"
        "      model: openai/echo\n"
        f"      api_base: {simulator_url}/v1\n"
        f"      api_key: {OPENAI_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    return path


def start_litellm(fleet: Fleet, command: Path, simulator_url: str, home: Path) -> Server:
    port = free_port()
    config = litellm_config(home / "litellm-config.yaml", simulator_url)
    env = {**base_env(home), "LITELLM_MASTER_KEY": LITELLM_MASTER_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "LITELLM_TELEMETRY": "False", "LITELLM_LOG": "ERROR"}
    argv = [str(command), "--config", str(config), "--host", HOST, "--port", str(port)]
    server = fleet.spawn("litellm", argv, env, port)
    server.wait_ready("/health/liveliness", timeout=180, poll_s=0.05)
    return server
