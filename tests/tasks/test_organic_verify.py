"""Organic answers judged through the task interface (``Task.verify_organic``), with the real engines the
scorer opens (:class:`veilnet.validator.engines.OrganicEngines`: each task's own handler, on first use): an honest OCR or
orientation answer passes, also from a miner serving the task under another model's name; a wrong transcript
or wrong angles fail; a malformed answer fails; ai-detection and embeddings cannot judge an answer without a
known truth (None); a scorer without the task's engine raises rather than judging."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from veilnet.tasks.detection import DETECTION_MODEL, DetectionRequest
from veilnet.tasks.interface import TaskHandler, VerifyTools
from veilnet.tasks.ocr import OCR_MODEL, generate_ocr_challenge, ocr_answer
from veilnet.tasks.orientation import (
    ORIENTATION_MODEL,
    OrientationAnswer,
    OrientationResult,
    generate_orientation_challenge,
)
from veilnet.tasks.registry import installed_tasks, task_named
from veilnet.validator.engines import OrganicEngines

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def opened(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OrganicEngines]:
    async with OrganicEngines(installed_tasks(), tmp_path_factory.mktemp("data")) as engines:
        yield engines


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engines(opened: OrganicEngines) -> dict[str, TaskHandler]:
    found = {name: await opened.engine_for(name) for name in ("ocr", "orientation")}
    return {name: engine for name, engine in found.items() if engine is not None}


@pytest.fixture
def tools(opened: OrganicEngines) -> VerifyTools:
    return VerifyTools(rng=random.Random(0), engines=opened)


async def test_the_scorer_opens_engines_only_for_tasks_that_compare_with_one(
        opened: OrganicEngines, engines: dict[str, TaskHandler]) -> None:
    assert opened.tasks == {"ocr", "orientation"}  # chat, embeddings and ai-detection have none
    assert await opened.engine_for("chat") is None and await opened.engine_for("ai-detection") is None
    assert engines["ocr"].models() == [OCR_MODEL] and engines["orientation"].models() == [ORIENTATION_MODEL]
    assert await opened.engine_for("ocr") is engines["ocr"]  # opened once, on first use


def _ocr(text: str, model: str = OCR_MODEL) -> dict[str, Any]:
    return ocr_answer("chatcmpl-x", int(time.time()), model, text).model_dump()


async def test_ocr_honest_answers_pass_and_wrong_transcripts_fail(engines: dict[str, TaskHandler],
                                                                  tools: VerifyTools) -> None:
    task = task_named("ocr")
    drawn = [generate_ocr_challenge(random.Random(seed)) for seed in (1, 2)]
    readings = [(await engines["ocr"].serve(d.request)).model_dump(mode="json") for d in drawn]
    for index, challenge in enumerate(drawn):
        request = challenge.request.model_dump(mode="json", exclude_unset=True)
        honest = await task.verify_organic_json(request, readings[index], tools)
        assert honest is not None and honest.ok and honest.quality == 1.0
        for wrong in (_ocr("Thank you for your request."), _ocr(""), readings[1 - index]):  # canned, empty, cached
            verdict = await task.verify_organic_json(request, wrong, tools)
            assert verdict is not None and not verdict.ok and verdict.reason, wrong
        malformed = await task.verify_organic_json(request, {"choices": "none"}, tools)
        assert malformed is not None and not malformed.ok


async def test_ocr_under_another_model_name_is_read_by_the_scorers_own_model(engines: dict[str, TaskHandler],
                                                                             tools: VerifyTools) -> None:
    """A miner may serve OCR under its own model's name: the scorer reads the image with the model it holds."""
    task = task_named("ocr")
    challenge = generate_ocr_challenge(random.Random(3), model="acme-ocr-large")
    reading = await engines["ocr"].serve(challenge.request.model_copy(update={"model": OCR_MODEL}))
    honest = _ocr(reading.model_dump()["choices"][0]["message"]["content"], model="acme-ocr-large")
    verdict = await task.verify_organic(challenge.request, honest, tools)
    assert verdict is not None and verdict.ok and verdict.quality == 1.0
    garbage = await task.verify_organic(challenge.request, _ocr("zzzz qqqq", model="acme-ocr-large"), tools)
    assert garbage is not None and not garbage.ok


def _angles(angles: list[int], model: str = ORIENTATION_MODEL) -> dict[str, Any]:
    return OrientationAnswer(id="o", created=int(time.time()), model=model, data=[
        OrientationResult(index=i, angle=a) for i, a in enumerate(angles)]).model_dump()  # type: ignore[arg-type]


async def test_orientation_honest_answers_pass_and_wrong_angles_fail(engines: dict[str, TaskHandler],
                                                                     tools: VerifyTools) -> None:
    task = task_named("orientation")
    challenge = generate_orientation_challenge(random.Random(7), rounds=(1, 1))
    request = challenge.request.model_dump(mode="json", exclude_unset=True)
    reading = (await engines["orientation"].serve(challenge.request)).model_dump(mode="json")
    assert [item["angle"] for item in reading["data"]] == list(challenge.truth)  # the engine reads them right
    honest = await task.verify_organic_json(request, reading, tools)
    assert honest is not None and honest.ok and honest.quality == 1.0
    for wrong in ([(a + 90) % 360 for a in challenge.truth], [0] * len(challenge.truth)):
        verdict = await task.verify_organic_json(request, _angles(wrong), tools)
        assert verdict is not None and not verdict.ok and "agree" in (verdict.reason or ""), wrong
    short = await task.verify_organic_json(request, _angles(list(challenge.truth)[:-1]), tools)
    assert short is not None and not short.ok


async def test_tasks_without_a_truth_to_check_against_return_none(tools: VerifyTools) -> None:
    detection = task_named("ai-detection")
    request = DetectionRequest(model=DETECTION_MODEL, input=["An app's own text, whoever wrote it."])
    answer = {"id": "d", "object": "list", "created": 1, "model": DETECTION_MODEL,
              "results": [{"index": 0, "ai_probability": 0.01}]}
    assert await detection.verify_organic(request, answer, tools) is None
    assert not detection.audits_organic and not detection.organic_engine
    assert await task_named("embeddings").verify_organic_json(
        {"model": "m", "input": "text"}, {"data": []}, tools) is None


async def test_a_scorer_without_the_tasks_engine_raises_instead_of_judging() -> None:
    request = generate_ocr_challenge(random.Random(1)).request
    with pytest.raises(RuntimeError, match="no ocr engine"):
        await task_named("ocr").verify_organic(request, _ocr("anything"), VerifyTools())
