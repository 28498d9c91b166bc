"""OCR with the real PP-OCRv4 models (RapidOCR): honest answers to the validator's pictures pass; a constant
answer, an answer cached from another challenge and a cheaper reading (the picture shrunk, or recognition
without text detection) fail or score clearly less; organic answers are checked against the validator's own
reading; bad images and full engines are refused with typed errors; the upstream engine speaks to an
OpenAI-compatible server over loopback HTTP, and the openai SDK's request parses as an OcrRequest."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import numpy as np
import openai
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tests.conftest import serve_asgi

from veilnet.errors import InvalidRequest, NotFound, Overloaded, PayloadTooLarge
from veilnet.models.ocr import OcrUpstreamEngine, RapidOcrEngine, reading_order
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.tasks.images import ImageLimits, decode_image, png_data_url
from veilnet.tasks.ocr import (
    OCR_MODEL,
    OcrChallenge,
    OcrRequest,
    agreement,
    character_error_rate,
    generate_ocr_challenge,
    ocr_answer,
    ocr_units,
    verify_ocr_answer,
    verify_ocr_organic,
)

SEEDS = range(5)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine() -> AsyncIterator[RapidOcrEngine]:
    async with RapidOcrEngine(concurrency=1) as opened:
        yield opened


@pytest.fixture(scope="module")
def challenges() -> list[OcrChallenge]:
    return [generate_ocr_challenge(random.Random(seed)) for seed in SEEDS]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def honest(engine: RapidOcrEngine, challenges: list[OcrChallenge]) -> list[dict[str, object]]:
    return [(await engine.transcribe(challenge.request)).model_dump() for challenge in challenges]


def _answer(text: str, model: str = OCR_MODEL) -> dict[str, object]:
    return ocr_answer("chatcmpl-x", int(time.time()), model, text).model_dump()


async def test_honest_answers_pass_with_high_quality(challenges: list[OcrChallenge],
                                                     honest: list[dict[str, object]]) -> None:
    verdicts = [verify_ocr_answer(challenge, answer) for challenge, answer in zip(challenges, honest, strict=True)]
    assert all(v.ok for v in verdicts), verdicts
    assert sum(v.quality for v in verdicts) / len(verdicts) > 0.95
    assert all(v.checked == len("".join(c.truth.split())) for v, c in zip(verdicts, challenges, strict=True))


async def test_constant_and_empty_answers_fail(challenges: list[OcrChallenge]) -> None:
    for constant in ("", "the", "Lorem ipsum dolor sit amet 12345", "\n"):
        verdicts = [verify_ocr_answer(challenge, _answer(constant)) for challenge in challenges]
        assert not any(v.ok for v in verdicts), (constant, verdicts)
        assert all(v.quality < 0.5 for v in verdicts)


async def test_an_answer_cached_from_another_challenge_fails(challenges: list[OcrChallenge],
                                                             honest: list[dict[str, object]]) -> None:
    for index, challenge in enumerate(challenges):
        other = (index + 1) % len(challenges)
        assert not verify_ocr_answer(challenge, honest[other]).ok  # the miner's own reading of another picture
        assert not verify_ocr_answer(challenge, _answer(challenges[other].truth)).ok  # a perfect one, even


async def test_a_cheaper_reading_scores_clearly_less(engine: RapidOcrEngine, challenges: list[OcrChallenge],
                                                     honest: list[dict[str, object]]) -> None:
    """Shrinking the picture to a third (a ninth of the pixels to process), or recognising the whole picture
    as one line without detecting text boxes first, costs a miner less and reads worse."""
    honest_quality = [verify_ocr_answer(c, a).quality for c, a in zip(challenges, honest, strict=True)]
    shrunk, undetected = [], []
    for challenge in challenges:
        picture = decode_image(challenge.request.image, param="image")
        small = picture.resize((max(8, picture.width // 3), max(8, picture.height // 3)))
        shrunk.append(verify_ocr_answer(challenge, _answer(await engine.read(small))).quality)
        result, _ = await engine.on_recogniser(
            lambda reader, picture=picture: reader(np.asarray(picture)[:, :, ::-1], use_det=False, use_cls=False))
        text = " ".join(str(item[0]) for item in result or [])
        undetected.append(verify_ocr_answer(challenge, _answer(text)).quality)
    assert sum(shrunk) / len(shrunk) < sum(honest_quality) / len(honest_quality) - 0.2, shrunk
    assert sum(undetected) / len(undetected) < sum(honest_quality) / len(honest_quality) - 0.2, undetected


async def test_malformed_answers_fail_with_a_reason_never_raise(challenges: list[OcrChallenge]) -> None:
    challenge = challenges[0]
    good = _answer(challenge.truth)
    assert verify_ocr_answer(challenge, good).ok and verify_ocr_answer(challenge, good).quality == 1.0
    hostile: list[object] = [
        None, 17, "text", [], {}, {**good, "model": "other-ocr"}, {**good, "choices": []},
        {**good, "choices": [{"message": {"content": None}}]}, {**good, "choices": [{"message": {"content": 5}}]},
        {**good, "choices": [good["choices"][0]] * 2}, {**good, "extra": 1}, {**good, "created": "now"},
    ]
    for answer in hostile:
        verdict = verify_ocr_answer(challenge, answer)
        assert not verdict.ok and verdict.reason, answer
    assert "answered as model 'other-ocr'" in (verify_ocr_answer(challenge, hostile[5]).reason or "")


async def test_character_error_rate_ignores_whitespace_only() -> None:
    assert character_error_rate("ab cd\nef", "abcd ef") == 0.0
    assert character_error_rate("abcd", "abXd") == 0.25
    assert character_error_rate("abcd", "") == 1.0
    assert agreement("ab cd", "abcd") == 1.0 and agreement("abcd", "wxyz") == 0.0


async def test_reading_order_rebuilds_tilted_lines() -> None:
    """Boxes of one tilted line sit at different heights; the page's tilt is undone before grouping."""
    def box(x: float, y: float, w: float, h: float, slope: float) -> list[list[float]]:
        return [[x, y], [x + w, y + w * slope], [x + w, y + w * slope + h], [x, y + h]]
    slope = 0.05  # ~3 degrees: 300 px along a line drops 15 px, more than half a 20 px box
    boxes = [(box(300, 115, 100, 20, slope), "C"), (box(0, 100, 100, 20, slope), "A"),
             (box(0, 160, 100, 20, slope), "D"), (box(150, 107, 100, 20, slope), "B")]
    assert reading_order(boxes) == "A B C\nD"
    assert reading_order([]) == ""


