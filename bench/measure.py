"""What the benches share: free ports, waiting for a server, the CPU time a process (tree) spent, percentiles.

CPU per request is the figure least disturbed by a busy machine: on two cores the load generator, the
upstream and the proxy under test compete, so throughput mostly measures CPU per request anyway, and
wall-clock figures of one short run vary by ±20 %. The benches interleave their targets over several
rounds and report medians for the same reason.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

__all__ = ["Cell", "Run", "cpu_seconds", "free_port", "interleaved", "percentile", "wait_up"]

Run = Callable[[float], tuple[float, list[float]]]  # seconds -> (requests/s, latencies ms)

_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_up(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def _stat(pid: int) -> list[str]:
    # the fields after "(comm)": state is [0], ppid [1], utime [11], stime [12]
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every live descendant (a server's worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # a process that ended while we looked
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = _stat(current)
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICKS
        todo += children.get(current, [])
    return total


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else values[0]


@dataclass
class Cell:
    rate: float  # requests/s, the median round
    latencies: list[float]  # ms, every request of every round
    cpu_ms: float  # the target process's CPU per request


def interleaved(runs: dict[str, Run], pids: dict[str, int],
                seconds: float, rounds: int) -> dict[str, Cell]:
    """Run each target (``run(seconds) -> (requests/s, latencies ms)``) in ``rounds`` rounds of
    ``seconds / rounds``, the order rotating each round so no target always follows the same one, after a
    0.5 s warm-up each; ``pids`` are the processes whose CPU is counted."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    latencies: dict[str, list[float]] = {name: [] for name in runs}
    cpu = dict.fromkeys(runs, 0.0)
    names = list(runs)
    for run in runs.values():
        run(0.5)
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            before = cpu_seconds(pids[name])
            rate, seen = runs[name](seconds / rounds)
            cpu[name] += cpu_seconds(pids[name]) - before
            rates[name].append(rate)
            latencies[name] += seen
    return {name: Cell(statistics.median(rates[name]), latencies[name], 1000 * cpu[name] / len(latencies[name]))
            for name in runs}
