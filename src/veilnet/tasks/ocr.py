"""OCR (image -> text): typed documents, the challenge generator, the verifiers and the capacity unit.

Apps ask in OpenAI's chat-completions shape: one user message whose content holds an ``image_url`` part
(a data URL or bare base64; remote URLs are refused) and optionally a ``text`` part, naming the OCR model
like any other model; the answer is a chat completion whose message content is the transcript, lines
separated by newlines. That is the shape the openai SDK, OpenRouter and vLLM vision models accept, so an
app that already sends images to a vision model switches to OCR by changing the model name (docs/tasks.md).
A text part is an instruction to a vision model; an OCR model transcribes all the text it finds.

Challenges are pictures the validator draws itself (:mod:`veilnet.tasks.render`), so it knows the truth and
runs no model: quality is 1 - character error rate, whitespace ignored (engines differ in where they break
lines and whether they keep a space between boxes, not in which characters they read). An organic answer
has no known truth; :func:`verify_ocr_organic` compares it with the validator's own OCR of the same image.
Edit distances come from rapidfuzz (C++, well kept) rather than a hand-written Levenshtein; it is imported
where answers are scored, so a gateway routing the task does not load it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from veilnet.tasks.corpus import HumanCorpus, default_corpus
from veilnet.tasks.images import png_data_url
from veilnet.tasks.verdict import Verdict, failed

__all__ = [
    "OCR_MODEL",
    "ImagePart",
    "ImageUrl",
    "OcrAnswer",
    "OcrChallenge",
    "OcrChoice",
    "OcrMessage",
    "OcrReader",
    "OcrReply",
    "OcrRequest",
    "TextPart",
    "agreement",
    "character_error_rate",
    "generate_ocr_challenge",
    "ocr_answer",
    "ocr_units",
    "parse_ocr_answer",
    "verify_ocr_answer",
    "verify_ocr_organic",
]

OCR_MODEL = "PP-OCRv4"
#: Honest PP-OCRv4 answers to the validator's pictures measured far above this (docs/tasks.md); an answer
#: this far from the truth is not a misreading but an answer to another picture, or no reading at all.
MIN_CHALLENGE_QUALITY = 0.5
#: Two honest engines on the same image agree far above this (docs/tasks.md, bench/bench_modalities.py).
MIN_ORGANIC_AGREEMENT = 0.7


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageUrl(_Document):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Document):
    type: Literal["image_url"]
    image_url: ImageUrl


class TextPart(_Document):
    type: Literal["text"]
    text: str


Part = Annotated[ImagePart | TextPart, Field(discriminator="type")]


class OcrMessage(_Document):
    role: Literal["system", "developer", "user"]
    content: str | list[Part]


class OcrRequest(_Document):
    """A chat-completions request carrying exactly one image."""

    model: str = Field(min_length=1)
    messages: list[OcrMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    stream: bool = False
    user: str | None = None

    @model_validator(mode="after")
    def _one_image(self) -> OcrRequest:
        if len(self.images()) != 1:
            raise ValueError(f"an OCR request carries exactly one image_url part ({len(self.images())} given)")
        return self

    def images(self) -> list[str]:
        return [part.image_url.url for message in self.messages if isinstance(message.content, list)
                for part in message.content if isinstance(part, ImagePart)]

    @property
    def image(self) -> str:
        return self.images()[0]


class OcrReply(_Document):
    role: Literal["assistant"] = "assistant"
    content: str


class OcrChoice(_Document):
    index: Literal[0] = 0
    message: OcrReply
    finish_reason: Literal["stop", "length"] = "stop"


class OcrAnswer(_Document):
    """A chat completion whose one choice's content is the transcript."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[OcrChoice] = Field(min_length=1, max_length=1)

    @property
    def transcript(self) -> str:
        return self.choices[0].message.content


def ocr_answer(answer_id: str, created: int, model: str, transcript: str) -> OcrAnswer:
    return OcrAnswer(id=answer_id, created=created, model=model,
                     choices=[OcrChoice(message=OcrReply(content=transcript))])


class OcrReader(Protocol):
    """What the organic verifier needs of the validator's own OCR."""

    async def transcribe(self, request: OcrRequest) -> OcrAnswer: ...


@dataclass(frozen=True)
class OcrChallenge:
    """The request a miner gets, and the text the picture shows (kept by the validator)."""

    request: OcrRequest
    truth: str


