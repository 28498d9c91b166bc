"""The embeddings verifier and llama.cpp embeddings with the real models: honest vectors pass (also slightly
perturbed, as another quantisation would give); another text's vector, another model's, lies about usage and
malformed answers fail."""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from veilnet.errors import ConfigError, InvalidRequest, NotFound
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.tasks.challenges import embeddings_texts
from veilnet.tasks.embeddings import cosine, verify_embeddings_answer

SMOL, GEMMA = "SmolLM2-135M-Instruct", "gemma-3-270m"
TEXTS = ["Describe the sea in two sentences.", "The cat sat on the mat.", "Give three facts about owls."]
REQUEST = {"model": SMOL, "input": TEXTS}

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LlamaCppEngine, LlamaCppEngine]]:
    cache = Path(tmp_path_factory.mktemp("models"))
    reference = LlamaCppEngine([SMOL], cache_dir=cache, concurrency=1, embedding_models=[SMOL])
    other = LlamaCppEngine([GEMMA], cache_dir=cache, concurrency=1, embedding_models=[GEMMA])
    reference.load()
    other.load()
    yield reference, other


async def test_llamacpp_embeds_normalised_deterministic_vectors(engines: tuple[LlamaCppEngine, LlamaCppEngine]) -> None:
    reference, _ = engines
    assert [(m.name, m.embeddings) for m in reference.models()] == [(SMOL, True)]
    answer = await reference.embeddings(copy.deepcopy(REQUEST))
    assert answer["model"] == SMOL and answer["usage"]["prompt_tokens"] > len(TEXTS)
    vectors = [item["embedding"] for item in sorted(answer["data"], key=lambda item: item["index"])]
    assert len(vectors) == 3 and {len(v) for v in vectors} == {576}
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-4 for v in vectors)
    alone = await reference.embeddings({"model": SMOL, "input": TEXTS[1]})
    assert cosine(alone["data"][0]["embedding"], vectors[1]) > 0.9999  # batched or alone, the same vector
    assert cosine(vectors[0], vectors[1]) < 0.95  # different texts point elsewhere


async def test_embeddings_do_not_depend_on_concurrency(engines: tuple[LlamaCppEngine, LlamaCppEngine],
                                                       tmp_path: Path) -> None:
    """A miner serving four requests at once embeds exactly what the one-slot reference does (several inputs
    decoded side by side in one llama.cpp batch would bleed into each other)."""
    reference, _ = engines
    wide = LlamaCppEngine([SMOL], cache_dir=tmp_path, concurrency=4, embedding_models=[SMOL])
    wide.load()
    for seed in range(4):
        request = {"model": SMOL, "input": embeddings_texts(random.Random(seed), max_inputs=4)}
        expected = await reference.embeddings(dict(request))
        got = await wide.embeddings(dict(request))
        for want, have in zip(expected["data"], got["data"], strict=True):
            assert cosine(want["embedding"], have["embedding"]) > 0.9999, (seed, want["index"])


async def test_llamacpp_embeddings_errors_name_the_problem(engines: tuple[LlamaCppEngine, LlamaCppEngine],
                                                           tmp_path: Path) -> None:
    reference, _ = engines
    with pytest.raises(InvalidRequest, match="longer than the 2048 tokens") as too_long:
        await reference.embeddings({"model": SMOL, "input": "word " * 3000})
    assert too_long.value.param == "input"
    with pytest.raises(InvalidRequest):
        await reference.embeddings({"model": SMOL, "input": ""})
    with pytest.raises(NotFound, match="no embeddings"):
        await reference.embeddings({"model": GEMMA, "input": "hi"})
    chat_only = LlamaCppEngine([SMOL], cache_dir=tmp_path)
    assert [m.embeddings for m in chat_only.models()] == [False]
    with pytest.raises(ConfigError, match="not among the served models"):
        LlamaCppEngine([SMOL], cache_dir=tmp_path, embedding_models=[GEMMA])


async def test_honest_and_slightly_perturbed_answers_pass(engines: tuple[LlamaCppEngine, LlamaCppEngine]) -> None:
    reference, _ = engines
    answer = await reference.embeddings(copy.deepcopy(REQUEST))
    verdict = await verify_embeddings_answer(reference, REQUEST, answer)
    assert verdict.ok, verdict.reason
    assert verdict.checked == 3 and verdict.quality > 0.999
    rng = random.Random(5)
    noisy = copy.deepcopy(answer)
    for item in noisy["data"]:  # about what another quantisation of the same weights changes
        item["embedding"] = [x + rng.gauss(0, 0.004) for x in item["embedding"]]
    verdict = await verify_embeddings_answer(reference, REQUEST, noisy)
    assert verdict.ok, verdict.reason
    assert 0.98 <= verdict.quality < 0.999
    single = {"model": SMOL, "input": TEXTS[0]}
    assert (await verify_embeddings_answer(reference, single, await reference.embeddings(dict(single)))).ok
    for seed in range(3):  # the challenges the validator sends verify too
        request = {"model": SMOL, "input": embeddings_texts(random.Random(seed))}
        assert (await verify_embeddings_answer(reference, request, await reference.embeddings(dict(request)))).ok


async def test_another_texts_vector_or_another_model_fails(engines: tuple[LlamaCppEngine, LlamaCppEngine]) -> None:
    reference, gemma = engines
    answer = await reference.embeddings(copy.deepcopy(REQUEST))
    swapped = copy.deepcopy(answer)
    swapped["data"][0]["embedding"], swapped["data"][2]["embedding"] = (
        answer["data"][2]["embedding"], answer["data"][0]["embedding"])
    verdict = await verify_embeddings_answer(reference, REQUEST, swapped)
    assert not verdict.ok and "cosine similarity" in (verdict.reason or "") and verdict.quality < 0.98
    # a cheater embeds with Gemma and says SmolLM2
    forged = await gemma.embeddings({"model": GEMMA, "input": TEXTS})
    forged["model"] = SMOL
    forged["usage"] = answer["usage"]
    verdict = await verify_embeddings_answer(reference, REQUEST, forged)
    assert not verdict.ok and "dimensions" in (verdict.reason or "")


async def test_lies_and_malformed_answers_fail(engines: tuple[LlamaCppEngine, LlamaCppEngine]) -> None:
    reference, _ = engines
    answer = await reference.embeddings(copy.deepcopy(REQUEST))

    async def reason(forged: dict[str, object]) -> str:
        verdict = await verify_embeddings_answer(reference, REQUEST, forged)
        assert not verdict.ok
        return verdict.reason or ""

    assert "prompt tokens" in await reason({**answer, "usage": {"prompt_tokens": 999, "total_tokens": 999}})
    assert "answered as model" in await reason({**answer, "model": GEMMA})
    assert "2 embeddings returned for 3 inputs" in await reason({**answer, "data": answer["data"][:2]})
    nan = copy.deepcopy(answer)
    nan["data"][1]["embedding"][0] = float("nan")
    assert "finite floats" in await reason(nan)
    repeated = copy.deepcopy(answer)
    repeated["data"][1]["index"] = 0
    assert "repeated index" in await reason(repeated)
    assert "lacks data" in await reason({**answer, "data": None})
