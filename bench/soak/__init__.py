"""Soak: hundreds of concurrent streams through the gateway while the upstream and DynamoDB misbehave.

    .venv/bin/python -m bench.soak [--streams 250] [--waves 8] [--json PATH]

Everything runs on loopback and is stopped at the end, also on errors: the simulator and the gateway
in processes of their own, and in this process a moto server (the call table and both secrets) behind
a fault proxy that fails or stalls a share of the DynamoDB requests. Each wave sends `streams`
streaming requests at once; a seeded plan gives each one a fault (upstream 5xx with and without a
fallback, a connection cut mid-stream, a slow first token past its deadline, a client that hangs up).

Then it checks what the design promises: every request ends in a well-formed response or error, every
request leaves exactly one call record (in the table, or in the gateway's log when the write failed),
the gateway is still up, and its memory stays flat from the first wave to the last. Exit status 1 if
not; the figures go to stdout and, with --json, to a file.

    plan            the kinds of request and their faults, a seeded wave of them
    client          the waves over httpx, each stream's events read with httpx-sse and judged
    dynamodb_proxy  the proxy in front of moto that fails or stalls DynamoDB requests
    records         one call record per request, in the table or the gateway's log
    report          the figures, the verdict, the printed summary
    run             starting and stopping it all (bench.servers), memory and CPU (bench.footprint, bench.cpu)
    __main__        the command line `make soak` runs
"""

from bench.soak.plan import KINDS, Kind
from bench.soak.report import SoakReport
from bench.soak.run import run_soak

__all__ = ["KINDS", "Kind", "SoakReport", "run_soak"]