def generate_ocr_challenge(rng: random.Random, *, model: str = OCR_MODEL,
                           corpus: HumanCorpus | None = None) -> OcrChallenge:
    """A picture of random text drawn by the validator (pure given ``rng``)."""
    # numpy and fonts load only where challenges are drawn
    from veilnet.tasks.render import random_lines, render_text

    truth = random_lines(rng, (corpus or default_corpus()).vocabulary)
    picture = render_text(truth, rng)
    parts: list[Part] = [ImagePart(type="image_url", image_url=ImageUrl(url=png_data_url(picture)))]
    if rng.random() < 0.5:  # apps often add an instruction; a challenge must look like them
        parts.insert(0, TextPart(type="text", text=rng.choice(_INSTRUCTIONS)))
    request = OcrRequest(model=model, messages=[OcrMessage(role="user", content=parts)])
    return OcrChallenge(request=request, truth=truth)


_INSTRUCTIONS = ("Transcribe the text in this image.", "What does this image say?", "OCR this.",
                 "Extract all text from the picture, line by line.", "Read the text.")
_WHITESPACE = re.compile(r"\s+")


def _squash(text: str) -> str:
    return _WHITESPACE.sub("", text)


def character_error_rate(truth: str, text: str) -> float:
    """Edit distance over the truth's length, whitespace ignored (can exceed 1 for long wrong answers)."""
    from rapidfuzz.distance import Levenshtein  # loaded where answers are scored

    want, got = _squash(truth), _squash(text)
    return Levenshtein.distance(want, got) / max(1, len(want))


def agreement(reference: str, text: str) -> float:
    """1 - edit distance over the longer text, whitespace ignored: 1.0 identical, 0.0 nothing shared."""
    from rapidfuzz.distance import Levenshtein

    return float(Levenshtein.normalized_similarity(_squash(reference), _squash(text)))


def parse_ocr_answer(answer: object, model: str) -> OcrAnswer | str:
    """The answer as a document, or why it is unusable (never raises)."""
    try:
        parsed = OcrAnswer.model_validate(answer)
    except ValidationError as exc:
        return f"malformed OCR answer: {exc.errors()[0]['msg']} at {exc.errors()[0]['loc']}"
    if parsed.model != model:
        return f"answered as model {parsed.model!r}, asked {model!r}"
    return parsed


def verify_ocr_answer(challenge: OcrChallenge, answer: object, *,
                      min_quality: float = MIN_CHALLENGE_QUALITY) -> Verdict:
    """Quality = 1 - CER against the known text; below ``min_quality`` only a cheat answers."""
    parsed = parse_ocr_answer(answer, challenge.request.model)
    if isinstance(parsed, str):
        return failed(parsed)
    quality = max(0.0, 1.0 - character_error_rate(challenge.truth, parsed.transcript))
    checked = len(_squash(challenge.truth))
    if quality < min_quality:
        return failed(f"transcript is {1 - quality:.0%} off the picture's text (character error rate)",
                      quality=quality, checked=checked)
    return Verdict(ok=True, quality=quality, reason=None, checked=checked)


async def verify_ocr_organic(reference: OcrReader, request: OcrRequest, answer: object, *,
                             min_agreement: float = MIN_ORGANIC_AGREEMENT) -> Verdict:
    """An app's answer, checked against the validator's own OCR of the same image."""
    parsed = parse_ocr_answer(answer, request.model)
    if isinstance(parsed, str):
        return failed(parsed)
    expected = (await reference.transcribe(request)).transcript
    if not _squash(expected):
        # The reference sees no text: an answer that is empty too is right; one that reads text is unchecked.
        return Verdict(ok=True, quality=1.0 if not _squash(parsed.transcript) else 0.5, reason=None, checked=0)
    score = agreement(expected, parsed.transcript)
    if score < min_agreement:
        return failed(f"transcript agrees {score:.0%} with the validator's own reading",
                      quality=score, checked=len(_squash(expected)))
    return Verdict(ok=True, quality=score, reason=None, checked=len(_squash(expected)))


def ocr_units(request: OcrRequest, answer: OcrAnswer | None = None) -> float:
    """Images read. Fixed by the request, so no answer can claim more work than was asked for."""
    return float(len(request.images()))

