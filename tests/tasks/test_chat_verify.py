"""The chat verifier with the real models: honest SmolLM2 answers pass; Gemma's answers and lies fail."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.tasks.chat import verify_chat_answer

SMOL = "SmolLM2-135M-Instruct"
REQUEST = {"model": SMOL, "messages": [{"role": "user", "content": "Describe the sea in two sentences."}],
           "max_tokens": 24, "temperature": 0.7, "seed": 11, "logprobs": True, "top_logprobs": 1}

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LlamaCppEngine, LlamaCppEngine]]:
    cache = Path(tmp_path_factory.mktemp("models"))
    reference = LlamaCppEngine([SMOL], cache_dir=cache, concurrency=1)
    other = LlamaCppEngine(["gemma-3-270m"], cache_dir=cache, concurrency=1)
    reference.load()
    other.load()
    yield reference, other


async def test_honest_answer_passes(engines: tuple[LlamaCppEngine, LlamaCppEngine]) -> None:
    reference, _ = engines
    answer = await reference.chat(copy.deepcopy(REQUEST))
    verdict = await verify_chat_answer(reference, REQUEST, answer, rng=random.Random(1))
    assert verdict.ok, verdict.reason
    assert verdict.quality >= 0.75 and verdict.checked == 8


async def test_greedy_answer_must_match_argmax(engines: tuple[LlamaCppEngine, LlamaCppEngine]) -> None:
    reference, _ = engines
    request = {**REQUEST, "temperature": 0.0}
    answer = await reference.chat(copy.deepcopy(request))
    assert (await verify_chat_answer(reference, request, answer, rng=random.Random(2))).ok


async def test_answer_from_another_model_fails(engines: tuple[LlamaCppEngine, LlamaCppEngine]) -> None:
    reference, gemma = engines
    answer = await gemma.completion({"model": "gemma-3-270m", "prompt": "The sea is", "max_tokens": 24,
                                     "temperature": 0.7, "seed": 3, "logprobs": 1})
    # a cheater dresses Gemma's text up as a SmolLM2 chat answer
    content = answer["choices"][0]["text"]
    forged = {
        "model": SMOL,
        "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": content},
                     "logprobs": {"content": [{"token": t["token"], "logprob": t["logprob"]}
                                              for t in answer["choices"][0]["logprobs"]["content"]]}}],
        "usage": {"prompt_tokens": (await reference.chat({**REQUEST, "max_tokens": 1}))["usage"]["prompt_tokens"],
                  "completion_tokens": len(answer["choices"][0]["logprobs"]["content"])},
    }
    verdict = await verify_chat_answer(reference, REQUEST, forged, rng=random.Random(3))
    assert not verdict.ok
    assert verdict.reason


async def test_inflated_usage_and_wrong_model_fail(engines: tuple[LlamaCppEngine, LlamaCppEngine]) -> None:
    reference, _ = engines
    answer = await reference.chat(copy.deepcopy(REQUEST))
    inflated = copy.deepcopy(answer)
    inflated["usage"]["completion_tokens"] += 10
    verdict = await verify_chat_answer(reference, REQUEST, inflated)
    assert not verdict.ok and "completion tokens" in (verdict.reason or "")
    inflated = copy.deepcopy(answer)
    inflated["usage"]["prompt_tokens"] += 50
    verdict = await verify_chat_answer(reference, REQUEST, inflated)
    assert not verdict.ok and "prompt tokens" in (verdict.reason or "")
    renamed = {**copy.deepcopy(answer), "model": "gemma-3-270m"}
    assert not (await verify_chat_answer(reference, REQUEST, renamed)).ok
