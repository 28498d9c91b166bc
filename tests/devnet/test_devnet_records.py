"""A devnet's processes are known by pid and start time: a pid the system gave to another process is never
signalled, and `devnet down` ends a foreground `devnet up` as well as the services."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from veilnet.devnet.processes import ProcessRecord, ServiceRecord, is_running, start_service, stop_process
from veilnet.devnet.runtime import DevnetRuntime, NeuronRecord, load_runtime, save_runtime
from veilnet.devnet.up import devnet_down, stop_own_services


def record_of(process: subprocess.Popen[bytes]) -> ProcessRecord:
    import psutil

    return ProcessRecord(pid=process.pid, started=psutil.Process(process.pid).create_time())


def make_runtime(data_dir: Path, services: list[ServiceRecord], **fields: object) -> DevnetRuntime:
    runtime = DevnetRuntime.model_validate({
        "data_dir": str(data_dir), "netuid": 1, "chain_url": "http://127.0.0.1:1", "redis_url": "unix:///nowhere",
        "database_url": f"sqlite+aiosqlite:///{data_dir / 'veilnet.sqlite3'}", "gateway_url": "http://127.0.0.1:2",
        "api_key": "vn-x", "wallet_path": str(data_dir / "wallets"), "block_time": 0.5, "tempo": 40,
        "neurons": [NeuronRecord(name="miner-0", role="miner", wallet="miner-0", hotkey="5H" + "m" * 46,
                                 coldkey="5C" + "c" * 46, axon_url="http://127.0.0.1:3", model="SmolLM2-135M-Instruct",
                                 threads=1)],
        "instance": "first", "services": services, "started_at": time.time(), **fields,
    })
    save_runtime(runtime)
    return runtime


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[ServiceRecord]:
    """A real service process (sleep) in its own session, as the devnet starts them."""
    service = start_service("miner-0", ["sleep", "120"], log_dir=tmp_path / "logs")
    try:
        yield service
    finally:
        stop_process(service, timeout=1)


def test_a_pid_now_held_by_another_process_is_never_signalled(sleeper: ServiceRecord) -> None:
    assert is_running(sleeper)
    stale = sleeper.model_copy(update={"started": sleeper.started - 3600})  # same pid, another process
    assert not is_running(stale)
    assert stop_process(stale) is False and is_running(sleeper)
    assert stop_process(sleeper, timeout=5) is True and not is_running(sleeper)


def test_down_stops_recorded_services_only(tmp_path: Path, sleeper: ServiceRecord) -> None:
    other = start_service("unrelated", ["sleep", "120"], log_dir=tmp_path / "logs")
    try:
        stale = other.model_copy(update={"name": "chain", "started": other.started + 7.0})
        make_runtime(tmp_path, [stale, sleeper])
        assert devnet_down(tmp_path) == ["miner-0"]
        assert not is_running(sleeper) and is_running(other)
    finally:
        stop_process(other, timeout=1)


def test_down_ends_a_foreground_up(tmp_path: Path, sleeper: ServiceRecord) -> None:
    # a stand-in for the foreground `up`: a process that leaves on SIGTERM (the real one: tests/devnet/test_devnet_keep.py)
    supervisor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        make_runtime(tmp_path, [sleeper], supervisor=record_of(supervisor))
        assert devnet_down(tmp_path) == ["devnet up", "miner-0"]
        assert supervisor.wait(timeout=10) == -signal.SIGTERM
        runtime = load_runtime(tmp_path)
        assert runtime is not None and runtime.supervisor is None
    finally:
        supervisor.kill()
        supervisor.wait()


def test_an_old_up_stops_only_its_own_services(tmp_path: Path, sleeper: ServiceRecord) -> None:
    """An `up` that ends after another `up` took the devnet over leaves the newer services running."""
    mine = start_service("gateway", ["sleep", "120"], log_dir=tmp_path / "logs")
    try:
        make_runtime(tmp_path, [sleeper], instance="newer")
        assert stop_own_services(tmp_path, "older", [mine]) == ["gateway"]
        assert is_running(sleeper) and not is_running(mine)
        # while the record is still its own, it stops what it lists (services `add-miner` started included)
        make_runtime(tmp_path, [sleeper], instance="older")
        assert stop_own_services(tmp_path, "older", []) == ["miner-0"] and not is_running(sleeper)
    finally:
        stop_process(mine, timeout=1)
