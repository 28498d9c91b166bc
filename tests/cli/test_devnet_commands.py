"""`veilnet devnet status|logs|up` and `veilnet keys` against a recorded devnet, without starting one (the
whole devnet runs in tests/devnet/test_devnet_keep.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.devnet.test_devnet_records import make_runtime
from typer.testing import CliRunner

from veilnet.cli import app
from veilnet.devnet.logs import follow
from veilnet.devnet.processes import ServiceRecord, start_service, stop_process


def veilnet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command, its output to a pipe (not a terminal)."""
    import os

    return subprocess.run([sys.executable, "-m", "veilnet", *args], capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, **(env or {})})


@pytest.fixture
def running(tmp_path: Path) -> Iterator[ServiceRecord]:
    service = start_service("miner-0", ["sleep", "120"], log_dir=tmp_path / "devnet" / "logs",
                            url="http://127.0.0.1:3")
    try:
        yield service
    finally:
        stop_process(service, timeout=1)


def test_status_is_whole_when_redirected(tmp_path: Path, running: ServiceRecord) -> None:
    data = tmp_path / "devnet" / ("a-long-directory-name-" * 4)
    log = data / "logs" / "miner-0.log"
    make_runtime(data, [running.model_copy(update={"log": str(log)})])
    result = veilnet("devnet", "status", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "…" not in out and max(len(line) for line in out.splitlines()) > 120
    assert str(log) in out and "http://127.0.0.1:3" in out
    assert f"API keys sqlite+aiosqlite:///{data / 'veilnet.sqlite3'}" in out
    assert "llama.cpp: 1 thread per engine, 1 engine, " in out
    assert "chain unreachable" in out  # nothing serves at the recorded chain URL
    status = json.loads(veilnet("devnet", "status", "--json", "--data-dir", str(data)).stdout)
    assert status["database_url"].endswith("veilnet.sqlite3") and status["neurons"][0]["threads"] == 1
    assert [s["alive"] for s in status["services"]] == [True]


def test_keys_act_on_the_running_devnets_database(tmp_path: Path, running: ServiceRecord,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "devnet"
    make_runtime(data, [running])
    monkeypatch.setenv("VEILNET_DEVNET__DATA_DIR", str(data))
    monkeypatch.setenv("VEILNET_DATA_DIR", str(tmp_path / "home"))
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "--name", "app"])
    assert created.exit_code == 0, created.output
    assert f"keys in sqlite+aiosqlite:///{data / 'veilnet.sqlite3'} (the running devnet's" in created.stderr
    assert [k["name"] for k in json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)] == ["app"]

    stop_process(running, timeout=5)  # the devnet is down: the default database again
    listed = runner.invoke(app, ["keys", "list", "--json"])
    assert json.loads(listed.stdout) == [] and "no devnet is running" in listed.stderr
    monkeypatch.setenv("VEILNET_DATABASE__URL", f"sqlite+aiosqlite:///{tmp_path / 'configured.sqlite3'}")
    listed = runner.invoke(app, ["keys", "list", "--json"])
    assert json.loads(listed.stdout) == [] and "(VEILNET_DATABASE__URL)" in listed.stderr


def test_logs(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "chain.log").write_text("".join(f"chain {i}\n" for i in range(100)))
    (logs / "miner-0.log").write_text("miner up\nserving\n")
    runner = CliRunner()
    both = runner.invoke(app, ["devnet", "logs", "-n", "2", "--data-dir", str(tmp_path)])
    assert both.exit_code == 0
    assert both.stdout.splitlines() == ["chain   | chain 98", "chain   | chain 99", "miner-0 | miner up",
                                        "miner-0 | serving"]
    one = runner.invoke(app, ["devnet", "logs", "chain", "--lines", "3", "--data-dir", str(tmp_path)])
    assert one.stdout.splitlines() == ["chain 97", "chain 98", "chain 99"]
    missing = runner.invoke(app, ["devnet", "logs", "gateway", "--data-dir", str(tmp_path)])
    assert missing.exit_code == 1 and "no log for service 'gateway'" in missing.stderr
    assert "services: chain, miner-0" in missing.stderr


def test_follow_prints_lines_as_they_are_written(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    log.write_text("old line\n")
    seen: list[tuple[str, str]] = []
    done = threading.Event()
    follower = threading.Thread(target=follow, args=({"gateway": log}, lambda n, line: seen.append((n, line))),
                                kwargs={"stop": done.is_set, "interval": 0.02})
    follower.start()
    try:
        time.sleep(0.1)
        with log.open("a") as handle:
            handle.write("new ")
            handle.flush()
            time.sleep(0.1)
            handle.write("line\nanother\n")
        deadline = time.monotonic() + 5
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        done.set()
        follower.join()
    assert seen == [("gateway", "new line"), ("gateway", "another")]


def test_up_resumes_a_devnet_as_created_or_says_why_not(tmp_path: Path) -> None:
    make_runtime(tmp_path, [])
    before = (tmp_path / "devnet.json").read_text()
    result = CliRunner().invoke(app, ["devnet", "up", "--miners", "5", "--model", "gemma-3-270m",
                                      "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "--miners 5 (it has 1)" in result.stderr and "--model gemma-3-270m (it has SmolLM2-135M-Instruct)" in result.stderr
    assert "devnet add-miner" in result.stderr and "devnet reset" in result.stderr
    assert (tmp_path / "devnet.json").read_text() == before  # nothing was started or rewritten

    fresh = CliRunner().invoke(app, ["devnet", "up", "--backend", "openai", "--data-dir", str(tmp_path / "new")])
    assert fresh.exit_code == 1 and "--backend openai needs --upstream-url" in fresh.stderr
    unknown = CliRunner().invoke(app, ["devnet", "up", "--model", "llama-70b", "--data-dir", str(tmp_path / "new")])
    assert unknown.exit_code == 1 and "use --backend openai for others" in unknown.stderr
