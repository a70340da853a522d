"""`python -m bench.soak`: the command line `make soak` runs; see the package's docstring for what it checks."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import bench.soak
from bench.soak.client import SoakError
from bench.soak.run import WRITE_BUDGET_MS, run_soak


def main(argv: list[str] | None = None) -> int:
    description = (bench.soak.__doc__ or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=description)
    parser.add_argument("--streams", type=int, default=250, help="concurrent streams per wave")
    parser.add_argument("--waves", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dynamodb-fault-rate", type=float, default=0.10,
                        help="share of DynamoDB requests failed or stalled")
    parser.add_argument("--write-budget-ms", type=int, default=WRITE_BUDGET_MS,
                        help="the gateway's SWITCHBOARD_LEDGER_WRITE_BUDGET_MS (stalls last 1.5 s)")
    parser.add_argument("--memory-threshold-mb", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="hard limit on the whole run, in seconds")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs even when the run passes")
    args = parser.parse_args(argv)

    def on_alarm(*_args) -> None:
        raise SoakError(f"the soak overran its hard limit of {args.timeout:.0f} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.timeout) + 60)  # the last resort; run_soak bounds itself within args.timeout
    try:
        report = run_soak(args.streams, args.waves, seed=args.seed, dynamodb_fault_rate=args.dynamodb_fault_rate,
                          write_budget_ms=args.write_budget_ms, memory_threshold_mb=args.memory_threshold_mb,
                          total_timeout_s=args.timeout,
                          keep_logs=args.keep_logs, progress=lambda m: print(f"soak: {m}", file=sys.stderr))
    finally:
        signal.alarm(0)
    print(report.summary())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
