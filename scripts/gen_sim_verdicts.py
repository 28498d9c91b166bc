"""Generate the simulator's chat verdict table (src/veilnet/sim/data/chat_verdicts.json).

For recorded real SmolLM2 answers (tests/data/honest_chat/answers.jsonl.gz) this runs the REAL chat verifier
(veilnet.tasks.chat.verify_chat_answer) with the REAL reference model (SmolLM2-135M-Instruct through
LlamaCppEngine) on what each miner strategy would send for the same request:

- honest: the recorded answer as it is;
- empty: no text, ``finish_reason: "stop"``, 1 completion token;
- truncate: the answer's first 2 tokens, ``finish_reason: "stop"``;
- inflate-usage: the recorded answer with 10x its completion tokens claimed;
- cache: the reference's greedy answer (temperature 0) sent for the request asked at temperature 0.8;
- substitute: gemma-3-270m's answer to the same prompt, claimed as SmolLM2's.

Each verdict is stored as the fields the scorer reads (ok, quality, recounted completion tokens, greedy
evidence, Fisher's statistic). The simulator samples rows per strategy (veilnet.sim.verdicts).

Run: .venv/bin/python scripts/gen_sim_verdicts.py --answers 48 --out src/veilnet/sim/data/chat_verdicts.json
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gzip
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.tasks.chat import verify_chat_answer
from veilnet.tasks.verdict import Verdict

SMOL = "SmolLM2-135M-Instruct"
GEMMA = "gemma-3-270m"
ANSWERS = Path(__file__).resolve().parent.parent / "tests" / "data" / "honest_chat" / "answers.jsonl.gz"


def _row(verdict: Verdict) -> dict[str, Any]:
    greedy = verdict.greedy
    return {
        "ok": verdict.ok, "quality": round(verdict.quality, 6),
        "completion_tokens": verdict.usage.completion_tokens if verdict.usage is not None else 0,
        "greedy_hits": greedy.hits if greedy is not None else 0,
        "greedy_bounds": [round(b, 6) for b in greedy.hit_bounds] if greedy is not None else [],
        "fisher": round(verdict.fisher, 6), "text_positions": verdict.text_positions,
        "reason": verdict.reason,
    }


def _forged(content: str, finish: str, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {"model": SMOL, "choices": [{"index": 0, "finish_reason": finish,
                                        "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}}


async def _cheats(smol: LlamaCppEngine, gemma: LlamaCppEngine, request: dict[str, Any],
                  answer: dict[str, Any]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """strategy -> (request verified, answer sent)."""
    tokenizer = await smol.tokenizer(SMOL)
    prompt_tokens = len(await tokenizer.chat_prompt(request["messages"]))
    text = answer["choices"][0]["message"].get("content") or ""
    tokens = await tokenizer.text_tokens(text)
    cut = b"".join(t.bytes for t in tokens[:2]).decode(errors="ignore")
    inflated = copy.deepcopy(answer)
    inflated["usage"]["completion_tokens"] = 10 * max(1, int(inflated["usage"]["completion_tokens"]))
    plain = {k: v for k, v in request.items() if k not in ("stream", "logprobs", "top_logprobs", "stop")}
    sampled = {**plain, "temperature": 0.8, "max_tokens": 32}
    greedy = await smol.chat({**sampled, "temperature": 0.0})
    prompt = "\n".join(m["content"] for m in request["messages"] if m["role"] != "assistant") + "\n"
    other = await gemma.completion({"model": GEMMA, "prompt": prompt, "max_tokens": 32, "temperature": 0.7,
                                    "seed": 5})
    substitute = _forged(other["choices"][0]["text"], "length", prompt_tokens, 32)
    return {
        "honest": (request, answer),
        "empty": (request, _forged("", "stop", prompt_tokens, 1)),
        "truncate": (request, _forged(cut, "stop", prompt_tokens, 2)),
        "inflate-usage": (request, inflated),
        "cache": (sampled, greedy),
        "substitute": (sampled, substitute),
    }


async def main(count: int, out: Path, cache_dir: Path) -> None:
    rows = [json.loads(line) for line in gzip.open(ANSWERS, "rt", encoding="utf-8")]
    rng = random.Random(9)
    chosen = [r for r in rows if len(r["answer"]["choices"][0]["message"].get("content") or "") >= 8]
    rng.shuffle(chosen)
    table: dict[str, list[dict[str, Any]]] = {}
    started = time.monotonic()
    async with LlamaCppEngine([SMOL], cache_dir=cache_dir, concurrency=1, threads=2, tokenizer=True) as smol, \
            LlamaCppEngine([GEMMA], cache_dir=cache_dir, concurrency=1, threads=2) as gemma:
        for index, row in enumerate(chosen[:count]):
            for strategy, (request, answer) in (await _cheats(smol, gemma, row["request"], row["answer"])).items():
                verdict = await verify_chat_answer(smol, request, answer, rng=random.Random(index))
                table.setdefault(strategy, []).append(_row(verdict))
            print(f"{index + 1}/{count} answers, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    document = {
        "provenance": (
            f"scripts/gen_sim_verdicts.py: {count} recorded SmolLM2 answers from tests/data/honest_chat (seed 9), "
            f"each strategy's answer verified by veilnet.tasks.chat.verify_chat_answer with the real reference "
            f"model {SMOL} (LlamaCppEngine); substitute answers written by {GEMMA}"),
        "verdicts": table,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for strategy, verdicts in table.items():
        passed = sum(v["ok"] for v in verdicts)
        print(f"{strategy}: {passed}/{len(verdicts)} pass", file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=48)
    parser.add_argument("--out", type=Path, default=Path("src/veilnet/sim/data/chat_verdicts.json"))
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "veilnet" / "models")
    args = parser.parse_args()
    asyncio.run(main(args.answers, args.out, args.cache_dir))
