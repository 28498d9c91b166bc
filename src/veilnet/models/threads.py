"""How many CPU threads one llama.cpp engine gets.

llama.cpp's worker threads spin while they wait for each other, so engines that together ask for more
threads than there are free cores slow each other down far more than their share: on a busy 2-core machine
two threads per engine generated ~10x slower than one (24 tokens in ~10 s against ~1 s). The default divides
the cores this process may run on (``os.sched_getaffinity``: a container's or ``taskset``'s limit, not the
machine's core count) among the engines that run on the host.
"""

from __future__ import annotations

import os

__all__ = ["available_cpus", "engine_threads"]


def available_cpus() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # macOS has no affinity masks


def engine_threads(configured: int | None, engines_on_host: int = 1, cpus: int | None = None) -> int:
    """``configured`` when set, else the available cores shared among ``engines_on_host`` engines (at least 1)."""
    if configured is not None:
        return configured
    return max(1, (cpus if cpus is not None else available_cpus()) // max(1, engines_on_host))
