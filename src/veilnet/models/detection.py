"""The baseline AI-content detector a miner runs: SmolLM2's token statistics through a logistic mapping.

Each text's features (:func:`~veilnet.models.textstats.text_features`: mean log-probability of the next
token, share of first choices, mean entropy of the top choices) go through a logistic regression whose
few numbers were fitted by ``bench/fit_detection.py`` on the validator's own kind of challenges (the script
prints them; they are pasted below). A better detector earns more: the baseline is a floor, not the task.
No upstream variant exists because no common HTTP API serves this task (docs/tasks.md).
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass

from veilnet.errors import NotFound
from veilnet.models.limits import Admission
from veilnet.models.textstats import TextFeatures, TokenScorer, text_features
from veilnet.tasks.detection import DETECTION_MODEL, DetectionAnswer, DetectionRequest, DetectionResult

__all__ = ["BASELINE", "LogisticMapping", "TokenStatsDetectionEngine"]


@dataclass(frozen=True)
class LogisticMapping:
    """P(machine) = sigmoid(intercept + weights . features)."""

    intercept: float
    weights: tuple[float, float, float]

    def probability(self, features: TextFeatures) -> float:
        z = self.intercept + math.fsum(w * x for w, x in zip(self.weights, features.vector(), strict=True))
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


#: Fitted by bench/fit_detection.py on 120 challenge texts (SmolLM2-135M-Instruct Q4_1, 64 positions, top
#: 20). Fitted on half, the other half scored Brier 0.045 (skill 0.82, accuracy 0.93) against 0.250 for 0.5.
BASELINE = LogisticMapping(intercept=3.4142, weights=(10.2760, -0.7336, 14.3074))


class TokenStatsDetectionEngine:
    """Serves ``model`` from a token scorer (owned by the caller). Texts are scored one at a time: the
    scorer has one model slot, and admission control refuses requests beyond ``queue`` waiting."""

    def __init__(self, scorer: TokenScorer, *, model: str = DETECTION_MODEL, mapping: LogisticMapping = BASELINE,
                 queue: int = 8, positions: int = 64) -> None:
        self._scorer = scorer
        self._model = model
        self._mapping = mapping
        self._positions = positions
        self._admission = Admission(1, queue)

    def models(self) -> list[str]:
        return [self._model]

    async def probability(self, text: str) -> float:
        features = await text_features(self._scorer, text, positions=self._positions)
        return self._mapping.probability(features)

    async def detect(self, request: DetectionRequest) -> DetectionAnswer:
        if request.model != self._model:
            raise NotFound(f"model {request.model!r} is not served here; served: {self._model}")
        async with self._admission.slot():
            probabilities = [await self.probability(text) for text in request.texts()]
        return DetectionAnswer(
            id=f"detect-{secrets.token_hex(12)}", created=int(time.time()), model=self._model,
            results=[DetectionResult(index=i, ai_probability=p) for i, p in enumerate(probabilities)],
        )
