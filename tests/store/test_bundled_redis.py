"""A bundled Redis never outlives the process that started it, even one killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")

OWNER = """
import asyncio, sys, uvloop
from veilnet.store.redis import bundled_redis_server

async def main() -> None:
    async with bundled_redis_server() as url:
        print(url, flush=True)
        await asyncio.sleep(3600)

uvloop.run(main())
"""


def processes_with(argument: str) -> list[int]:
    """Pids of live processes whose command line holds ``argument`` (redis-server rewrites its own: it shows
    ``redis-server unixsocket:<path>``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if argument.encode() in command_line and state != "Z":
            found.append(int(entry.name))
    return found


def children(pid: int) -> list[int]:
    """The pids of a live process's children."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_the_bundled_redis_dies_with_its_owner(how: signal.Signals) -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True)
    socket_path = ""
    try:
        assert owner.stdout is not None
        socket_path = owner.stdout.readline().strip().removeprefix("unix://")
        assert socket_path, "the owner did not start its Redis"
        servers = processes_with(socket_path)
        assert len(servers) == 1
        os.kill(owner.pid, how)
        owner.wait(timeout=10)
        deadline = time.monotonic() + 10
        while processes_with(socket_path):
            assert time.monotonic() < deadline, f"redis-server {servers} outlived its owner ({how.name})"
            time.sleep(0.05)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        for orphan in processes_with(socket_path) if socket_path else []:  # a failed run leaves nothing behind
            os.kill(orphan, signal.SIGKILL)
