"""The chat verifier with the real models: every recorded honest SmolLM2 answer passes (zero hard failures);
the cheats of issue 19's table fail (empty and truncated answers, Gemma as SmolLM2, inflated usage, greedy
answers at temperature > 0, answers cached for another prompt); hostile answers give reasons, never
exceptions."""

from __future__ import annotations

import collections
import copy
import gzip
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.tasks.chat import verify_chat_answer
from veilnet.tasks.series import greedy_cache_test, substitution_test
from veilnet.tasks.stream import assemble_chat_stream
from veilnet.tasks.verdict import Verdict

SMOL = "SmolLM2-135M-Instruct"
DATA = Path(__file__).parent.parent / "data" / "honest_chat" / "answers.jsonl.gz"
PROMPTS = ["Describe the sea in two sentences.", "Write a haiku about autumn rain 🍂.", "请用一句话介绍北京。"]

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("models"))


@pytest.fixture
async def reference(cache: Path) -> AsyncIterator[LlamaCppEngine]:
    # one thread, as in every verifier test: llama.cpp's threads spin while they wait for each other, so two
    # pytest workers' engines of several threads each would slow each other several times over
    async with LlamaCppEngine([SMOL], cache_dir=cache, concurrency=1, threads=1, tokenizer=True) as engine:
        yield engine


def _request(prompt: str, **fields: Any) -> dict[str, Any]:
    return {"model": SMOL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 32, **fields}


def _forged(content: str, finish: str, prompt_tokens: int, completion_tokens: int, **extra: Any) -> dict[str, Any]:
    return {"model": SMOL, "choices": [{"index": 0, "finish_reason": finish,
                                        "message": {"role": "assistant", "content": content}, **extra}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}}


@pytest.mark.timeout(900)
async def test_every_recorded_honest_answer_passes(reference: LlamaCppEngine) -> None:
    """tests/data/honest_chat: real answers of the miner's engine (streamed and not; emoji, CJK, code, JSON,
    blank lines; temperatures 0-1.5, top_p, stop sequences, logprobs asked and not). None may fail."""
    rows = [json.loads(line) for line in gzip.open(DATA, "rt", encoding="utf-8")]
    assert len(rows) >= 300 and any(r["request"].get("stream") for r in rows)
    hard: list[tuple[int, str | None]] = []
    soft: collections.Counter[str] = collections.Counter()
    qualities = []
    for index, row in enumerate(rows):
        verdict = await verify_chat_answer(reference, row["request"], row["answer"], rng=random.Random(index))
        if not verdict.ok:
            hard.append((index, verdict.reason))
        soft.update({f.code for f in verdict.findings})
        qualities.append(verdict.quality)
    print(f"\n{len(rows)} honest answers: {len(hard)} hard failures; answers with each soft finding: "
          f"{dict(soft)}; mean quality {sum(qualities) / len(qualities):.3f}, "
          f"below 0.9: {sum(q < 0.9 for q in qualities) / len(qualities):.1%}")
    assert hard == []


async def test_streamed_answer_reassembled_passes(reference: LlamaCppEngine) -> None:
    request = _request("Say hello with three different emoji and 你好.", temperature=0.9, seed=4, logprobs=True,
                       top_logprobs=2, stream=True)
    answer = assemble_chat_stream([chunk async for chunk in reference.chat_stream(dict(request))])
    verdict = await verify_chat_answer(reference, request, answer, rng=random.Random(0))
    assert verdict.ok, verdict.reason
    assert verdict.usage is not None and verdict.usage.prompt_tokens == answer["usage"]["prompt_tokens"]


@pytest.mark.timeout(900)
async def test_empty_and_truncated_answers_fail(reference: LlamaCppEngine) -> None:
    tokenizer = await reference.tokenizer(SMOL)
    for index, prompt in enumerate(PROMPTS):
        for temperature in (0.0, 0.5):
            request = _request(prompt, temperature=temperature, seed=index, max_tokens=16)
            prompt_tokens = len(await tokenizer.chat_prompt(request["messages"]))
            empty = await verify_chat_answer(reference, request, _forged("", "stop", prompt_tokens, 1))
            assert not empty.ok and any(f.code == "implausible_stop" for f in empty.findings), empty.reason
            honest = await reference.chat(copy.deepcopy(request))
            tokens = await tokenizer.text_tokens(honest["choices"][0]["message"]["content"])
            if len(tokens) < 4:
                continue
            cut = b"".join(t.bytes for t in tokens[:2]).decode(errors="ignore")
            short = await verify_chat_answer(reference, request, _forged(cut, "stop", prompt_tokens, 3))
            assert not short.ok, (prompt, temperature, cut, short.reason)


