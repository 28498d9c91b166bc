"""Answers to JSON response formats re-scored under the grammar they were generated with: SmolLM2's own answers
(compact grammar, the miner's engine; flexible whitespace, other backends) pass at every temperature, streamed
or not; canned JSON, Gemma's answers under the same grammar and sampled answers claimed as greedy fail. The
vocabulary table behind the grammar's masks spells tokens as llama.cpp does."""

from __future__ import annotations

import copy
import math
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from veilnet.models.catalog import model_path
from veilnet.models.engine import TokenLogprob
from veilnet.models.llamacpp import LlamaCppEngine, compact_json_grammar
from veilnet.models.vocab import gpt2_byte_decoder, read_vocabulary, token_bytes
from veilnet.tasks.chat import verify_chat_answer
from veilnet.tasks.rescoring import renormalise
from veilnet.tasks.series import greedy_cache_test, substitution_test
from veilnet.tasks.stream import assemble_chat_stream
from veilnet.tasks.verdict import Verdict

SMOL, GEMMA = "SmolLM2-135M-Instruct", "gemma-3-270m"
CITY = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 30},
                                         "country": {"type": "string", "maxLength": 30},
                                         "population": {"type": "integer"}},
        "required": ["name", "country", "population"], "additionalProperties": False}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY}}
OBJECT = {"type": "json_object"}
RICH = {"type": "object", "required": ["title", "tags", "mood", "meta"], "properties": {
    "title": {"type": "string"}, "mood": {"enum": ["happy", "sad"]}, "score": {"type": "number"},
    "tags": {"type": "array", "items": {"type": "string", "enum": ["sea", "sky", "城市", "rain"]}, "maxItems": 3},
    "meta": {"type": "object", "properties": {"lang": {"type": "string"}}, "required": ["lang"]}}}
RICH_PROMPTS = ["写一首关于城市的诗，用JSON。", "Describe the sea 🌊 as JSON."]
PROMPTS = ["Name a big city, its country and its population.", "Give me a city in Japan as JSON."]
SPELLED = ["Hello world", "  spaced\n\n\tout", "🍂🎉 emoji", "请用一句话介绍北京。", '{"name":"Zürich","n":[1,2]}']


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("models"))


@pytest.fixture
async def reference(cache: Path) -> AsyncIterator[LlamaCppEngine]:
    async with LlamaCppEngine([SMOL], cache_dir=cache, concurrency=1, threads=1, tokenizer=True) as engine:
        yield engine


def _request(prompt: str, fmt: dict[str, Any], temperature: float, seed: int, **fields: Any) -> dict[str, Any]:
    return {"model": SMOL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 60,
            "temperature": temperature, "seed": seed, "response_format": fmt, **fields}


def _content(answer: dict[str, Any]) -> str:
    return str(answer["choices"][0]["message"]["content"])


def _scored(verdict: Verdict) -> bool:
    """The verdict re-scored the text: no 'unscored' or 'off_grammar' finding, at least one position."""
    return verdict.text_positions > 0 and not {f.code for f in verdict.findings} & {"unscored", "off_grammar"}


def test_gpt2_byte_table_is_a_bijection_and_token_spellings_decode() -> None:
    table = gpt2_byte_decoder()
    assert len(table) == 256 and sorted(table.values()) == list(range(256))
    assert table["Ġ"] == 0x20 and table["Ċ"] == 0x0A and table["A"] == 0x41
    assert token_bytes("ĠHello", 1, "gpt2") == b" Hello"
    assert token_bytes("ðŁį", 1, "gpt2") == "🍂".encode()[:3]
    assert token_bytes("▁Hello", 1, "llama") == b" Hello"
    assert token_bytes("<0xF0>", 6, "llama") == b"\xf0"
    assert token_bytes("<|im_end|>", 3, "gpt2") == b"\xff<|im_end|>"


def test_renormalised_distribution_bounds_the_unseen_allowed_mass() -> None:
    """Over the allowed tokens: the allowed candidates keep their order, the unseen allowed mass is at most
    what the top-k leaves and at most the k-th probability per unseen allowed token; a forbidden token has
    probability 0; no allowed candidate: nothing to score."""
    top = [TokenLogprob(1, b"a", math.log(0.5)), TokenLogprob(2, b"b", math.log(0.3)),
           TokenLogprob(3, b"c", math.log(0.1))]
    exact = renormalise(top, {1, 3}, 2, 3, math.log(0.1))
    assert exact is not None and [t.id for t in exact.top] == [1, 3] and exact.vocab == 2
    assert math.isclose(math.exp(exact.top[0].logprob), 0.5 / 0.6) and math.isclose(math.exp(exact.logprob), 0.1 / 0.6)
    wide = renormalise(top, set(range(1, 1000)) - {2}, 998, 3, math.log(0.1))
    assert wide is not None and math.isclose(math.exp(wide.top[0].logprob), 0.5 / (0.6 + 0.1))  # rest: 0.1
    few = renormalise(top, {1, 7}, 2, 7, math.log(0.01))
    assert few is not None and math.isclose(math.exp(few.logprob), 0.01 / 0.6)  # unseen: at most p_k = 0.1
    forbidden = renormalise(top, {1}, 1, 2, math.log(0.3))
    assert forbidden is not None and forbidden.logprob == -math.inf and math.isclose(forbidden.top[0].logprob, 0.0)
    assert renormalise(top, {9}, 1, 9, math.log(0.001)) is None


