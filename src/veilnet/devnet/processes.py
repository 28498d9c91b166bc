"""Child processes of a local devnet: start them detached, wait until they serve, stop them cleanly.

Each service of ``veilnet devnet up`` (Redis, the chain, miners, validators, the gateway) is an ordinary
``veilnet ...`` command started in its own process session, so ``--detach`` can leave them running and
``veilnet devnet down`` can stop them later from the pids recorded in the state file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from veilnet.errors import VeilnetError

__all__ = [
    "ServiceFailed",
    "ServiceProcess",
    "is_alive",
    "start_service",
    "stop_pid",
    "veilnet_command",
    "wait_http_ok",
]


class ServiceFailed(VeilnetError):
    code = "devnet_service_failed"


@dataclass(frozen=True)
class ServiceProcess:
    """A started service: its name, pid and log file."""

    name: str
    pid: int
    log_path: Path

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
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
) -> ServiceProcess:
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
    return ServiceProcess(name=name, pid=process.pid, log_path=log_path)


def is_alive(pid: int) -> bool:
    try:
        # Reap it if it is our own exited child, so a zombie does not look alive.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pid(pid: int, *, timeout: float = 10.0) -> None:
    """SIGTERM the process group of ``pid``, then SIGKILL whatever is left after ``timeout`` seconds."""
    if not is_alive(pid):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return


async def wait_http_ok(
    url: str,
    *,
    service: ServiceProcess | None = None,
    timeout: float = 120.0,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Poll ``url`` until it answers 2xx; fail early, with the log's tail, if ``service`` dies meanwhile."""
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while time.monotonic() < deadline:
            if service is not None and not is_alive(service.pid):
                raise ServiceFailed(
                    f"{service.name} exited before serving; last log lines ({service.log_path}):\n"
                    f"{service.log_tail()}"
                )
            try:
                async with session.get(url, headers=dict(headers or {})) as response:
                    if 200 <= response.status < 300:
                        return
                    last_error = f"HTTP {response.status}"
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.2)
    where = f" (log: {service.log_path})" if service is not None else ""
    raise ServiceFailed(f"{url} did not answer within {timeout:.0f} s: {last_error}{where}")
