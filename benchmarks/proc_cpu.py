"""CPU time of this machine's processes, from /proc (Linux): what the benchmarks count beside
wall time (user + system seconds of all of a process's threads, in clock ticks, 10 ms here)."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _parse(stat: str) -> tuple[int, str, float]:
    """(parent pid, name, CPU seconds) of one /proc/PID/stat; the name may hold spaces and
    parentheses, so the fields are those after its last ')'."""
    head, _, rest = stat.rpartition(")")
    fields = rest.split()
    return int(fields[1]), head.partition("(")[2], (int(fields[11]) + int(fields[12])) / TICK


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process `pid` has used so far."""
    return _parse(Path(f"/proc/{pid}/stat").read_text())[2]


def processes() -> dict[int, tuple[int, str, float]]:
    """Every process: pid → (parent pid, name, CPU seconds so far)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            out[int(stat.parent.name)] = _parse(stat.read_text())
        except OSError:
            continue  # gone meanwhile
    return out


def cpu_with_children(pid: int) -> float:
    """CPU seconds of process `pid` and its children (e.g. uvicorn's worker processes)."""
    return sum(cpu for p, (ppid, _, cpu) in processes().items() if pid in (p, ppid))