@pytest.mark.model
@pytest.mark.timeout(600)
async def test_vocabulary_spells_tokens_as_llamacpp(cache: Path) -> None:
    """Every token llama.cpp's tokenizer gives for ASCII, whitespace, emoji, CJK and JSON has the bytes the
    GGUF table gives its id, for SmolLM2 (byte-level BPE) and Gemma (SentencePiece)."""
    for name in (SMOL, GEMMA):
        vocab = read_vocabulary(model_path(name, cache))
        async with LlamaCppEngine([name], cache_dir=cache, concurrency=1, threads=1, tokenizer=True) as engine:
            tokenizer = await engine.tokenizer(name)
            assert len(vocab) == tokenizer.vocab_size and tokenizer.eos in vocab.special
            for text in SPELLED:
                tokens = await tokenizer.text_tokens(text)
                assert [vocab.tokens[t.id] for t in tokens] == [t.bytes for t in tokens], (name, text)
                assert b"".join(vocab.tokens[t.id] for t in tokens) == text.encode()


async def _honest(reference: LlamaCppEngine, request: dict[str, Any], stream: bool) -> dict[str, Any]:
    if stream:
        return assemble_chat_stream([c async for c in reference.chat_stream({**request, "stream": True})])
    return await reference.chat(request)


@pytest.mark.model
@pytest.mark.timeout(900)
async def test_honest_json_answers_are_rescored_and_pass(reference: LlamaCppEngine) -> None:
    """SmolLM2's json_schema and json_object answers at temperatures 0, 0.7 and 1 (three seeds), streamed and
    not, logprobs asked and not; a schema with enums, arrays, a nested object and CJK text, temperature unset,
    top_p, temperature 1.3: all re-scored under the compact grammar, none fails."""
    verdicts: list[tuple[str, Verdict]] = []
    case = 0
    for fmt in (SCHEMA, OBJECT):
        for temperature, seeds in ((0.0, [0]), (0.7, [0, 1, 2]), (1.0, [0, 1, 2])):
            for seed in seeds:
                for prompt in PROMPTS:
                    case += 1
                    request = _request(prompt, fmt, temperature, seed, logprobs=case % 2 == 0)
                    answer = await _honest(reference, request, stream=case % 3 == 0)
                    verdict = await verify_chat_answer(reference, request, answer, rng=random.Random(case))
                    verdicts.append((_content(answer), verdict))
    rich = {"type": "json_schema", "json_schema": {"name": "rich", "schema": RICH}}
    for index, extra in enumerate([{}, {"temperature": 0.9, "top_p": 0.8}, {"temperature": 1.3}, {"temperature": 0.0}]):
        request = {**_request(RICH_PROMPTS[index % 2], rich, 0.0, index, max_tokens=80), **extra}
        request = {k: v for k, v in request.items() if k != "temperature" or "temperature" in extra}
        answer = await _honest(reference, request, stream=index % 2 == 1)
        verdicts.append((_content(answer), await verify_chat_answer(reference, request, answer,
                                                                    rng=random.Random(index))))
    failed = [(text, v.reason) for text, v in verdicts if not v.ok]
    unscored = [(text, [f.code for f in v.findings]) for text, v in verdicts if not _scored(v)]
    print(f"\n{len(verdicts)} honest JSON answers: {len(failed)} failed, {len(unscored)} not re-scored; "
          f"positions {sum(v.text_positions for _, v in verdicts)}; "
          f"mean quality {sum(v.quality for _, v in verdicts) / len(verdicts):.3f}")
    assert failed == [] and unscored == []


@pytest.mark.model
async def test_flexible_whitespace_answers_pass(reference: LlamaCppEngine) -> None:
    """Answers written under llguidance's default JSON grammar (whitespace allowed between tokens, as other
    backends write) do not fit the compact grammar; the flexible one is replayed and they pass."""
    spaced = 0
    for index, (fmt, temperature) in enumerate([(SCHEMA, 0.0), (SCHEMA, 1.0), (OBJECT, 0.0), (OBJECT, 1.0)]):
        request = _request(PROMPTS[index % 2], fmt, temperature, index)
        native = {k: v for k, v in request.items() if k != "response_format"}
        native["grammar"] = compact_json_grammar(fmt, whitespace_flexible=True)
        answer = await reference.chat(native)
        text = _content(answer)
        print(repr(text))
        spaced += any(text.startswith(("{ ", "{\n")) or f"{c} " in text or f"{c}\n" in text for c in ",:{")
        verdict = await verify_chat_answer(reference, request, answer, rng=random.Random(index))
        assert verdict.ok and _scored(verdict), (text, verdict.reason, verdict.findings)
    assert spaced >= 1  # at least one answer really used the whitespace the compact grammar forbids


