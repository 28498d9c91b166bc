"""AI-content detection (text -> probability that a model wrote it): documents, challenges, verifier, unit.

The request and answer follow OpenAI's moderations endpoint, the one OpenAI-shaped API that scores texts
(``input``: a string or a list of strings; ``results`` in input order), with a probability per text instead
of category scores. No OpenAI or OpenRouter API detects machine text, so the route is veilnet's own.

Challenges know their truth by construction. Each text starts at a random point of a human-written book: the
validator takes a random prefix, and either the book's own next words (human) or its own models' continuation
of that prefix (machine: SmolLM2 or Gemma, at a random temperature, top_p and seed) cut to the same random
length, both with single spaces and straight quotes. Both kinds therefore share topic, period and style,
begin mid-flow and end mid-sentence, so what tells them apart is how a model writes, not what the text is about or how long it is. Quality is the Brier skill
score against answering 0.5: 1 - Brier / 0.25, clipped to [0, 1]; a constant 0.5 (or any constant, or an
answer to another challenge) earns nothing in expectation, a confident wrong answer less than nothing.

The human passages come from :class:`~veilnet.tasks.corpus.HumanCorpus`. Give the generator a private corpus
in production: a miner holding the public one can look the human passages up (docs/tasks.md).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from veilnet.errors import UpstreamError
from veilnet.tasks.corpus import HumanCorpus, default_corpus
from veilnet.tasks.verdict import Verdict, failed

__all__ = [
    "DETECTION_MODEL",
    "WRITERS",
    "DetectionAnswer",
    "DetectionChallenge",
    "DetectionRequest",
    "DetectionResult",
    "TextWriter",
    "brier_score",
    "detection_units",
    "generate_detection_challenge",
    "normalise_text",
    "parse_detection_answer",
    "verify_detection_answer",
]

DETECTION_MODEL = "smollm2-token-statistics"
#: The validator's models that write the machine half (catalog names; both served by LlamaCppEngine).
WRITERS = ("SmolLM2-135M-Instruct", "gemma-3-270m")
MAX_TEXTS = 16
MAX_CHARACTERS = 20_000
_STRAIGHT = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


def normalise_text(text: str) -> str:
    """Single spaces and straight quotes, as both kinds of challenge text are shown: a book's typography
    (curly quotes, line breaks) against a model's would otherwise tell them apart without reading them."""
    return " ".join(text.translate(_STRAIGHT).split())


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DetectionRequest(_Document):
    model: str = Field(min_length=1)
    input: str | list[str]
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _bounded(cls, value: str | list[str]) -> str | list[str]:
        texts = value if isinstance(value, list) else [value]
        if not 1 <= len(texts) <= MAX_TEXTS:
            raise ValueError(f"input holds 1 to {MAX_TEXTS} texts ({len(texts)} given)")
        for index, text in enumerate(texts):
            if not text.strip():
                raise ValueError(f"input[{index}] is empty")
            if len(text) > MAX_CHARACTERS:
                raise ValueError(f"input[{index}] has {len(text)} characters; at most {MAX_CHARACTERS}")
        return value

    def texts(self) -> list[str]:
        return self.input if isinstance(self.input, list) else [self.input]


class DetectionResult(_Document):
    index: int = Field(ge=0)
    ai_probability: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)


class DetectionAnswer(_Document):
    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    results: list[DetectionResult]


class TextWriter(Protocol):
    """The validator's own models: an OpenAI-shaped text completion (LlamaCppEngine.completion)."""

    async def completion(self, request: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class DetectionChallenge:
    request: DetectionRequest
    truth: tuple[bool, ...]  # True: a model wrote it
    writers: tuple[str | None, ...]  # which model, for the record (None: human)


async def _continue(writer: TextWriter, rng: random.Random, prefix: str, words: int,
                    writers: Sequence[str] = WRITERS) -> tuple[str, str]:
    """A model's continuation of ``prefix``, cut to ``words`` words (a few tries: a sample may stop early)."""
    for _ in range(4):
        name = rng.choice(writers)
        answer = await writer.completion({
            "model": name, "prompt": prefix, "max_tokens": 2 * words + 16, "seed": rng.getrandbits(31),
            "temperature": round(rng.uniform(0.5, 1.2), 2), "top_p": round(rng.uniform(0.85, 1.0), 2),
        })
        try:
            text = str(answer["choices"][0]["text"])
        except (KeyError, IndexError, TypeError) as exc:
            raise UpstreamError("the writer model answered without choices[0].text") from exc
        found = normalise_text(text).split()
        if len(found) >= words:
            return " ".join(found[:words]), name
    raise UpstreamError(f"the writer models stopped before {words} words four times")


async def generate_detection_challenge(rng: random.Random, writer: TextWriter, *, model: str = DETECTION_MODEL,
                                       texts: tuple[int, int] = (2, 6), words: tuple[int, int] = (30, 80),
                                       corpus: HumanCorpus | None = None,
                                       writer_models: Sequence[str] = WRITERS) -> DetectionChallenge:
    """Human and machine continuations of random passages, each a fair coin (pure but for the models);
    ``writer_models``: the models (names ``writer`` serves) that write the machine half."""
    corpus = corpus or default_corpus()
    inputs: list[str] = []
    truth: list[bool] = []
    writers: list[str | None] = []
    for _ in range(rng.randint(*texts)):
        length = rng.randint(*words)
        passage = corpus.passage(rng, rng.randint(24, 80), length)
        if rng.random() < 0.5:
            text, name = await _continue(writer, rng, passage.prefix, length, writer_models)
            inputs.append(text)
            truth.append(True)
            writers.append(name)
        else:
            inputs.append(normalise_text(passage.continuation))
            truth.append(False)
            writers.append(None)
    return DetectionChallenge(DetectionRequest(model=model, input=inputs), tuple(truth), tuple(writers))


def parse_detection_answer(answer: object, request: DetectionRequest) -> list[float] | str:
    """The probabilities in input order, or why the answer is unusable (never raises)."""
    try:
        parsed = DetectionAnswer.model_validate(answer)
    except ValidationError as exc:
        return f"malformed detection answer: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}"
    if parsed.model != request.model:
        return f"answered as model {parsed.model!r}, asked {request.model!r}"
    found = {result.index: result.ai_probability for result in parsed.results}
    expected = len(request.texts())
    if len(found) != len(parsed.results) or sorted(found) != list(range(expected)):
        return f"results must have indexes 0..{expected - 1}, each once"
    return [found[i] for i in range(expected)]


def brier_score(probabilities: list[float], truth: tuple[bool, ...] | list[bool]) -> float:
    """Mean squared distance between each probability and what is true (1 machine, 0 human)."""
    return math.fsum((p - float(t)) ** 2 for p, t in zip(probabilities, truth, strict=True)) / len(truth)


def verify_detection_answer(challenge: DetectionChallenge, answer: object) -> Verdict:
    """Quality = Brier skill against a constant 0.5: 1 - Brier / 0.25, clipped to [0, 1]."""
    probabilities = parse_detection_answer(answer, challenge.request)
    if isinstance(probabilities, str):
        return failed(probabilities)
    score = brier_score(probabilities, challenge.truth)
    quality = min(1.0, max(0.0, 1.0 - score / 0.25))
    return Verdict(ok=True, quality=quality, reason=f"Brier score {score:.3f}", checked=len(probabilities))


def detection_units(request: DetectionRequest, answer: DetectionAnswer | None = None) -> float:
    """Thousands of characters classified (fixed by the request: the work grows with the text's length)."""
    return sum(len(text) for text in request.texts()) / 1000.0
