"""OCR engines a miner runs: RapidOCR in this process (PP-OCRv4 ONNX models shipped in the
``rapidocr-onnxruntime`` wheel, CPU) and any OpenAI-compatible vision upstream.

RapidOCR finds text boxes, then reads each box; :func:`reading_order` puts the boxes back into lines
(top to bottom, left to right within a line), which RapidOCR itself does not. Recognition runs in worker
threads, one RapidOCR instance per admitted request (an instance keeps per-call state), under the same
admission control as the language-model engines: beyond ``concurrency`` running and ``queue`` waiting,
a request is refused at once with :class:`~veilnet.errors.Overloaded`.

Detection scales the picture so its longer side is at most ``detection_side`` (960) pixels. RapidOCR's own
default instead scales the *shorter* side up to 736, which blows a 600x100 line up to 4400x736: measured on
the validator's pictures, 5x the CPU for a slightly worse reading (bench/bench_modalities.py).
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from veilnet.errors import NotFound, UpstreamError
from veilnet.models.pool import InstancePool
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.tasks.images import ImageLimits, decode_image
from veilnet.tasks.ocr import OCR_MODEL, OcrAnswer, OcrRequest, ocr_answer

__all__ = ["OcrUpstreamEngine", "RapidOcrEngine", "reading_order"]

Box = tuple[Sequence[Sequence[float]], str]
T = TypeVar("T")


def reading_order(boxes: Sequence[Box]) -> str:
    """Text boxes (four corners from the top left, clockwise; text) as lines. The page's tilt is the median
    slope of the boxes' top edges; undoing it, a box joins the line whose centre lies within half its height,
    lines run top to bottom and boxes left to right (a tilted line's boxes otherwise sit at different heights)."""
    if not boxes:
        return ""
    slopes = sorted(math.atan2(float(p[1][1]) - float(p[0][1]), float(p[1][0]) - float(p[0][0])) for p, _ in boxes)
    tilt = slopes[len(slopes) // 2]
    cos, sin = math.cos(tilt), math.sin(tilt)
    spans = []
    for points, text in boxes:
        cx = sum(float(p[0]) for p in points) / len(points)
        cy = sum(float(p[1]) for p in points) / len(points)
        height = math.dist((float(points[0][0]), float(points[0][1])), (float(points[3][0]), float(points[3][1])))
        spans.append((cy * cos - cx * sin, height, cx * cos + cy * sin, text))  # centre in the page's own axes
    spans.sort(key=lambda span: span[0])
    lines: list[tuple[float, list[tuple[float, float, float, str]]]] = []
    for span in spans:
        if lines and abs(span[0] - lines[-1][0]) < span[1] / 2:
            lines[-1][1].append(span)
        else:
            lines.append((span[0], [span]))
    return "\n".join(" ".join(span[3] for span in sorted(members, key=lambda s: s[2])) for _, members in lines)


class RapidOcrEngine:
    """Serves ``model`` (PP-OCRv4 by default) with RapidOCR. An async context manager."""

    def __init__(self, model: str = OCR_MODEL, *, concurrency: int = 2, queue: int = 16, threads: int = 2,
                 use_angle_classifier: bool = False, detection_side: int = 960,
                 limits: ImageLimits | None = None) -> None:
        self._model = model
        self._threads = threads
        self._use_cls = use_angle_classifier
        self._detection_side = detection_side
        self._limits = limits or ImageLimits()
        self._pool: InstancePool[Any] = InstancePool("OCR", self._recogniser, concurrency=concurrency, queue=queue)

    async def __aenter__(self) -> RapidOcrEngine:
        await self._pool.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._pool.close()

    def _recogniser(self) -> Any:
        from rapidocr_onnxruntime import RapidOCR

        return RapidOCR(intra_op_num_threads=self._threads, inter_op_num_threads=1, det_limit_type="max",
                        det_limit_side_len=self._detection_side)

    def load(self) -> None:
        """Load one recogniser per concurrent request (blocking; ``async with`` runs it in a thread)."""
        self._pool.load()

    def models(self) -> list[str]:
        return [self._model]

    def _read(self, reader: Any, picture: Image.Image) -> str:
        pixels = np.asarray(picture)[:, :, ::-1]  # RapidOCR takes OpenCV's BGR order
        result, _ = reader(pixels, use_cls=self._use_cls)
        return reading_order([(box, str(text)) for box, text, _score in result or []])

    async def on_recogniser(self, work: Callable[[Any], T]) -> T:
        """``work(recogniser)`` on one of the loaded RapidOCR instances, in a worker thread, under admission
        control (for benchmarks and tests that call RapidOCR with other options)."""
        return await self._pool.run(work)

    async def read(self, picture: Image.Image) -> str:
        """The text in ``picture``, lines separated by newlines."""
        return await self._pool.run(lambda reader: self._read(reader, picture))

    async def transcribe(self, request: OcrRequest) -> OcrAnswer:
        if request.model != self._model:
            raise NotFound(f"model {request.model!r} is not served here; served: {self._model}")
        picture = await asyncio.to_thread(decode_image, request.image, param="messages", limits=self._limits)
        text = await self.read(picture)
        return ocr_answer(f"chatcmpl-{secrets.token_hex(12)}", int(time.time()), self._model, text)


class OcrUpstreamEngine:
    """Forwards OCR requests to an OpenAI-compatible vision model (vLLM, SGLang, OpenRouter, ...)."""

    def __init__(self, upstream: OpenAIUpstreamEngine) -> None:
        self._upstream = upstream

    async def __aenter__(self) -> OcrUpstreamEngine:
        await self._upstream.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._upstream.__aexit__(*exc_info)

    def models(self) -> list[str]:
        return [info.name for info in self._upstream.models()]

    async def transcribe(self, request: OcrRequest) -> OcrAnswer:
        data = await self._upstream.chat(request.model_dump(exclude_none=True, exclude={"stream"}))
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise UpstreamError("upstream answered without choices[0].message.content") from exc
        if not isinstance(content, str):
            raise UpstreamError(f"upstream's message content is {type(content).__name__}, not text")
        answer_id, created = data.get("id"), data.get("created")
        return ocr_answer(answer_id if isinstance(answer_id, str) else f"chatcmpl-{secrets.token_hex(12)}",
                          created if isinstance(created, int) else int(time.time()), request.model, content)