async def test_organic_answers_are_checked_against_the_validators_own_reading(
        engine: RapidOcrEngine, challenges: list[OcrChallenge], honest: list[dict[str, object]]) -> None:
    async with RapidOcrEngine(concurrency=1, detection_side=1280) as other:
        for index, challenge in enumerate(challenges[:2]):
            another_honest = (await other.transcribe(challenge.request)).model_dump()
            assert (await verify_ocr_organic(engine, challenge.request, another_honest)).ok
            assert (await verify_ocr_organic(engine, challenge.request, honest[index])).quality == 1.0
            canned = await verify_ocr_organic(engine, challenge.request, _answer("Thank you for your request."))
            assert not canned.ok
            cached = await verify_ocr_organic(engine, challenge.request, honest[(index + 1) % len(honest)])
            assert not cached.ok


async def test_engine_refuses_bad_images_and_unknown_models(engine: RapidOcrEngine) -> None:
    def request(url: str, model: str = OCR_MODEL) -> OcrRequest:
        return OcrRequest.model_validate({"model": model, "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]})
    with pytest.raises(InvalidRequest) as caught:
        await engine.transcribe(request("https://example.com/page.png"))
    assert caught.value.code == "remote_image_refused"
    with pytest.raises(InvalidRequest):
        await engine.transcribe(request("data:image/png;base64,bm90IGFuIGltYWdl"))
    with pytest.raises(NotFound):
        await engine.transcribe(request("data:image/png;base64,AAAA", model="gpt-4o"))
    from PIL import Image
    async with RapidOcrEngine(concurrency=1, limits=ImageLimits(max_pixels=10_000)) as small:
        with pytest.raises(PayloadTooLarge):
            await small.transcribe(request(png_data_url(Image.new("RGB", (200, 200), "white"))))
    with pytest.raises(ValueError, match="exactly one image_url"):
        OcrRequest.model_validate({"model": OCR_MODEL, "messages": [{"role": "user", "content": "hello"}]})


async def test_a_full_engine_refuses_at_once(challenges: list[OcrChallenge]) -> None:
    async with RapidOcrEngine(concurrency=1, queue=0) as engine:
        results = await asyncio.gather(*(engine.transcribe(challenges[0].request) for _ in range(2)),
                                       return_exceptions=True)
    assert sum(isinstance(r, Overloaded) for r in results) == 1
    assert sum(not isinstance(r, BaseException) for r in results) == 1


async def test_units_are_images_fixed_by_the_request(challenges: list[OcrChallenge]) -> None:
    assert ocr_units(challenges[0].request) == 1.0
    assert ocr_units(challenges[0].request, ocr_answer("x", 0, OCR_MODEL, "a" * 10_000)) == 1.0


async def test_challenges_vary_and_repeat_for_a_seed() -> None:
    first, again = generate_ocr_challenge(random.Random(11)), generate_ocr_challenge(random.Random(11))
    assert first == again
    truths = {generate_ocr_challenge(random.Random(seed)).truth for seed in range(30)}
    assert len(truths) == 30


def _ocr_server(engine: RapidOcrEngine) -> Starlette:
    """An OpenAI-compatible chat-completions server that does OCR (what an upstream would be)."""
    async def completions(request: Request) -> JSONResponse:
        body = await request.json()
        answer = await engine.transcribe(OcrRequest.model_validate(body))
        return JSONResponse({**answer.model_dump(), "usage": {"prompt_tokens": 0, "completion_tokens": 0,
                                                                "total_tokens": 0}})
    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


async def test_upstream_engine_and_the_openai_sdk_over_loopback(engine: RapidOcrEngine,
                                                                challenges: list[OcrChallenge],
                                                                honest: list[dict[str, object]]) -> None:
    challenge = challenges[0]
    async with serve_asgi(_ocr_server(engine)) as base:
        async with OcrUpstreamEngine(OpenAIUpstreamEngine(base + "/v1", [OCR_MODEL])) as upstream:
            assert upstream.models() == [OCR_MODEL]
            relayed = await upstream.transcribe(challenge.request)
        assert verify_ocr_answer(challenge, relayed.model_dump()).ok
        assert relayed.transcript == honest[0]["choices"][0]["message"]["content"]  # type: ignore[index]
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused")
        try:
            completion = await client.chat.completions.create(model=OCR_MODEL, messages=[{"role": "user", "content": [
                {"type": "text", "text": "Transcribe this."},
                {"type": "image_url", "image_url": {"url": challenge.request.image, "detail": "high"}},
            ]}])
        finally:
            await client.close()
        assert completion.choices[0].message.content == relayed.transcript
