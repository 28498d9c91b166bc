"""Child processes of a local devnet: start them detached, wait until they serve, stop them cleanly.

Each service of ``veilnet devnet up`` (Redis, the chain, miners, validators, the gateway) is an ordinary
``veilnet ...`` command started in its own process session, so ``--detach`` can leave them running and
``veilnet devnet down`` can stop them later from the state file.

A process is recorded as its pid *and* its start time (:class:`ProcessRecord`): the system hands a pid to a
new process once the old one is gone, so a pid alone read back after a reboot, or after another devnet took
over, could name a process that is not ours. Every check and every signal goes through the record.
psutil reads the start time portably (``/proc`` on Linux, ``sysctl`` on macOS).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import aiohttp
import psutil
from pydantic import BaseModel

from veilnet.errors import VeilnetError

__all__ = [
    "ProcessRecord",
    "ServiceFailed",
    "ServiceRecord",
    "current_process",
    "is_running",
    "log_tail",
    "start_service",
    "stop_process",
    "stop_processes",
    "terminate",
    "veilnet_command",
    "wait_http_ok",
]

# psutil gives start times in clock ticks (1/100 s on Linux): two records of one process agree to well within this
_SAME_START = 0.005


class ServiceFailed(VeilnetError):
    code = "devnet_service_failed"


class ProcessRecord(BaseModel):
    """One process: its pid and its start time (seconds since the epoch, as psutil reports it)."""

    pid: int
    started: float


class ServiceRecord(ProcessRecord):
    """A service of the devnet: its name, process, log file and the URL it serves (if any)."""

    name: str
    log: str
    url: str | None = None

    @property
    def log_path(self) -> Path:
        return Path(self.log)


def _start_time(pid: int) -> float | None:
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return None
        return float(process.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return None


def _reap(pid: int) -> None:
    """Collect an exited child of ours, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def current_process() -> ProcessRecord:
    """The record of this process."""
    started = _start_time(os.getpid())
    assert started is not None  # we are running
    return ProcessRecord(pid=os.getpid(), started=started)


def is_running(record: ProcessRecord) -> bool:
    """Whether the process ``record`` names still runs (a pid now held by another process does not count)."""
    started = _start_time(record.pid)
    return started is not None and abs(started - record.started) < _SAME_START


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def veilnet_command(*args: str) -> list[str]:
    """The command line running ``veilnet <args>`` with this interpreter (works without the console script)."""
    return [sys.executable, "-m", "veilnet", *args]


def start_service(
    name: str,
    argv: Sequence[str],
    *,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    url: str | None = None,
) -> ServiceRecord:
    """Start ``argv`` in a new process session with stdout/stderr appended to ``log_dir/<name>.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    with log_path.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(argv)}\n".encode())
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,
        )
    started = _start_time(process.pid)
    if started is None:  # it exited at once; record it anyway so the caller reports its log
        started = time.time()
    return ServiceRecord(name=name, pid=process.pid, started=started, log=str(log_path), url=url)


def stop_process(record: ProcessRecord, *, timeout: float = 10.0, group: bool = True) -> bool:
    """SIGTERM the process ``record`` names (its whole process group when ``group``: services lead their own),
    then SIGKILL it after ``timeout`` seconds. A process that is not the recorded one is left alone. Returns
    whether it was running."""
    return bool(stop_processes([record], timeout=timeout, group=group))


def stop_processes(
    records: Sequence[ProcessRecord], *, timeout: float = 10.0, group: bool = True
) -> list[ProcessRecord]:
    """:func:`stop_process` for several at once: all get SIGTERM, then all get ``timeout`` seconds to leave
    together. Returns those that were running."""
    signalled = [r for r in records if is_running(r) and _signal(r, signal.SIGTERM, group)]
    deadline = time.monotonic() + timeout
    left = list(signalled)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [r for r in left if is_running(r)]
    for record in left:
        _signal(record, signal.SIGKILL, group)
    return signalled


def terminate(record: ProcessRecord) -> bool:
    """SIGTERM the process ``record`` names (that process only) and return at once; False if it is not running."""
    return is_running(record) and _signal(record, signal.SIGTERM, group=False)


def _signal(record: ProcessRecord, signum: int, group: bool) -> bool:
    try:
        if group:
            os.killpg(record.pid, signum)
        else:
            os.kill(record.pid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def wait_http_ok(
    url: str,
    *,
    service: ServiceRecord | None = None,
    timeout: float = 120.0,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Poll ``url`` until it answers 2xx; fail early, with the log's tail, if ``service`` dies meanwhile."""
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            if service is not None and not is_running(service):
                raise ServiceFailed(
                    f"{service.name} exited before serving; last log lines ({service.log}):\n"
                    f"{log_tail(service.log_path)}"
                )
            try:
                async with session.get(url, headers=dict(headers or {})) as response:
                    if 200 <= response.status < 300:
                        return
                    last_error = f"HTTP {response.status}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.2)
    where = f"; last log lines ({service.log}):\n{log_tail(service.log_path)}" if service is not None else ""
    raise ServiceFailed(f"{url} did not answer within {timeout:.0f} s: {last_error}{where}")