async def test_inflated_usage_and_wrong_model_fail(reference: LlamaCppEngine) -> None:
    request = _request(PROMPTS[0], temperature=0.7, seed=11, logprobs=True, top_logprobs=1)
    answer = await reference.chat(copy.deepcopy(request))
    for field, factor in (("completion_tokens", 10), ("prompt_tokens", 10)):
        inflated = copy.deepcopy(answer)
        inflated["usage"][field] *= factor
        verdict = await verify_chat_answer(reference, request, inflated)
        assert not verdict.ok and any(f.code == "usage_inflated" for f in verdict.findings), verdict.reason
    renamed = {**copy.deepcopy(answer), "model": "gemma-3-270m"}
    assert not (await verify_chat_answer(reference, request, renamed)).ok


@pytest.mark.timeout(900)
async def test_gemma_answering_as_smollm2_fails(reference: LlamaCppEngine, cache: Path) -> None:
    """Greedy requests: Gemma's text is far from SmolLM2's argmax. With its logprobs: they are not SmolLM2's.
    Sampled without logprobs: each answer loses quality, and a series is flagged as another model."""
    tokenizer = await reference.tokenizer(SMOL)
    async with LlamaCppEngine(["gemma-3-270m"], cache_dir=cache, concurrency=1, threads=1) as gemma:
        greedy_fails, logprob_fails, sampled = 0, 0, []
        for index, prompt in enumerate(PROMPTS):
            out = await gemma.completion({"model": "gemma-3-270m", "prompt": prompt + "\n", "max_tokens": 24,
                                          "temperature": 0.0, "logprobs": 1})
            text = out["choices"][0]["text"]
            entries = [{"token": t["token"], "logprob": t["logprob"], "bytes": t.get("bytes")}
                       for t in out["choices"][0]["logprobs"]["content"]]
            prompt_tokens = len(await tokenizer.chat_prompt([{"role": "user", "content": prompt}]))
            plain = _forged(text, "length", prompt_tokens, 24)
            greedy = await verify_chat_answer(reference, _request(prompt, temperature=0.0, max_tokens=24), plain,
                                              rng=random.Random(index))
            greedy_fails += not greedy.ok
            with_logprobs = _forged(text, "length", prompt_tokens, 24, logprobs={"content": entries})
            forged = await verify_chat_answer(reference, _request(prompt, temperature=0.7, max_tokens=24, logprobs=True),
                                              with_logprobs, rng=random.Random(index))
            logprob_fails += not forged.ok
            sampled.append(await verify_chat_answer(reference, _request(prompt, temperature=0.7, max_tokens=24),
                                                    plain, rng=random.Random(index)))
    assert greedy_fails == len(PROMPTS)
    assert logprob_fails >= len(PROMPTS) - 1
    assert sum(v.quality for v in sampled) / len(sampled) < 0.9


@pytest.mark.timeout(900)
async def test_greedy_answers_at_temperature_are_a_greedy_cache(reference: LlamaCppEngine) -> None:
    """Each greedy answer passes on its own; a series of them is flagged, a series of sampled ones is not."""
    cached: list[Verdict] = []
    sampled: list[Verdict] = []
    for index, prompt in enumerate(PROMPTS * 2):
        asked = _request(prompt, temperature=0.8, seed=index, max_tokens=32)
        greedy_answer = await reference.chat({**asked, "temperature": 0.0})
        verdict = await verify_chat_answer(reference, asked, greedy_answer, rng=random.Random(index))
        assert verdict.ok, verdict.reason
        cached.append(verdict)
        honest = await reference.chat(copy.deepcopy(asked))
        sampled.append(await verify_chat_answer(reference, asked, honest, rng=random.Random(index)))
    caught = greedy_cache_test(v.greedy for v in cached)
    assert caught.flagged and caught.observed == caught.positions
    fine = greedy_cache_test(v.greedy for v in sampled)
    assert not fine.flagged and fine.bound > 1e-3
    assert not substitution_test(sampled).flagged


