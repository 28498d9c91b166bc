"""The cost of checking and the chance of catching a cheat, at the default settings (issue 19, item 11).

Goal: validator verification compute <= 0.1 of the miners' generation compute for the whole workload, and a
miner that cheats on 10 % of its answers banned within 3 epochs with probability >= 99 %.

1. A workload of challenges from the real generator (default shapes, ``max_tokens`` capped as the challenger
   caps it) is answered by the miner's engine in a process of its own (timed), then verified by the reference
   with the default settings (timed). Verification compute = verify_rate x verification time.
2. The same ratio from a compute model, per answer: the miner processes P prompt tokens and decodes C tokens;
   the verifier processes P + C tokens as a batch and decodes once per checked position. On this CPU prompt
   processing is only ~2.6x cheaper per token than decoding; on a GPU it is 10-100x cheaper.
3. Cheats (empty, truncated, an answer to another prompt) are verified against the workload's requests: the
   share failing hard is the detection rate d of one verified cheated answer. A miner answering n challenges
   per epoch, cheating on a share s of them, survives 3 epochs unbanned with probability
   (1 - s * verify_rate * d) ** (3 n).
Run: .venv/bin/python bench/bench_detection.py [--requests 8]   (figures under contention are indicative)
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import time
from pathlib import Path
from typing import Any

from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.settings import ChainSettings, MinerSettings, ValidatorSettings
from veilnet.tasks.challenges import challenge_request
from veilnet.tasks.chat import ChatVerifySettings, verify_chat_answer

MODEL = "SmolLM2-135M-Instruct"
CACHE = Path("/tmp/veilnet-bench-models")
TEMPO_BLOCKS = 360  # subtensor's default tempo
CAP = 256  # the challenger's max_tokens cap (validator/service.py)


def workload(count: int) -> list[dict[str, Any]]:
    rng = random.Random(11)
    return [challenge_request(MODEL, rng, max_tokens_cap=CAP).model_copy(update={"stream": False})
            .model_dump(mode="json", exclude_unset=True) for _ in range(count)]


def generate(requests: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float]]:
    """The miner's answers and how long each took (run in a child process, as a miner runs)."""
    async def run() -> list[tuple[dict[str, Any], float]]:
        out = []
        async with LlamaCppEngine([MODEL], cache_dir=CACHE, concurrency=1, threads=2) as miner:
            await miner.chat({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
            for request in requests:
                start = time.perf_counter()
                answer = await miner.chat(dict(request))
                out.append((answer, time.perf_counter() - start))
        return out

    return asyncio.run(run())


def cheats(request: dict[str, Any], answer: dict[str, Any], other: dict[str, Any]) -> list[dict[str, Any]]:
    usage = answer["usage"]
    content = answer["choices"][0]["message"]["content"]

    def forged(text: str, finish: str) -> dict[str, Any]:
        return {"model": MODEL, "usage": dict(usage),
                "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text}}]}

    return [forged("", "stop"), forged(content[: max(1, len(content) // 8)], "stop"),
            {**other, "usage": {**other["usage"], "prompt_tokens": usage["prompt_tokens"]}}]


async def verify_all(requests: list[dict[str, Any]], answers: list[dict[str, Any]]) -> tuple[list[float], int, int, int]:
    times, hard_honest, caught, cheated = [], 0, 0, 0
    async with LlamaCppEngine([MODEL], cache_dir=CACHE, concurrency=1, threads=2, tokenizer=True) as reference:
        for index, (request, answer) in enumerate(zip(requests, answers, strict=True)):
            start = time.perf_counter()
            verdict = await verify_chat_answer(reference, request, answer, rng=random.Random(index))
            times.append(time.perf_counter() - start)
            hard_honest += not verdict.ok
            other = answers[(index + 1) % len(answers)]
            for cheat in cheats(request, answer, other):
                cheated += 1
                caught += not (await verify_chat_answer(reference, request, cheat, rng=random.Random(index))).ok
    return times, hard_honest, caught, cheated


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=8)
    args = parser.parse_args()
    requests = workload(args.requests)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        generated = pool.apply(generate, (requests,))
    answers = [a for a, _ in generated]
    verify_times, hard_honest, caught, cheated = asyncio.run(verify_all(requests, answers))
    rate, positions = ValidatorSettings().verify_rate, ChatVerifySettings().positions
    generate_s, verify_s = sum(t for _, t in generated), sum(verify_times)
    prompt = sum(a["usage"]["prompt_tokens"] for a in answers)
    completion = sum(a["usage"]["completion_tokens"] for a in answers)
    calls = sum(min(positions, a["usage"]["completion_tokens"]) + 1 for a in answers)

    print(f"workload: {len(requests)} challenges, {prompt} prompt + {completion} completion tokens; "
          f"verify_rate {rate}, {positions} positions + the end per verified answer")
    print(f"{'':34}{'miner generate s':>18}{'validator verify s':>20}{'ratio':>8}")
    print(f"{'measured, every answer verified':<34}{generate_s:>18.2f}{verify_s:>20.2f}{verify_s / generate_s:>8.3f}")
    print(f"{'measured, at verify_rate':<34}{generate_s:>18.2f}{rate * verify_s:>20.2f}"
          f"{rate * verify_s / generate_s:>8.3f}   (goal <= 0.1)")
    for name, speedup in (("model, CPU (prompt 2.6x decode)", 2.6), ("model, GPU (prompt 30x decode)", 30.0),
                          ("model, GPU (prompt 100x decode)", 100.0)):
        miner = prompt / speedup + completion
        validator = rate * ((prompt + completion) / speedup + calls)
        print(f"{name:<34}{miner:>18.1f}{validator:>20.1f}{validator / miner:>8.3f}   (decode-token units)")

    d = caught / cheated if cheated else 0.0
    window = MinerSettings().window_seconds
    per_epoch = ValidatorSettings().challenges_per_window * TEMPO_BLOCKS * ChainSettings().block_time / window
    survive = (1 - 0.1 * rate * d) ** (3 * per_epoch)
    print(f"honest answers failing hard: {hard_honest} of {len(answers)}")
    print(f"cheated answers failing hard when verified: {caught} of {cheated} (d = {d:.2f}; empty, truncated, "
          f"another prompt's answer)")
    print(f"{per_epoch:.0f} challenges per miner per epoch (tempo {TEMPO_BLOCKS} x {ChainSettings().block_time:.0f} s, "
          f"{ValidatorSettings().challenges_per_window} per {window} s window); cheating on 10 %: "
          f"P(banned within 3 epochs) = {1 - survive:.6f}   (goal >= 0.99)")


if __name__ == "__main__":
    main()
