"""CPU time a server process spends per call: utime + stime from /proc, read around each of its batches.

A server is its whole process group (the harness starts every server as a group leader), so `switchboard
serve`'s moto child is counted with it; the leader's cutime + cstime keep the time of children that already
exited and were reaped. The kernel reports these in clock ticks (usually 10 ms); the error of one reading is
under a tick and does not grow with the calls, so summing the deltas of many batches keeps it small per call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcStat:
    pid: int
    pgrp: int
    ticks: int  # utime + stime: every thread of the process
    children_ticks: int  # cutime + cstime: children it has waited for


def parse_proc_stat(text: str) -> ProcStat:
    """The fields the bench needs from one /proc/<pid>/stat line. The command name, in parentheses, may
    itself hold spaces and parentheses, so the fields are counted from the last `)`."""
    head, _, rest = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    fields = rest.split()  # fields[0] is field 3 (state) of proc(5)
    utime, stime, cutime, cstime = (int(fields[n - 3]) for n in (14, 15, 16, 17))
    return ProcStat(pid, int(fields[5 - 3]), utime + stime, cutime + cstime)


def group_ticks(stats: list[ProcStat], leader: int) -> int | None:
    """CPU ticks of the process group led by `leader`: its members' own time plus the leader's reaped
    children's. None when the leader is not among `stats` (it has exited)."""
    members = [s for s in stats if s.pgrp == leader]
    lead = next((s for s in members if s.pid == leader), None)
    if lead is None:
        return None
    return sum(s.ticks for s in members) + lead.children_ticks


def ticks_to_s(ticks: int, per_s: int = CLOCK_TICKS_PER_S) -> float:
    return ticks / per_s


def _all_stats(proc: Path = Path("/proc")) -> list[ProcStat]:
    stats = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            stats.append(parse_proc_stat((proc / entry.name / "stat").read_text()))
        except (OSError, ValueError, IndexError):
            continue  # gone between the listing and the read
    return stats


def group_cpu_s(leader: int) -> float | None:
    """Seconds of CPU the process group of `leader` has used so far (None: no such process)."""
    ticks = group_ticks(_all_stats(), leader)
    return None if ticks is None else ticks_to_s(ticks)


@dataclass
class CpuAccount:
    """One target's CPU over the batches it was measured in, and the calls those batches sent."""

    seconds: float = 0.0
    calls: int = 0
    batches: int = 0
    # Batches without a usable pair of readings: the process had gone, or the group's time went backwards (a
    # member exited unreaped by the leader); any such batch leaves the target without a figure at this level.
    unread: int = 0

    def add(self, before_s: float | None, after_s: float | None, calls: int) -> None:
        if before_s is None or after_s is None or after_s < before_s:
            self.unread += 1
            return
        self.seconds += after_s - before_s
        self.calls += calls
        self.batches += 1

    @property
    def ms_per_call(self) -> float | None:
        if not self.calls or self.unread:
            return None
        return self.seconds * 1000 / self.calls

    def as_dict(self) -> dict:
        return {"cpu_s": self.seconds, "calls": self.calls, "batches": self.batches, "unread_batches": self.unread,
                "ms_per_call": self.ms_per_call, "tick_ms": 1000 / CLOCK_TICKS_PER_S}