@pytest.mark.timeout(900)
async def test_answers_cached_for_another_prompt_fail(reference: LlamaCppEngine) -> None:
    answers = []
    for index, prompt in enumerate(PROMPTS):
        answers.append(await reference.chat(_request(prompt, temperature=0.0, max_tokens=40, seed=index)))
    failed = 0
    for index, prompt in enumerate(PROMPTS):
        other = copy.deepcopy(answers[(index + 1) % len(PROMPTS)])
        tokens = len(await (await reference.tokenizer(SMOL)).chat_prompt([{"role": "user", "content": prompt}]))
        other["usage"]["prompt_tokens"] = tokens
        verdict = await verify_chat_answer(reference, _request(prompt, temperature=0.0, max_tokens=40), other,
                                           rng=random.Random(index))
        failed += not verdict.ok
    assert failed >= len(PROMPTS) - 1


HOSTILE: list[Any] = [
    None, 7, "text", [], {}, {"model": SMOL}, {"model": SMOL, "choices": []}, {"model": SMOL, "choices": [{}]},
    {"model": SMOL, "choices": [{"finish_reason": "stop", "message": {"content": "hi"}}]},
    _forged("hi", "tool_calls", 10, 2), _forged("hi", "stop", -1, 2), _forged("hi", "stop", 10, 10**12),
    _forged("hi", "stop", 10, 2, logprobs={"content": [{"token": "hi", "logprob": "NaN"}]}),
    _forged("hi", "stop", 10, 2, logprobs={"content": [{"token": "hi", "logprob": 5.0}]}),
    _forged("hi", "stop", 10, 2, logprobs={"content": [{"token": "hi", "logprob": -1, "bytes": [300]}]}),
    _forged("hi", "stop", 10, 2, logprobs={"content": "nope"}),
    {**_forged("hi", "stop", 10, 2), "choices": [{"index": 3, "finish_reason": "stop", "message": {"content": "x"}}]},
]


@pytest.mark.parametrize("answer", HOSTILE)
async def test_hostile_answers_fail_with_a_reason(reference: LlamaCppEngine, answer: Any) -> None:
    verdict = await verify_chat_answer(reference, _request("hi"), answer)
    assert not verdict.ok and verdict.reason and any(f.severity == "hard" for f in verdict.findings)


@pytest.mark.timeout(900)
async def test_fuzzed_answers_never_raise(reference: LlamaCppEngine) -> None:
    """Random mutations of a real answer (text, finish, usage, logprobs) give a verdict, never an exception."""
    request = _request("Write a haiku about tea 🍵.", temperature=0.7, seed=3, logprobs=True, top_logprobs=1)
    base = await reference.chat(copy.deepcopy(request))
    rng = random.Random(7)
    junk = ["", "\x00", "\ud7ff", "😀" * 30, "<|im_end|>", "<|im_start|>assistant\n", "\n" * 50, "a" * 500, "你好"]
    for _ in range(20):
        answer = copy.deepcopy(base)
        choice = answer["choices"][0]
        roll = rng.random()
        if roll < 0.3:
            choice["message"]["content"] = rng.choice(junk) + choice["message"]["content"][: rng.randrange(40)]
        elif roll < 0.5:
            choice["finish_reason"] = rng.choice(["stop", "length"])
            answer["usage"]["completion_tokens"] = rng.randrange(0, 200)
        elif roll < 0.75:
            entries = choice["logprobs"]["content"]
            rng.shuffle(entries)
            for entry in entries[:3]:
                entry["logprob"] = -rng.random() * 30
                entry["bytes"] = list(rng.randbytes(rng.randrange(0, 5)))
        else:
            choice["message"]["content"] = rng.randbytes(30).decode("utf-8", errors="replace")
        verdict = await verify_chat_answer(reference, request, answer, rng=random.Random(rng.random()))
        assert 0.0 <= verdict.quality <= 1.0
