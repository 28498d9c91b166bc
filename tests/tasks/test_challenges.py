"""Challenges a cache cannot serve, shaped like organic traffic, and the reference-written prompt pool."""

from __future__ import annotations

import asyncio
import collections
import json
import random
from pathlib import Path

import pytest

from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.protocol.openai import ChatCompletionRequest
from veilnet.tasks.challenges import (
    PromptPool,
    challenge_request,
    fill_prompt_pool,
    organic_requests,
    random_prompt,
    shape_of,
)

SMOL = "SmolLM2-135M-Instruct"


def _key(request: ChatCompletionRequest) -> str:
    """What a cache would key an answer on: the conversation, case and spacing ignored."""
    return json.dumps([" ".join(str(m.content).lower().split()) for m in request.messages])


def test_a_cache_of_every_earlier_challenge_answers_at_most_one_percent() -> None:
    rng = random.Random(19)
    seen: set[str] = set()
    hits = 0
    for _ in range(10_000):
        key = _key(challenge_request(SMOL, rng))
        hits += key in seen
        seen.add(key)
    print(f"\n10,000 challenges: {hits} answerable from a cache of every earlier one ({hits / 100:.2f} %)")
    assert hits <= 10  # goal 1 %; bench/bench_challenge_cache.py measures 0.00 % over 20,000


def test_default_parameters_vary_like_traffic() -> None:
    rng = random.Random(3)
    requests = [challenge_request(SMOL, rng) for _ in range(2_000)]
    logprobs = sum(r.logprobs for r in requests) / len(requests)
    streamed = sum(r.stream for r in requests) / len(requests)
    max_tokens = collections.Counter(r.max_tokens for r in requests)
    temperatures = {r.temperature for r in requests}
    assert 0.1 < logprobs < 0.5 and 0.3 < streamed < 0.7
    assert len(max_tokens) > 100 and max_tokens.most_common(1)[0][1] < 0.2 * len(requests)
    assert None in temperatures and 0.0 in temperatures and len(temperatures) > 50
    for request in requests[:50]:  # what the miner would parse, byte for byte
        ChatCompletionRequest.model_validate_json(request.model_dump_json(exclude_unset=True))


def test_parameters_follow_organic_shapes_and_replay_their_prompts() -> None:
    organic = [ChatCompletionRequest(model=SMOL, messages=[{"role": "user", "content": f"organic question {i}"}],
                                     max_tokens=77, temperature=0.3, stream=True) for i in range(5)]
    samples = [{"request": r.model_dump_json(exclude_unset=True)} for r in organic] + [{"request": "not json"}]
    parsed = organic_requests(samples)
    assert parsed == organic
    rng = random.Random(5)
    made = [challenge_request(SMOL, rng, organic=parsed, replay_share=0.3) for _ in range(400)]
    shaped = [r for r in made if shape_of(r) == shape_of(organic[0])]
    assert len(shaped) == len(made)  # only organic shapes: anything else would mark a challenge
    replayed = sum(1 for r in made if str(r.messages[0].content).startswith("organic question"))
    assert 0.2 < replayed / len(made) < 0.4
    other_model = [challenge_request("other", rng, organic=parsed) for _ in range(50)]
    assert not any(str(r.messages[-1].content).startswith("organic") for r in other_model)


def test_pool_prompts_are_used_once_then_word_list_prompts() -> None:
    pool = PromptPool(size=3)
    for text in ("What is a lighthouse?", "How do bees dance?", "Why is ice slippery?", "Where do tides go?"):
        pool.add(text)
    rng = random.Random(1)
    taken = [str(challenge_request(SMOL, rng, pool=pool).messages[-1].content) for _ in range(4)]
    assert taken[:3] == ["How do bees dance?", "Why is ice slippery?", "Where do tides go?"]  # oldest dropped
    assert taken[3] not in taken[:3] and len(pool) == 0
    assert random_prompt(random.Random(2)) != random_prompt(random.Random(3))


@pytest.mark.model
async def test_the_reference_model_fills_the_pool(tmp_path: Path) -> None:
    pool = PromptPool(size=2)
    async with LlamaCppEngine([SMOL], cache_dir=tmp_path, concurrency=1, threads=1) as engine:
        filler = asyncio.create_task(fill_prompt_pool(engine, SMOL, pool, random.Random(4), idle=0.05))
        try:
            async with asyncio.timeout(120):
                while not pool.full:
                    await asyncio.sleep(0.1)
        finally:
            filler.cancel()
            with pytest.raises(asyncio.CancelledError):
                await filler
    questions = [pool.take(), pool.take()]
    assert all(q and q.endswith("?") for q in questions) and questions[0] != questions[1]


def test_a_challenge_copies_an_organic_request_field_for_field_but_its_content() -> None:
    organic = ChatCompletionRequest.model_validate({
        "model": SMOL, "messages": [{"role": "user", "content": "an app's question"}], "max_completion_tokens": 300,
        "stream": True, "stream_options": {"include_usage": True}, "presence_penalty": 0.4, "seed": 11,
        "stop": "END", "top_p": 0.95})
    challenge = challenge_request(SMOL, random.Random(2), organic=[organic], replay_share=0.0)
    assert challenge.model_fields_set == organic.model_fields_set  # the same fields set, so the same encoding
    assert challenge.model_dump(exclude={"messages"}) == organic.model_dump(exclude={"messages"})
    assert challenge.messages != organic.messages
    capped = challenge_request(SMOL, random.Random(2), organic=[organic.model_copy(update={"max_completion_tokens": 5000})],
                               max_tokens_cap=1024)
    assert capped.max_completion_tokens == 1024 and capped.max_tokens is None  # a request without one sets none
    unlimited = ChatCompletionRequest(model=SMOL, messages=[{"role": "user", "content": "q"}])
    assert challenge_request(SMOL, random.Random(3), organic=[unlimited]).model_fields_set == {"model", "messages"}


def test_each_organic_conversation_is_replayed_once() -> None:
    organic = [ChatCompletionRequest(model=SMOL, messages=[{"role": "user", "content": f"organic {i}"}])
               for i in range(3)]
    replayed: set[str] = set()
    rng = random.Random(7)
    made = [str(challenge_request(SMOL, rng, organic=organic, replay_share=1.0, replayed=replayed).messages[-1].content)
            for _ in range(10)]
    assert sorted(made[:3]) == ["organic 0", "organic 1", "organic 2"]  # each once, then fresh prompts
    assert not any(text.startswith("organic") for text in made[3:])
