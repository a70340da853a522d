"""Memory under load and the size of the deployed package.

RSS is read from /proc/<pid>/status (VmRSS, and VmHWM, the kernel's own high-water mark) every 50 ms
by a thread, so a busy event loop in the load client cannot stretch the sampling interval.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from pathlib import Path

import httpx

from bench.load import Target, run_batch
from bench.servers import ROOT
from bench.stats import max_overlap

SAM = ROOT / ".venv-sam" / "bin" / "sam"
MEMORY_STREAM_SCRIPT = {"tokens": 50, "gap_ms": 20}  # about a second per stream, so all of them overlap


def parse_status(text: str) -> dict[str, int]:
    """VmRSS and VmHWM, in kB, from the text of /proc/<pid>/status."""
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def read_status(pid: int) -> dict[str, int]:
    return parse_status(Path(f"/proc/{pid}/status").read_text())


class RssSampler:
    """Peak VmRSS of one process, sampled every `interval_s` on a thread until stopped."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss:{pid}", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = read_status(self.pid).get("VmRSS", 0)
            except OSError:
                return
            self.peak_kb = max(self.peak_kb, rss)
            self.samples += 1
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


async def rss_under_load(client: httpx.AsyncClient, target: Target, pid: int, streams: int) -> dict:
    """Peak RSS of `pid` while `streams` slow streams run through it at once."""
    before = read_status(pid)
    with RssSampler(pid) as sampler:
        samples = await run_batch(client, target, streams, streams, MEMORY_STREAM_SCRIPT)
        await asyncio.sleep(0.1)
    after = read_status(pid)
    ok = [s for s in samples if s.ok]
    return {
        "streams": streams,
        "completed": len(ok),
        "errors": sorted({s.error for s in samples if s.error})[:5],
        "max_in_flight": max_overlap([(s.started, s.started + s.total_s) for s in ok]),
        "rss_before_mb": before["VmRSS"] / 1024,
        "rss_peak_mb": sampler.peak_kb / 1024,
        "hwm_mb": after.get("VmHWM", 0) / 1024,
        "rss_samples": sampler.samples,
    }


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def package_size(build_dir: Path) -> dict | None:
    """Unzipped bytes of GatewayFunction and DependenciesLayer in a `sam build` output, if both are there."""
    function, layer = build_dir / "GatewayFunction", build_dir / "DependenciesLayer"
    if not (function.is_dir() and layer.is_dir()):
        return None
    function_bytes, layer_bytes = tree_bytes(function), tree_bytes(layer)
    return {"build_dir": str(build_dir), "function_bytes": function_bytes, "layer_bytes": layer_bytes,
            "total_bytes": function_bytes + layer_bytes, "total_mb": (function_bytes + layer_bytes) / 1e6}


def measure_size(scratch: Path) -> dict:
    """An existing build (BENCH_SAM_BUILD, then .aws-sam/build), else a fresh `sam build`, else not measured."""
    if os.environ.get("BENCH_SIZE", "1") == "0":
        return {"measured": False, "reason": "skipped (BENCH_SIZE=0)"}
    for candidate in filter(None, (os.environ.get("BENCH_SAM_BUILD"), str(ROOT / ".aws-sam" / "build"))):
        found = package_size(Path(candidate))
        if found:
            return {"measured": True, "source": "existing build", **found}
    if not SAM.exists():
        return {"measured": False, "reason": f"no build found and no {SAM.relative_to(ROOT)} (run `make build`)"}
    return _fresh_build(scratch / "sam-build")


def _fresh_build(build_dir: Path) -> dict:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION",
                                                                                        "us-east-1")}
    started = time.monotonic()
    result = subprocess.run([str(SAM), "build", "--template", str(ROOT / "template.yaml"), "--build-dir",
                             str(build_dir)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - started
    found = package_size(build_dir) if result.returncode == 0 else None
    if not found:
        tail = (result.stdout + result.stderr)[-600:]
        return {"measured": False, "reason": f"sam build failed (exit {result.returncode}): {tail}"}
    return {"measured": True, "source": f"fresh sam build ({seconds:.0f} s)", **found}
