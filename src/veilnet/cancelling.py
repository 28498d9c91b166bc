"""Stopping background tasks for certain.

A cancellation can be lost on its way: ``asyncio.wait_for`` on Python 3.11 returns the inner result when the
inner future finishes in the same turn of the loop as the cancellation arrives (CPython gh-86296, fixed in
3.12, where it is built on ``asyncio.timeout``; veilnet's own code uses ``asyncio.timeout`` only), and a
library may turn one into a timeout that its caller then handles. A task whose cancellation was lost inside a loop goes on running, and whoever waits for it
waits forever. :func:`stop` cancels again, every ``again`` seconds, whatever is still running; asyncio has no
such call (``gather`` and ``TaskGroup`` wait for their children without cancelling them again). A long-running
loop calls :func:`raise_if_stopping` each round, so a cancellation lost inside a round still ends it at the
next; and a loop that starts over after a failure asks :func:`stopping` first: a cancellation that surfaced as
a failure (a connection closed under a request) must end it, not start it again. Both read the running task's
count of cancellation requests (``Task.cancelling``), which only ``uncancel`` (as ``asyncio.timeout`` does for
its own) takes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["raise_if_stopping", "stop", "stopping"]


async def stop(tasks: Iterable[asyncio.Future[Any]], *, again: float = 1.0) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling those still running again every
    ``again`` seconds. Their outcomes stay on them (each exception is marked retrieved, so none is logged as
    lost; ``result()`` still raises it)."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=again)
    for task in tasks:
        if not task.cancelled():
            task.exception()


def stopping() -> bool:
    """Whether the running task has been asked to stop (cancelled, whatever it raised since)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def raise_if_stopping() -> None:
    """Raise ``CancelledError`` when the running task has been asked to stop (a loop's check each round)."""
    if stopping():
        raise asyncio.CancelledError
