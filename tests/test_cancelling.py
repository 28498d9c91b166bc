"""Stopping background tasks for certain (veilnet.cancelling): a task whose cancellation was lost once, as
``asyncio.wait_for`` on Python 3.11 loses one, is cancelled again until it ends; what tasks raised stays on
them; and the timeouts of the clients veilnet's loops use leave their task running, not "stopping" (a loop
checking :func:`~veilnet.cancelling.raise_if_stopping` would end after one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import httpx
import pytest

from veilnet import cancelling


def stubborn(lost: list[int]) -> asyncio.Task[None]:
    """A loop that carries on after its first cancellation (as one whose await lost it would), and ends on the
    next."""

    async def loop() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if not lost:
                    lost.append(1)
                    continue
                raise

    return asyncio.create_task(loop())


async def test_a_task_that_lost_its_cancellation_is_cancelled_again_until_it_ends() -> None:
    lost: list[int] = []
    once = stubborn(lost)
    await asyncio.sleep(0)
    once.cancel()  # what gather-based shutdown does: one cancellation, then wait
    _, pending = await asyncio.wait({once}, timeout=0.2)
    assert pending == {once} and lost == [1]  # it runs on, and waiting for it would wait forever
    await asyncio.wait_for(cancelling.stop([once], again=0.05), 5)
    assert once.cancelled()

    lost.clear()
    fresh = stubborn(lost)
    await asyncio.sleep(0)
    await asyncio.wait_for(cancelling.stop([fresh], again=0.05), 5)
    assert fresh.cancelled() and lost == [1]


async def test_outcomes_stay_on_the_tasks() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise ValueError("cleanup failed") from None

    async def done() -> int:
        return 7

    failing, finished = asyncio.create_task(fails_on_cancel()), asyncio.create_task(done())
    await asyncio.sleep(0)
    await cancelling.stop([failing, finished])
    with pytest.raises(ValueError, match="cleanup failed"):
        failing.result()
    assert finished.result() == 7


async def test_stopping_tells_whether_the_running_task_was_cancelled() -> None:
    seen: list[bool] = []

    async def body() -> None:
        seen.append(cancelling.stopping())
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append(cancelling.stopping())
            raise

    task = asyncio.create_task(body())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [False, True]


@asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A loopback server that accepts connections and never answers."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client goes away
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    finally:
        server.close()


async def test_client_timeouts_leave_the_task_running() -> None:
    async with silent_server() as url:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=0.1)) as response:
                    await response.read()
        assert not cancelling.stopping()
        async with httpx.AsyncClient(timeout=0.1) as client:
            with pytest.raises(httpx.TimeoutException):
                await client.get(url)
        assert not cancelling.stopping()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.sleep(1), 0.05)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await asyncio.sleep(1)
    assert not cancelling.stopping()
    cancelling.raise_if_stopping()  # nothing to raise


def test_veilnet_waits_with_asyncio_timeout_not_wait_for() -> None:
    """``asyncio.wait_for`` loses cancellations on Python 3.11; veilnet's own code bounds its waits with
    ``asyncio.timeout``, which does not."""
    from pathlib import Path

    import veilnet

    root = Path(veilnet.__file__).parent
    users = [str(path.relative_to(root)) for path in root.rglob("*.py") if "asyncio.wait_for(" in path.read_text()]
    assert users == []