def _claimed(answer: dict[str, Any], request: dict[str, Any], verdict: Verdict) -> dict[str, Any]:
    """``answer`` passed off as SmolLM2's answer to ``request``, its usage the reference's own count."""
    forged = copy.deepcopy(answer)
    forged["model"] = SMOL
    forged.pop("usage", None)
    assert verdict.usage is not None
    forged["usage"] = {"prompt_tokens": verdict.usage.prompt_tokens, "completion_tokens": verdict.usage.completion_tokens}
    return forged


async def _usage_of(reference: LlamaCppEngine, request: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The answer with the usage the reference counts for it (a cheat that gets the usage right)."""
    counted = await verify_chat_answer(reference, request, {**answer, "model": SMOL}, rng=random.Random(0))
    return _claimed(answer, request, counted)


async def _judge(reference: LlamaCppEngine, request: dict[str, Any], answer: dict[str, Any], seed: int) -> Verdict:
    answer = await _usage_of(reference, request, answer)
    verdict = await verify_chat_answer(reference, request, answer, rng=random.Random(seed))
    print(request["temperature"], verdict.ok, round(verdict.quality, 2), repr(_content(answer)[:50]), verdict.reason)
    return verdict


HAND = ['{"name":"Reykjavik","country":"Iceland","population":131136}',
        '{"name":"Qwxz Plorb","country":"Zzyzx Vortland","population":7}',
        '{"name":"Lagos","country":"Nigeria","population":15388000}']


@pytest.mark.model
@pytest.mark.timeout(900)
async def test_json_cheats_fail_at_temperature_zero(reference: LlamaCppEngine, cache: Path) -> None:
    """Greedy requests answered with schema-valid JSON SmolLM2 did not write for them: hand-written, canned
    from another prompt, sampled instead of greedy, Gemma's under the same grammar. Under the grammar the
    reference's argmax is known at each position the grammar left open, so each misses it: hard, or (two
    misses, a few too few for hard: an honest backend may flip a near tie) quality clearly lowered."""
    verdicts: dict[str, list[Verdict]] = {}
    for seed, text in enumerate(HAND):
        request = _request(PROMPTS[seed % 2], SCHEMA, 0.0, seed)
        verdicts.setdefault("hand", []).append(await _judge(reference, request, _answer(text), seed))
    canned = await reference.chat(_request(PROMPTS[0], SCHEMA, 0.0, 0, max_tokens=80))
    assert canned["choices"][0]["finish_reason"] == "stop"
    for seed, prompt in enumerate(["Describe the moon.", "Write a haiku about autumn.", PROMPTS[1]]):
        request = _request(prompt, SCHEMA, 0.0, seed, max_tokens=80)
        verdicts.setdefault("canned", []).append(await _judge(reference, request, canned, seed))
    for seed in range(3):
        sampled = await reference.chat(_request(PROMPTS[seed % 2], SCHEMA, 1.0, seed + 10))
        request = _request(PROMPTS[seed % 2], SCHEMA, 0.0, seed)
        verdicts.setdefault("sampled", []).append(await _judge(reference, request, sampled, seed))
    async with LlamaCppEngine([GEMMA], cache_dir=cache, concurrency=1, threads=1) as gemma:
        for seed, fmt in enumerate([SCHEMA, OBJECT, SCHEMA, OBJECT]):
            request = _request(PROMPTS[seed % 2], fmt, 0.0, seed)
            answer = await gemma.chat({**request, "model": GEMMA})
            verdicts.setdefault("gemma", []).append(await _judge(reference, request, answer, seed))
    caught = {kind: sum(not v.ok for v in found) for kind, found in verdicts.items()}
    print(caught)
    assert caught["hand"] == caught["sampled"] == 3 and caught["canned"] >= 2 and caught["gemma"] >= 3
    # a cheat that passes (fewer than three clear misses of the argmax: too few for hard) loses quality
    assert all(not v.ok or v.quality < 0.85 for found in verdicts.values() for v in found)


@pytest.mark.model
@pytest.mark.timeout(900)
async def test_greedy_json_answers_at_temperature_are_a_greedy_cache(reference: LlamaCppEngine) -> None:
    """At temperature 1 one plausible JSON answer proves nothing (an honest sample could be it); a series
    does: greedy (cacheable) answers to sampled requests each pass but take the constrained argmax too often,
    while SmolLM2's own sampled answers do not."""
    honest, cached = [], []
    for seed in range(12):
        request = _request(PROMPTS[seed % 2], SCHEMA if seed % 3 else OBJECT, 1.0, seed)
        honest.append(await _judge(reference, request, await reference.chat(request), seed))
        greedy = await reference.chat({**request, "temperature": 0.0})
        cached.append(await _judge(reference, request, greedy, seed))
    assert all(v.ok for v in honest + cached)
    caught, fine = greedy_cache_test(v.greedy for v in cached), greedy_cache_test(v.greedy for v in honest)
    print(caught, fine, substitution_test(honest))
    assert caught.flagged and not fine.flagged and not substitution_test(honest).flagged


def _answer(text: str) -> dict[str, Any]:
    return {"model": SMOL, "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
