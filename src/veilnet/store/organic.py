"""Organic traffic for the validator's scoring: a sampled, anonymised stream of gateway requests.

Stream ``veilnet:organic:<netuid>`` (capped at ``MAXLEN`` entries), fields: ``miner`` (hotkey), ``model``,
``request`` (the JSON request without user identifiers), ``response`` (the JSON answer, non-streamed
requests only), ``latency_ms`` and ``status``. The API key and any ``user`` field never enter the stream.
"""

from __future__ import annotations

import json
import random
from typing import Any

import redis.asyncio as aioredis

__all__ = ["OrganicStream"]

MAXLEN = 10_000


class OrganicStream:
    def __init__(self, redis: aioredis.Redis, netuid: int, *, sample_rate: float,
                 rng: random.Random | None = None) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError("sample_rate must be within [0, 1]")
        self._redis = redis
        self._name = f"veilnet:organic:{netuid}"
        self._rate = sample_rate
        self._rng = rng or random.Random()

    async def maybe_add(self, *, miner: str, model: str, request: dict[str, Any], response: dict[str, Any] | None,
                        latency_ms: float, status: str) -> bool:
        """Add the request with probability ``sample_rate``; returns whether it was sampled."""
        if self._rng.random() >= self._rate:
            return False
        anonymised = {k: v for k, v in request.items() if k not in ("user", "provider", "models")}
        fields: dict[str, str] = {
            "miner": miner, "model": model, "request": json.dumps(anonymised),
            "response": json.dumps(response) if response is not None else "", "latency_ms": f"{latency_ms:.1f}",
            "status": status,
        }
        await self._redis.xadd(self._name, fields, maxlen=MAXLEN, approximate=True)  # type: ignore[arg-type]
        return True

    async def read(self, count: int = 100) -> list[dict[str, str]]:
        """The newest ``count`` samples, oldest first."""
        entries = list(await self._redis.xrevrange(self._name, count=count) or [])
        return [
            {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in fields.items()}
            for _, fields in reversed(entries)
            if fields
        ]
