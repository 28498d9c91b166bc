"""AI-content detection as a task (:mod:`veilnet.tasks.detection`), on veilnet's own route
``/v1/ai-detection``; miners serve the baseline detector on SmolLM2's token statistics. Challenges are human
passages and the validator's own models' continuations of them; quality is the Brier skill score."""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

from pydantic import BaseModel, JsonValue

from veilnet.errors import ConfigError
from veilnet.models.detection import TokenStatsDetectionEngine
from veilnet.models.textstats import LlamaCppTokenScorer
from veilnet.tasks.detection import (
    DETECTION_MODEL,
    WRITERS,
    DetectionAnswer,
    DetectionChallenge,
    DetectionRequest,
    detection_units,
    generate_detection_challenge,
    verify_detection_answer,
)
from veilnet.tasks.interface import Challenge, ChallengeTools, HandlerTools, Task, TaskHandler, VerifyTools
from veilnet.tasks.verdict import Verdict, failed

__all__ = ["DETECTION_ROUTE", "DetectionHandler", "DetectionTask"]

DETECTION_ROUTE = "/v1/ai-detection"


class DetectionHandler:
    """The baseline detector and the token scorer it owns, behind the task interface."""

    def __init__(self, scorer: LlamaCppTokenScorer, model: str) -> None:
        self._scorer = scorer
        self._stack = contextlib.AsyncExitStack()
        self.engine = TokenStatsDetectionEngine(scorer, model=model)

    async def __aenter__(self) -> DetectionHandler:
        await self._stack.enter_async_context(self._scorer)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    def models(self) -> list[str]:
        return self.engine.models()

    async def serve(self, request: DetectionRequest) -> DetectionAnswer:
        return await self.engine.detect(request)


def _writers(engine: Any) -> tuple[str, ...]:
    """The writer models the validator's engine serves."""
    served = {getattr(info, "name", info) for info in engine.models()} if engine is not None else set()
    return tuple(name for name in WRITERS if name in served)


class DetectionTask(Task[DetectionRequest, DetectionAnswer]):
    name: ClassVar[str] = "ai-detection"
    request_type: ClassVar[type[BaseModel]] = DetectionRequest
    answer_type: ClassVar[type[BaseModel]] = DetectionAnswer
    default_model: ClassVar[str] = DETECTION_MODEL
    unit: ClassVar[str] = "1k characters"
    path: ClassVar[str] = DETECTION_ROUTE

    def units(self, request: DetectionRequest) -> float:
        return detection_units(request)

    async def challenge(self, tools: ChallengeTools) -> Challenge[DetectionRequest]:
        writers = _writers(tools.engine)
        if not writers:
            raise ConfigError(f"AI-content detection challenges need a validator engine serving one of "
                              f"{', '.join(WRITERS)} (validator.reference_models)")
        drawn = await generate_detection_challenge(tools.rng, tools.engine, model=tools.model,
                                                  writer_models=writers)
        return Challenge(drawn.request, list(drawn.truth))

    async def verify(self, request: DetectionRequest, truth: JsonValue, answer: object,
                     tools: VerifyTools) -> Verdict:
        if not isinstance(truth, list) or not all(isinstance(t, bool) for t in truth):
            return failed("a detection challenge without its truth cannot be verified", code="no_truth")
        flags = tuple(bool(t) for t in truth)
        return verify_detection_answer(DetectionChallenge(request, flags, (None,) * len(flags)), answer)

    def handler(self, tools: HandlerTools) -> TaskHandler:
        scorer = LlamaCppTokenScorer(str(tools.options.get("scorer_model", "SmolLM2-135M-Instruct")),
                                     cache_dir=tools.data_dir / "models")
        return DetectionHandler(scorer, str(tools.options.get("model", DETECTION_MODEL)))
