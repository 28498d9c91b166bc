"""Generate the simulator's embeddings verdict table (src/veilnet/sim/data/embeddings_verdicts.json).

For challenges drawn by the real generator (veilnet.tasks.challenges.embeddings_texts) this runs the REAL
verifier (veilnet.tasks.embeddings.verify_embeddings_answer) with the REAL reference model (SmolLM2 through
LlamaCppEngine) on what each miner strategy sends:

- honest: the miner's own engine's embeddings (SmolLM2, the same weights);
- empty: no vectors; truncate: every vector cut to half its dimensions;
- cache: the embeddings of the previous challenge's texts (a cache can only hold what it saw before);
- substitute: gemma-3-270m's embeddings claimed as SmolLM2's;
- inflate-usage: the honest answer claiming 10x the prompt tokens.

Run: .venv/bin/python scripts/gen_sim_embeddings.py --challenges 30
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import random
import sys
from pathlib import Path
from typing import Any

from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.tasks.challenges import embeddings_texts
from veilnet.tasks.embeddings import verify_embeddings_answer
from veilnet.tasks.verdict import Verdict

SMOL = "SmolLM2-135M-Instruct"
GEMMA = "gemma-3-270m"


def _row(verdict: Verdict, inputs: int) -> dict[str, Any]:
    return {"ok": verdict.ok, "quality": round(verdict.quality, 6), "completion_tokens": inputs, "greedy_hits": 0,
            "greedy_bounds": [], "fisher": 0.0, "text_positions": 0, "reason": verdict.reason}


async def main(count: int, out: Path, cache_dir: Path) -> None:
    rng = random.Random(23)
    table: dict[str, list[dict[str, Any]]] = {}
    previous: dict[str, Any] | None = None
    async with LlamaCppEngine([SMOL], cache_dir=cache_dir, concurrency=1, threads=2, embedding_models=[SMOL]) as smol, \
            LlamaCppEngine([GEMMA], cache_dir=cache_dir, concurrency=1, threads=2, embedding_models=[GEMMA]) as gemma:
        for index in range(count):
            request = {"model": SMOL, "input": embeddings_texts(rng)}
            inputs = len(request["input"]) if isinstance(request["input"], list) else 1
            honest = await smol.embeddings(copy.deepcopy(request))
            truncated = copy.deepcopy(honest)
            for item in truncated["data"]:
                item["embedding"] = item["embedding"][: len(item["embedding"]) // 2]
            inflated = copy.deepcopy(honest)
            inflated["usage"]["prompt_tokens"] = 10 * int(inflated["usage"]["prompt_tokens"])
            other = await gemma.embeddings({"model": GEMMA, "input": request["input"]})
            substitute = {**other, "model": SMOL, "usage": honest["usage"]}
            cached = copy.deepcopy(previous) if previous is not None else {**honest, "data": []}
            if previous is not None:  # the previous answer, trimmed or repeated to this challenge's inputs
                data = [copy.deepcopy(previous["data"][i % len(previous["data"])]) for i in range(inputs)]
                cached = {**honest, "data": [{**item, "index": i} for i, item in enumerate(data)]}
            answers = {"honest": honest, "empty": {**honest, "data": []}, "truncate": truncated, "cache": cached,
                       "substitute": substitute, "inflate-usage": inflated}
            for strategy, answer in answers.items():
                verdict = await verify_embeddings_answer(smol, request, answer)
                table.setdefault(strategy, []).append(_row(verdict, inputs))
            previous = honest
            print(f"{index + 1}/{count}", file=sys.stderr, flush=True)
    document = {
        "provenance": (f"scripts/gen_sim_embeddings.py: {count} challenges from embeddings_texts (seed 23), each "
                       f"strategy's answer verified by veilnet.tasks.embeddings.verify_embeddings_answer with the "
                       f"real reference model {SMOL} (LlamaCppEngine); substitute vectors from {GEMMA}"),
        "verdicts": table,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for strategy, verdicts in table.items():
        print(f"{strategy}: {sum(v['ok'] for v in verdicts)}/{len(verdicts)} pass", file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--challenges", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("src/veilnet/sim/data/embeddings_verdicts.json"))
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "veilnet" / "models")
    args = parser.parse_args()
    asyncio.run(main(args.challenges, args.out, args.cache_dir))
