"""Serving an ASGI app as veilnet's services do: uvicorn, with the startup heap frozen out of the collector, and
SIGTERM / SIGINT ending the service gracefully whenever they arrive.

uvicorn handles both signals itself while it serves, and once it has shut down it raises the signal again
with the default handler back in place: the process dies there, before the service's resources close — the
gateway lost the ledger rows of its last requests on every ``docker stop``. Here the process owns the signals
for its whole life instead (:func:`stop_on_signals`): while it is not serving HTTP (starting up, or a service
without a server such as the validator), a signal cancels it (what was opened closes); while it serves, uvicorn stops accepting, lets requests in flight finish (at most
``timeout_graceful_shutdown`` seconds) and returns; while it closes, further signals are ignored so the
closing (ledger rows, counters, the bundled Redis) completes. The service then returns normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import uvicorn
from starlette.types import ASGIApp

from veilnet.connections import ConnectionTimeouts, guarded_protocol

__all__ = ["ServiceStop", "serve", "stop_on_signals"]

log = logging.getLogger(__name__)

# Net new container objects between young-generation collections (CPython's default: 700). At the default a
# busy proxy collects every dozen requests, each time walking what every request in flight holds: measured on
# the gateway at 64 concurrent streams, 0.12 ms of GC CPU per stream (gen0 collections of ~1.3 ms each). At
# 20,000 no collection ran in 8 s of that load and the gateway's CPU per stream fell by ~10 %. Only garbage
# in reference cycles waits for the collector (the rest is freed at once), and it still goes within 20,000.
YOUNG_COLLECTION_THRESHOLD = 20_000

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (:class:`ServiceStop` tells it when to stop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ServiceStop:
    """What a stop signal does at each stage of a service's life (see the module docstring)."""

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self._task = task
        self._server: uvicorn.Server | None = None
        self.stage: Literal["running", "serving", "closing"] = "running"
        self.signal: int | None = None  # the first stop signal received
        self.cancelled = False  # a signal cancelled the service's task

    def on_signal(self, number: int) -> None:
        first = self.signal is None
        if first:
            self.signal = number
        name = signal.Signals(number).name
        if self.stage == "serving" and self._server is not None:
            if first:
                log.info("%s: stopping (requests in flight may finish)", name)
                self._server.should_exit = True
            else:
                log.warning("%s again: closing connections now", name)
                self._server.force_exit = True
        elif self.stage == "running" and self._task is not None:
            log.info("%s: stopping", name)
            self.stage = "closing"
            self.cancelled = True
            self._task.cancel()
        else:
            log.info("%s: already closing", name)

    async def serve(self, server: uvicorn.Server) -> None:
        """Run ``server`` until a stop signal (or until it stops by itself), then move to closing."""
        if self.stage == "closing":
            return
        self.stage, self._server = "serving", server
        try:
            await server.serve()
        finally:
            self.stage, self._server = "closing", None


@contextlib.asynccontextmanager
async def stop_on_signals() -> AsyncIterator[ServiceStop]:
    """Own SIGTERM and SIGINT for the body (a service's whole life). Where signals cannot be handled (not the
    main thread) the body runs without."""
    loop = asyncio.get_running_loop()
    stop = ServiceStop(asyncio.current_task())
    installed = []
    for number in STOP_SIGNALS:
        try:
            loop.add_signal_handler(number, stop.on_signal, number)
        except (RuntimeError, ValueError, NotImplementedError):  # not the main thread, or no signals here
            continue
        installed.append(number)
    try:
        yield stop
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if not stop.cancelled or task is None:
            raise
        task.uncancel()  # the signal's cancellation: the service ends normally
    finally:
        for number in installed:
            loop.remove_signal_handler(number)


async def serve(app: ASGIApp, *, host: str, port: int, stop: ServiceStop | None = None,
                timeouts: ConnectionTimeouts | None = None, **config: Any) -> None:
    """Serve ``app`` until a stop signal or cancellation. ``stop``: the service's :func:`stop_on_signals`
    (without one, signals are owned for the time of serving only). ``timeouts``: how long a client may take
    to send a request (:mod:`veilnet.connections`; the settings' ``http`` section). What startup loaded (modules, schemas,
    models: most of the heap) is frozen out of the garbage collector first; otherwise every full collection
    walks all of it, a ~100 ms stall of every stream in flight (measured on the gateway at 64 concurrent
    streams: p99 200 -> 120 ms). Young collections then run every YOUNG_COLLECTION_THRESHOLD new objects
    instead of every 700."""
    limits = timeouts or ConnectionTimeouts()
    settings: dict[str, Any] = {"log_level": "warning", "lifespan": "off", "http": guarded_protocol(limits),
                                "timeout_keep_alive": limits.keep_alive_seconds, **config}
    server = _Server(uvicorn.Config(app, host=host, port=port, **settings))
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
    if stop is not None:
        await stop.serve(server)
        return
    async with stop_on_signals() as own:
        await own.serve(server)
