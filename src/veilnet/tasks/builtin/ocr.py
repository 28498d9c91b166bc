"""OCR as a task (:mod:`veilnet.tasks.ocr`): apps call chat completions with an image and the OCR model's
name, so the gateway serves it on ``/v1/chat/completions`` (routed by model); miners serve it on
``/v1/tasks/ocr`` with RapidOCR (PP-OCRv4, CPU). Challenges are pictures the validator draws; quality is
1 - character error rate against the text it drew. Organic answers are compared with the validator's own
RapidOCR reading of the same image (:func:`~veilnet.tasks.ocr.verify_ocr_organic`)."""

from __future__ import annotations

import asyncio
import random
from typing import ClassVar

from pydantic import BaseModel, JsonValue

from veilnet.protocol import paths
from veilnet.tasks.interface import (
    Challenge,
    ChallengeTools,
    EngineHandler,
    HandlerTools,
    Task,
    TaskHandler,
    VerifyTools,
    own_reading,
)
from veilnet.tasks.ocr import (
    OCR_MODEL,
    OcrAnswer,
    OcrChallenge,
    OcrRequest,
    generate_ocr_challenge,
    ocr_units,
    verify_ocr_answer,
    verify_ocr_organic,
)
from veilnet.tasks.verdict import Verdict, failed

__all__ = ["OcrTask"]


class _OwnReader:
    """The :class:`~veilnet.tasks.ocr.OcrReader` the organic verifier asks: the validator's own OCR handler."""

    def __init__(self, handler: TaskHandler) -> None:
        self._handler = handler

    async def transcribe(self, request: OcrRequest) -> OcrAnswer:
        return await own_reading(self._handler, request, OcrAnswer)


class OcrTask(Task[OcrRequest, OcrAnswer]):
    name: ClassVar[str] = "ocr"
    request_type: ClassVar[type[BaseModel]] = OcrRequest
    answer_type: ClassVar[type[BaseModel]] = OcrAnswer
    default_model: ClassVar[str] = OCR_MODEL
    unit: ClassVar[str] = "image"
    route: ClassVar[str] = paths.CHAT_COMPLETIONS
    audits_organic: ClassVar[bool] = True
    organic_engine: ClassVar[bool] = True

    def units(self, request: OcrRequest) -> float:
        return ocr_units(request)

    async def challenge(self, tools: ChallengeTools) -> Challenge[OcrRequest]:
        # a picture takes a few hundredths of a second to draw: off the event loop, with a generator of its own
        # seeded from the tools'
        drawn = await asyncio.to_thread(generate_ocr_challenge, random.Random(tools.rng.getrandbits(64)),
                                        model=tools.model)
        return Challenge(drawn.request, drawn.truth)

    async def verify(self, request: OcrRequest, truth: JsonValue, answer: object, tools: VerifyTools) -> Verdict:
        if not isinstance(truth, str):
            return failed("an OCR challenge without its text cannot be verified", code="no_truth")
        return verify_ocr_answer(OcrChallenge(request, truth), answer)

    async def verify_organic(self, request: OcrRequest, answer: object, tools: VerifyTools) -> Verdict:
        return await verify_ocr_organic(_OwnReader(await self.organic_handler(tools)), request, answer)

    def handler(self, tools: HandlerTools) -> TaskHandler:
        from veilnet.models.ocr import RapidOcrEngine  # the engine (numpy, onnxruntime) only where it serves

        model = str(tools.options.get("model", OCR_MODEL))
        engine = RapidOcrEngine(model, concurrency=tools.concurrency, queue=tools.queue,
                                         threads=tools.threads)
        return EngineHandler(engine, engine.transcribe)
