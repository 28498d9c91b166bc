"""Record real AI-content detection challenges and honest answers for the simulator
(src/veilnet/sim/data/detection_records.json).

Challenges come from the real generator (veilnet.tasks.detection.generate_detection_challenge, seeds 2000..)
with the validator's real writer models (SmolLM2-135M and Gemma 3 270M through LlamaCppEngine); honest answers
from the baseline miner (veilnet.models.detection.TokenStatsDetectionEngine over LlamaCppTokenScorer). The
simulator rebuilds each challenge from its texts and truth and verifies answers with the real verifier.

Run: .venv/bin/python scripts/gen_sim_detection.py --challenges 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path

from veilnet.models.detection import TokenStatsDetectionEngine
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.models.textstats import LlamaCppTokenScorer
from veilnet.tasks.detection import WRITERS, generate_detection_challenge

FIRST_SEED = 2000


async def main(count: int, out: Path, cache_dir: Path) -> None:
    rows = []
    async with LlamaCppEngine(list(WRITERS), cache_dir=cache_dir, concurrency=1, threads=2) as writer, \
            LlamaCppTokenScorer(cache_dir=cache_dir) as scorer:
        engine = TokenStatsDetectionEngine(scorer)
        for index in range(count):
            challenge = await generate_detection_challenge(random.Random(FIRST_SEED + index), writer, texts=(2, 4))
            answer = await engine.detect(challenge.request)
            probabilities = [r.ai_probability for r in sorted(answer.results, key=lambda r: r.index)]
            rows.append({"seed": FIRST_SEED + index, "texts": challenge.request.texts(),
                         "truth": list(challenge.truth), "honest": probabilities})
            print(f"{index + 1}/{count}", file=sys.stderr, flush=True)
    document = {
        "provenance": (f"scripts/gen_sim_detection.py: generate_detection_challenge(random.Random(seed), writer) "
                       f"with writers {', '.join(WRITERS)} (LlamaCppEngine), seeds {FIRST_SEED}..{FIRST_SEED + count - 1}; "
                       "honest probabilities from TokenStatsDetectionEngine (the baseline miner)"),
        "records": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--challenges", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("src/veilnet/sim/data/detection_records.json"))
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "veilnet" / "models")
    args = parser.parse_args()
    asyncio.run(main(args.challenges, args.out, args.cache_dir))
