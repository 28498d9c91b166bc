"""llama.cpp's threads per engine: a setting, by default the cores this process may use shared among the
engines on the host."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from veilnet.errors import ConfigError
from veilnet.models.threads import available_cpus, engine_threads
from veilnet.settings import load_settings


def test_default_shares_the_cores_among_engines() -> None:
    assert engine_threads(None, 1, cpus=2) == 2
    assert engine_threads(None, 2, cpus=2) == 1
    assert engine_threads(None, 4, cpus=2) == 1  # never 0
    assert engine_threads(None, 3, cpus=16) == 5
    assert engine_threads(3, 8, cpus=2) == 3  # a configured count wins


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_cores_are_those_this_process_may_use() -> None:
    assert available_cpus() == len(os.sched_getaffinity(0))
    # a process limited to one core (taskset, a container's cpuset) counts one, however many the machine has
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from veilnet.settings import load_settings; print(load_settings().llamacpp.resolved_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_threads_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().llamacpp.resolved_threads() == available_cpus()
    monkeypatch.setenv("VEILNET_LLAMACPP__ENGINES_ON_HOST", str(available_cpus() * 2))
    assert load_settings().llamacpp.resolved_threads() == 1
    monkeypatch.setenv("VEILNET_LLAMACPP__THREADS", "3")
    assert load_settings().llamacpp.resolved_threads() == 3
    monkeypatch.setenv("VEILNET_LLAMACPP__THREADS", "0")
    with pytest.raises(ConfigError, match=r"llamacpp\.threads"):
        load_settings()
