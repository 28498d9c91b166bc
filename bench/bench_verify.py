"""Verification cost against generation cost for a 128-token answer with the real SmolLM2 (goal <= 0.2).

The miner generates in a process of its own (as it does for real: two llama.cpp contexts in one process slow
each other down), then the reference re-scores position 0, 7 random positions and the end of each answer by
token ids (cached prefix), alone in this process.
Run: .venv/bin/python bench/bench_verify.py
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import statistics
import time
from pathlib import Path
from typing import Any

from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.tasks.chat import verify_chat_answer

MODEL = "SmolLM2-135M-Instruct"
CACHE = Path("/tmp/veilnet-bench-models")


def requests() -> list[dict[str, Any]]:
    return [{"model": MODEL, "max_tokens": 128, "temperature": 0.7, "seed": seed, "logprobs": True, "top_logprobs": 1,
             "messages": [{"role": "user", "content": f"Tell story number {seed} about a lighthouse."}]}
            for seed in range(3)]


def generate() -> list[tuple[dict[str, Any], float]]:
    """The miner's answers and how long each took (run in a child process)."""
    async def run() -> list[tuple[dict[str, Any], float]]:
        out = []
        async with LlamaCppEngine([MODEL], cache_dir=CACHE) as miner:
            for request in requests():
                start = time.perf_counter()
                answer = await miner.chat(dict(request))
                out.append((answer, time.perf_counter() - start))
        return out

    return asyncio.run(run())


async def verify(answers: list[dict[str, Any]]) -> list[float]:
    times = []
    async with LlamaCppEngine([MODEL], cache_dir=CACHE, concurrency=1, tokenizer=True) as reference:
        for seed, (request, answer) in enumerate(zip(requests(), answers, strict=True)):
            start = time.perf_counter()
            verdict = await verify_chat_answer(reference, request, answer, rng=random.Random(seed))
            times.append(time.perf_counter() - start)
            assert verdict.ok, verdict.reason
    return times


def main() -> None:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        generated = pool.apply(generate)
    assert all(answer["usage"]["completion_tokens"] == 128 for answer, _ in generated), "answers ended early"
    verified = asyncio.run(verify([answer for answer, _ in generated]))
    g, v = statistics.median(t for _, t in generated), statistics.median(verified)
    print(f"{'step':<34}{'median s':>10}")
    print(f"{'generate 128 tokens (miner)':<34}{g:>10.3f}")
    print(f"{'verify 8 positions (reference)':<34}{v:>10.3f}")
    print(f"verify / generate = {v / g:.2f}   (goal <= 0.2)")


if __name__ == "__main__":
    main()
