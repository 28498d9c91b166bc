"""Page orientation (image -> 0, 90, 180 or 270 degrees): documents, challenges, verifiers, capacity unit.

Scanners, phone captures and fax archives deliver pages on their side or upside down; document pipelines
turn them upright before OCR or layout analysis. A request carries up to 16 images (data URLs or bare
base64); the answer gives each image's angle: how far the page was turned *clockwise*, so turning it back
counter-clockwise by that angle sets it upright. No OpenAI or OpenRouter API covers this, so the route is
veilnet's own, in OpenAI's conventions (``model``, ``data`` in input order, ``index``).

Challenges are pages of prose the validator draws and turns itself (:mod:`veilnet.tasks.render`), so it
knows every angle and runs no model. Quality is accuracy rescaled so that a guess earns nothing:
(accuracy - 0.5) / 0.5, clipped to [0, 1]. Each challenge turns a quarter of its pages by each angle, so
one fixed angle is right exactly a quarter of the time, and telling upright-or-upside-down from sideways by
the direction of the text lines (cheap, no model) about half the time: neither earns anything. The shipped
model reads the validator's pages all but perfectly (120 of 120 measured, docs/tasks.md).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, Protocol

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from veilnet.tasks.corpus import HumanCorpus, default_corpus
from veilnet.tasks.images import png_data_url
from veilnet.tasks.verdict import Verdict, failed

__all__ = [
    "ANGLES",
    "ORIENTATION_MODEL",
    "OrientationAnswer",
    "OrientationChallenge",
    "OrientationClassifier",
    "OrientationRequest",
    "OrientationResult",
    "generate_orientation_challenge",
    "orientation_units",
    "parse_orientation_answer",
    "turn",
    "verify_orientation_answer",
    "verify_orientation_organic",
]

ORIENTATION_MODEL = "PP-LCNet-doc-orientation"
ANGLES: tuple[int, ...] = (0, 90, 180, 270)
MAX_IMAGES = 16
#: Two runs of the same model agree on every page; another honest model may differ on a near-empty page.
MIN_ORGANIC_AGREEMENT = 0.75

Angle = Literal[0, 90, 180, 270]


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrientationRequest(_Document):
    model: str = Field(min_length=1)
    images: list[str] = Field(min_length=1, max_length=MAX_IMAGES)
    user: str | None = None


class OrientationResult(_Document):
    index: int = Field(ge=0)
    angle: Angle


class OrientationAnswer(_Document):
    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    data: list[OrientationResult]

    def angles(self) -> list[int] | str:
        """The angles in input order, or why the indexes are unusable."""
        found = {result.index: int(result.angle) for result in self.data}
        if len(found) != len(self.data) or sorted(found) != list(range(len(found))):
            return "data indexes are not 0..n-1, each once"
        return [found[i] for i in range(len(found))]


class OrientationClassifier(Protocol):
    """What the organic verifier needs of the validator's own classifier."""

    async def classify(self, request: OrientationRequest) -> OrientationAnswer: ...


_TURNS = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}


def turn(picture: Image.Image, angle: int) -> Image.Image:
    """``picture`` turned clockwise by ``angle`` (a multiple of 90)."""
    return picture if angle % 360 == 0 else picture.transpose(_TURNS[angle % 360])


@dataclass(frozen=True)
class OrientationChallenge:
    request: OrientationRequest
    truth: tuple[int, ...]


def generate_orientation_challenge(rng: random.Random, *, model: str = ORIENTATION_MODEL,
                                   rounds: tuple[int, int] = (1, 3),
                                   corpus: HumanCorpus | None = None) -> OrientationChallenge:
    """Pages of prose drawn by the validator, 4, 8 or 12 of them, each angle on a quarter of them in random
    order, so a fixed answer is right exactly a quarter of the time (pure given ``rng``)."""
    from veilnet.tasks.render import render_page  # numpy and fonts: only where challenges are drawn

    corpus = corpus or default_corpus()
    truth = list(ANGLES) * rng.randint(*rounds)
    rng.shuffle(truth)
    pictures = []
    for angle in truth:
        passage = corpus.passage(rng, 0, rng.randint(20, 140))
        pictures.append(png_data_url(turn(render_page(passage.continuation, rng), angle)))
    return OrientationChallenge(OrientationRequest(model=model, images=pictures), tuple(truth))


def parse_orientation_answer(answer: object, request: OrientationRequest) -> list[int] | str:
    """The answer's angles in input order, or why the answer is unusable (never raises)."""
    try:
        parsed = OrientationAnswer.model_validate(answer)
    except ValidationError as exc:
        return f"malformed orientation answer: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}"
    if parsed.model != request.model:
        return f"answered as model {parsed.model!r}, asked {request.model!r}"
    angles = parsed.angles()
    if isinstance(angles, str):
        return angles
    if len(angles) != len(request.images):
        return f"{len(angles)} angles for {len(request.images)} images"
    return angles


def verify_orientation_answer(challenge: OrientationChallenge, answer: object) -> Verdict:
    """Quality = (accuracy - 0.5) / 0.5 against the known angles, clipped to [0, 1]."""
    angles = parse_orientation_answer(answer, challenge.request)
    if isinstance(angles, str):
        return failed(angles)
    right = sum(got == want for got, want in zip(angles, challenge.truth, strict=True))
    accuracy = right / len(angles)
    quality = min(1.0, max(0.0, (accuracy - 0.5) / 0.5))
    reason = None if right == len(angles) else f"{len(angles) - right} of {len(angles)} pages at the wrong angle"
    return Verdict(ok=True, quality=quality, reason=reason, checked=len(angles))


async def verify_orientation_organic(reference: OrientationClassifier, request: OrientationRequest,
                                     answer: object, *, min_agreement: float = MIN_ORGANIC_AGREEMENT) -> Verdict:
    """An app's answer, checked against the validator's own classification of the same images."""
    angles = parse_orientation_answer(answer, request)
    if isinstance(angles, str):
        return failed(angles)
    expected = (await reference.classify(request)).angles()
    if isinstance(expected, str):
        raise ValueError(f"the reference's own answer is unusable: {expected}")
    share = sum(a == b for a, b in zip(angles, expected, strict=True)) / len(angles)
    if share < min_agreement:
        return failed(f"{share:.0%} of the angles agree with the validator's own reading", quality=share,
                      checked=len(angles))
    return Verdict(ok=True, quality=share, reason=None, checked=len(angles))


def orientation_units(request: OrientationRequest, answer: OrientationAnswer | None = None) -> float:
    """Images classified (fixed by the request)."""
    return float(len(request.images))
