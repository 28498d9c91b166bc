"""Record real OCR readings for the simulator (src/veilnet/sim/data/ocr_readings.json).

For the validator's own challenges ``generate_ocr_challenge(random.Random(1000 + i))`` this records what the
miner's real engine (veilnet.models.ocr.RapidOcrEngine, PP-OCRv4) reads, honestly and as the cheaper reading
of docs/tasks.md (the picture shrunk to a third). The simulator verifies these transcripts with the real
verifier (veilnet.tasks.ocr.verify_ocr_answer) on the same, regenerated challenges.

Run: .venv/bin/python scripts/gen_sim_ocr.py --challenges 24
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path

from veilnet.models.ocr import RapidOcrEngine
from veilnet.tasks.images import decode_image
from veilnet.tasks.ocr import generate_ocr_challenge

FIRST_SEED = 1000


async def main(count: int, out: Path) -> None:
    rows = []
    async with RapidOcrEngine(concurrency=1) as engine:
        for index in range(count):
            challenge = generate_ocr_challenge(random.Random(FIRST_SEED + index))
            honest = (await engine.transcribe(challenge.request)).transcript
            picture = decode_image(challenge.request.image, param="image")
            small = picture.resize((max(8, picture.width // 3), max(8, picture.height // 3)))
            cheap = await engine.read(small)
            rows.append({"seed": FIRST_SEED + index, "truth": challenge.truth, "honest": honest, "substitute": cheap})
            print(f"{index + 1}/{count}", file=sys.stderr, flush=True)
    document = {
        "provenance": (f"scripts/gen_sim_ocr.py: RapidOcrEngine (PP-OCRv4, rapidocr-onnxruntime) readings of "
                       f"generate_ocr_challenge(random.Random(seed)) pictures, seeds {FIRST_SEED}.."
                       f"{FIRST_SEED + count - 1}: honest, and of the picture shrunk to a third (substitute)"),
        "readings": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--challenges", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("src/veilnet/sim/data/ocr_readings.json"))
    args = parser.parse_args()
    asyncio.run(main(args.challenges, args.out))
