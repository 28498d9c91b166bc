"""Verification cost against generation cost for a 128-token answer with the real SmolLM2 (goal <= 0.2).

The reference re-scores 8 random positions of the miner's answer (assistant prefill, cached prefix).
Run: .venv/bin/python bench/bench_verify.py
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from pathlib import Path

from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.tasks.chat import verify_chat_answer

MODEL = "SmolLM2-135M-Instruct"


async def main() -> None:
    cache = Path("/tmp/veilnet-bench-models")
    async with LlamaCppEngine([MODEL], cache_dir=cache) as miner, LlamaCppEngine([MODEL], cache_dir=cache) as reference:
        generate, verify = [], []
        for seed in range(3):
            request = {"model": MODEL, "max_tokens": 128, "temperature": 0.7, "seed": seed, "logprobs": True,
                       "top_logprobs": 1, "messages": [{"role": "user", "content": f"Tell story number {seed} about a lighthouse."}]}
            start = time.perf_counter()
            answer = await miner.chat(dict(request))
            generate.append(time.perf_counter() - start)
            start = time.perf_counter()
            verdict = await verify_chat_answer(reference, request, answer, rng=random.Random(seed))
            verify.append(time.perf_counter() - start)
            assert verdict.ok, verdict.reason
    g, v = statistics.median(generate), statistics.median(verify)
    print(f"{'step':<34}{'median s':>10}")
    print(f"{'generate 128 tokens (miner)':<34}{g:>10.3f}")
    print(f"{'verify 8 positions (reference)':<34}{v:>10.3f}")
    print(f"verify / generate = {v / g:.2f}   (goal <= 0.2)")


if __name__ == "__main__":
    asyncio.run(main())
