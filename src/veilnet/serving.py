"""Serving an ASGI app as veilnet's services do: uvicorn, with the startup heap frozen out of the collector."""

from __future__ import annotations

import gc
from typing import Any

import uvicorn
from starlette.types import ASGIApp

__all__ = ["serve"]


async def serve(app: ASGIApp, *, host: str, port: int, **config: Any) -> None:
    """Serve ``app`` until cancelled. What startup loaded (modules, schemas, models: most of the heap) is
    frozen out of the garbage collector first; otherwise every full collection walks all of it, a ~100 ms
    stall of every stream in flight (measured on the gateway at 64 concurrent streams: p99 200 -> 120 ms)."""
    settings: dict[str, Any] = {"log_level": "warning", "lifespan": "off", **config}
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **settings))
    gc.collect()
    gc.freeze()
    await server.serve()
