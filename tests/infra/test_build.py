"""`sam build` on this machine, the built artifacts served as the web adapter serves them, and their size."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from switchboard.http.serving import bind

ROOT = Path(__file__).resolve().parents[2]
SIZE_BUDGET_BYTES = 30_000_000
HOST_ARCH = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
GATEWAY_KEY = "sb-smoke-test-key-fake"


def sam_binary() -> str:
    candidates = [os.environ.get("SWITCHBOARD_SAM"), str(ROOT / ".venv-sam" / "bin" / "sam"), shutil.which("sam")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    pytest.skip("aws-sam-cli not installed: run through `make test`, which installs it in .venv-sam")


def python312() -> str:
    for candidate in (shutil.which("python3.12"), _pyenv_312()):
        if candidate and subprocess.run([candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"],
                                        capture_output=True).returncode == 0:
            return candidate
    pytest.skip("no Python 3.12 on this machine to run the python3.12 build")


def _pyenv_312() -> str | None:
    found = subprocess.run(["pyenv", "prefix", "3.12"], capture_output=True, text=True) if shutil.which("pyenv") \
        else None
    return f"{found.stdout.strip()}/bin/python3.12" if found and found.returncode == 0 else None


def sam_build(build_dir: Path, arch: str) -> Path:
    env = {**os.environ, "SWITCHBOARD_BUILD_ARCH": arch, "SAM_CLI_TELEMETRY": "0",
           "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    result = subprocess.run([sam_binary(), "build", "--template", str(ROOT / "template.yaml"), "--build-dir",
                             str(build_dir), "--parameter-overrides", f"Architecture={arch}"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Build Succeeded" in result.stdout
    return build_dir


@pytest.fixture(scope="module")
def host_build(tmp_path_factory) -> Path:
    return sam_build(tmp_path_factory.mktemp("sam-host") / "build", HOST_ARCH)


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


@pytest.mark.parametrize("arch", ["arm64", "x86_64"])
def test_built_package_fits_the_size_budget(arch, tmp_path, host_build):
    build = host_build if arch == HOST_ARCH else sam_build(tmp_path / "build", arch)
    function, layer = build / "GatewayFunction", build / "DependenciesLayer" / "python"
    total = size_of(function) + size_of(layer)
    print(f"\n{arch}: function {size_of(function) / 1e6:.2f} MB + layer {size_of(layer) / 1e6:.2f} MB "
          f"= {total / 1e6:.2f} MB unzipped (budget {SIZE_BUDGET_BYTES / 1e6:.0f} MB)")
    assert total <= SIZE_BUDGET_BYTES
    # The operator's page ships in the function: the page and its vendored chart library.
    assert (function / "switchboard/dashboard/index.html").exists()
    assert (function / "switchboard/dashboard/vendor/chart.umd.min.js").exists()
    assert (function / "run.sh").exists() and (function / "switchboard" / "http" / "app.py").exists()
    installed = {p.name.split("-")[0].lower() for p in layer.glob("*.dist-info")}
    assert {"fastapi", "uvicorn", "httptools", "mangum", "aws_lambda_powertools"} <= installed
    assert not {"moto", "pytest", "boto3", "botocore", "openai", "aws_sam_cli", "httpx"} & installed
    wheel_tag = "aarch64" if arch == "arm64" else "x86_64"
    assert any(wheel_tag in so.name for so in layer.rglob("*.so")), "native wheels built for the wrong platform"
    assert list((function / "switchboard" / "__pycache__").glob("*.cpython-312.pyc")), "no bytecode for 3.12"


def test_built_artifacts_stream_a_chat_the_way_the_web_adapter_serves_them(host_build, simulator, tmp_path):
    """run.sh from the build folder, the built layer on PYTHONPATH as /opt/python would be, python3.12."""
    import openai

    port = bind().getsockname()[1]
    python_dir = str(Path(python312()).parent)
    env = {"PATH": f"{python_dir}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "LAMBDA_TASK_ROOT": str(host_build / "GatewayFunction"), "AWS_LWA_PORT": str(port),
           "PYTHONPATH": str(host_build / "DependenciesLayer" / "python"), "PYTHONDONTWRITEBYTECODE": "1",
           "SWITCHBOARD_API_KEYS": GATEWAY_KEY, "SIMULATOR_BASE_URL": simulator.url + "/v1"}
    server = subprocess.Popen(["bash", str(host_build / "GatewayFunction" / "run.sh")], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("the built gateway never answered /health: " + server.stdout.read1(5000).decode())
        client = openai.OpenAI(base_url=base + "/v1", api_key=GATEWAY_KEY, max_retries=0)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in client.chat.completions.create(
            model="simulator/echo", messages=[{"role": "user", "content": "hi"}], stream=True) if chunk.choices)
        assert text.startswith("(simulated)")
        # The server really runs from the build folder, on Python 3.12.
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert "-m switchboard.http.serving" in cmdline  # run.sh exec'd the gateway's own entry in its own place
        assert "3.12" in os.readlink(f"/proc/{server.pid}/exe")
    finally:
        server.terminate()
        server.wait(timeout=10)
