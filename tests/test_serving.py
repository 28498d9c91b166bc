"""A service process owns SIGTERM and SIGINT for its whole life: a signal ends it gracefully whatever it is
doing, and what it opened closes before it exits (with status 0)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

SERVICE = """
import asyncio, contextlib, sys
from pathlib import Path
from veilnet.serving import stop_on_signals

async def main() -> None:
    async with stop_on_signals(), contextlib.AsyncExitStack() as stack:
        async def close() -> None:
            await asyncio.sleep(0.2)  # closing takes a while: a second signal must not cut it short
            Path(sys.argv[1]).write_text("closed")
        stack.push_async_callback(close)
        print("running", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_closes_a_service_that_serves_no_http(tmp_path: Path, how: signal.Signals) -> None:
    marker = tmp_path / "closed"
    service = subprocess.Popen([sys.executable, "-c", SERVICE, str(marker)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert service.stdout is not None and service.stdout.readline().strip() == "running"
        service.send_signal(how)
        service.send_signal(how)  # again, while it closes
        _, stderr = service.communicate(timeout=20)
        assert service.returncode == 0, stderr
        assert "Traceback" not in stderr
        assert marker.read_text() == "closed"
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
