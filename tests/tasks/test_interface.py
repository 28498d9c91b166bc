"""The task interface and its registry: veilnet's own tasks found through their entry points, broken plugins
refused with a reason, and each task challenged, answered by its real engine and verified through the
interface alone (the JSON the challenge and answer travel as), with the obvious cheats caught."""

from __future__ import annotations

import json
import random
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from veilnet.errors import ConfigError
from veilnet.protocol import paths
from veilnet.tasks.interface import Challenge, ChallengeTools, HandlerTools, Task, VerifyTools
from veilnet.tasks.registry import ENTRY_POINT_GROUP, installed_tasks, load_tasks, select_tasks, task_named

BUILTIN = {"chat", "embeddings", "ocr", "ai-detection", "orientation"}


def test_veilnets_own_tasks_are_found_through_their_entry_points() -> None:
    tasks = installed_tasks()
    assert BUILTIN <= set(tasks)
    assert all(isinstance(task, Task) and task.name == name for name, task in tasks.items())
    assert tasks["ocr"].gateway_route == paths.CHAT_COMPLETIONS and tasks["ocr"].miner_path == "/v1/tasks/ocr"
    assert tasks["ai-detection"].gateway_route == "/v1/ai-detection"
    assert tasks["chat"].language_model and tasks["chat"].handler(HandlerTools(Path("."))) is None
    assert {name for name, task in tasks.items() if task.language_model} == {"chat", "embeddings"}


@pytest.mark.parametrize(("value", "message"), [
    ("veilnet.tasks.nowhere:Task", "does not load: ModuleNotFoundError"),
    ("veilnet.tasks.verdict:Verdict", "is not a veilnet.tasks.interface.Task"),
    ("veilnet.tasks.builtin.ocr:OcrTask", "calls itself 'ocr'"),
])
def test_a_broken_plugin_is_refused_naming_it(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_tasks([EntryPoint("mine", value, ENTRY_POINT_GROUP)])


def test_two_tasks_of_one_name_are_refused_and_one_seen_twice_is_one() -> None:
    ocr = EntryPoint("ocr", "veilnet.tasks.builtin.ocr:OcrTask", ENTRY_POINT_GROUP)
    assert list(load_tasks([ocr, ocr])) == ["ocr"]
    other = EntryPoint("ocr", "veilnet.tasks.builtin.orientation:OrientationTask", ENTRY_POINT_GROUP)
    with pytest.raises(ConfigError, match="two installed tasks are called 'ocr'"):
        load_tasks([ocr, other])


def test_a_task_not_installed_is_named_with_those_that_are() -> None:
    with pytest.raises(ConfigError, match="no installed task is called 'sentiment'; installed: ai-detection"):
        select_tasks(["chat", "sentiment"])


async def _travelled(task: Task[Any, Any], challenge: Challenge[Any], answer: Any) -> Any:
    """Verify as a scorer does: request, truth and answer as the JSON they travel as through Redis."""
    request = json.loads(json.dumps(challenge.request.model_dump(mode="json", exclude_unset=True)))
    truth = json.loads(json.dumps(challenge.truth))
    return await task.verify_json(request, truth, json.loads(json.dumps(answer)), VerifyTools())


@pytest.mark.parametrize("name", ["orientation", "ocr"])
async def test_image_tasks_answered_by_their_engines_verify_and_cheats_do_not(name: str, tmp_path: Path) -> None:
    task = task_named(name)
    rng = random.Random(11)
    challenges = [await task.challenge(ChallengeTools(rng=rng, model=task.default_model)) for _ in range(3)]
    handler = task.handler(HandlerTools(data_dir=tmp_path, concurrency=1, queue=4, threads=1))
    assert handler is not None
    async with handler:
        answers = [(await handler.serve(c.request)).model_dump(mode="json") for c in challenges]
    for challenge, answer in zip(challenges, answers, strict=True):
        honest = await _travelled(task, challenge, answer)
        assert honest.ok and honest.quality >= 0.9, honest.reason
        assert task.units(challenge.request) >= 1
    # another challenge's (honest) answer, and malformed answers
    cached = await _travelled(task, challenges[1], answers[0])
    assert not cached.ok or cached.quality < 0.5
    for malformed in (None, {}, {**answers[0], "model": "other"}):
        verdict = await _travelled(task, challenges[0], malformed)
        assert not verdict.ok and verdict.reason


async def test_orientation_constant_answers_earn_nothing() -> None:
    task = task_named("orientation")
    challenge = await task.challenge(ChallengeTools(rng=random.Random(5), model=task.default_model))
    for angle in (0, 90, 180, 270):
        answer = {"id": "x", "created": 0, "model": task.default_model,
                  "data": [{"index": i, "angle": angle} for i in range(len(challenge.request.images))]}
        assert (await _travelled(task, challenge, answer)).quality == 0.0


async def test_detection_is_verified_from_the_truth_its_challenge_kept() -> None:
    task = task_named("ai-detection")
    truth = [True, False, True, False]
    request = {"model": task.default_model, "input": ["a", "b", "c", "d"]}

    def answer(probabilities: list[float]) -> dict[str, Any]:
        return {"id": "d", "created": 0, "model": task.default_model,
                "results": [{"index": i, "ai_probability": p} for i, p in enumerate(probabilities)]}

    right = await task.verify_json(request, truth, answer([0.9, 0.1, 0.8, 0.2]), VerifyTools())
    constant = await task.verify_json(request, truth, answer([0.5] * 4), VerifyTools())
    wrong = await task.verify_json(request, truth, answer([0.1, 0.9, 0.1, 0.9]), VerifyTools())
    assert right.ok and right.quality > 0.8
    assert constant.quality == 0.0 and wrong.quality == 0.0
    missing = await task.verify_json(request, None, answer([0.9, 0.1, 0.8, 0.2]), VerifyTools())
    assert not missing.ok and "without its truth" in (missing.reason or "")


async def test_detection_challenges_need_a_writer_model() -> None:
    task = task_named("ai-detection")
    with pytest.raises(ConfigError, match="need a validator engine serving one of"):
        await task.challenge(ChallengeTools(rng=random.Random(1), model=task.default_model, engine=None))


async def test_chat_and_embeddings_challenges_are_their_openai_requests() -> None:
    rng = random.Random(2)
    chat = await task_named("chat").challenge(ChallengeTools(rng=rng, model="SmolLM2-135M-Instruct"))
    sent = chat.request.model_dump(mode="json", exclude_unset=True)
    assert sent["model"] == "SmolLM2-135M-Instruct" and sent["messages"]  # parameters: organic-shaped, streams too
    assert chat.truth is None
    embeddings = await task_named("embeddings").challenge(ChallengeTools(rng=rng, model="SmolLM2-135M-Instruct"))
    assert embeddings.request.model_dump(exclude_unset=True).keys() == {"model", "input"}
    refused = await task_named("embeddings").verify_json(
        embeddings.request.model_dump(), None, {"model": "other", "data": []},
        VerifyTools(reference=object()))
    assert not refused.ok and "asked" in (refused.reason or "")
