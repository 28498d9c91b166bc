"""Fit the baseline AI-content detector's logistic mapping on the validator's own kind of challenges.

    python bench/fit_detection.py [--texts 160] [--seed 1]

Generates texts exactly as validators do (tasks/detection.py: human continuations of the shipped books and
SmolLM2/Gemma continuations of the same prefixes), computes SmolLM2 token statistics for each, fits a
logistic regression (Newton's method, a little L2) on half and reports Brier skill and accuracy on the other
half, beside the constant-0.5 baseline (skill 0). Prints the ``LogisticMapping`` to paste into
models/detection.py.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path

import numpy as np

from veilnet.models.detection import LogisticMapping
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.models.textstats import LlamaCppTokenScorer, text_features
from veilnet.tasks.detection import WRITERS, brier_score, generate_detection_challenge

CACHE = Path("/tmp/veilnet-bench-models")


async def collect(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    rng = random.Random(seed)
    rows, labels, writers = [], [], []
    async with (LlamaCppEngine(list(WRITERS), cache_dir=CACHE, concurrency=1, threads=1) as writer,
                LlamaCppTokenScorer(cache_dir=CACHE) as scorer):
        started = time.perf_counter()
        while len(rows) < count:
            challenge = await generate_detection_challenge(rng, writer, texts=(4, 4))
            for text, truth, name in zip(challenge.request.texts(), challenge.truth, challenge.writers, strict=True):
                rows.append((await text_features(scorer, text)).vector())
                labels.append(float(truth))
                writers.append(name)
            print(f"  {len(rows)} texts, {time.perf_counter() - started:.0f} s", flush=True)
    return np.array(rows[:count]), np.array(labels[:count]), writers[:count]


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> np.ndarray:
    design = np.hstack([np.ones((len(x), 1)), x])
    beta = np.zeros(design.shape[1])
    for _ in range(50):
        p = 1 / (1 + np.exp(-design @ beta))
        gradient = design.T @ (p - y) + l2 * beta
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + l2 * np.eye(len(beta))
        beta -= np.linalg.solve(hessian, gradient)
    return beta


def report(name: str, probabilities: list[float], labels: np.ndarray) -> None:
    brier = brier_score(probabilities, [bool(v) for v in labels])
    accuracy = float(np.mean((np.array(probabilities) > 0.5) == (labels > 0.5)))
    print(f"{name:<28} Brier {brier:.3f}  skill {max(0.0, 1 - brier / 0.25):.3f}  accuracy {accuracy:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=160)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    x, y, writers = asyncio.run(collect(args.texts, args.seed))
    half = len(x) // 2
    beta = fit(x[:half], y[:half])
    mapping = LogisticMapping(float(beta[0]), (float(beta[1]), float(beta[2]), float(beta[3])))
    print(f"machine texts: {int(y.sum())} of {len(y)}; by writer: "
          f"{ {w: writers.count(w) for w in set(writers)} }")
    for label, column in zip(("mean_logprob", "argmax_share", "mean_entropy"), x.T, strict=True):
        print(f"{label:<14} human {column[y == 0].mean():7.3f}  machine {column[y == 1].mean():7.3f}")
    held_out = x[half:], y[half:]
    report("constant 0.5 (held out)", [0.5] * len(held_out[1]), held_out[1])
    logits = beta[0] + held_out[0] @ beta[1:]
    report("baseline (held out)", list(1 / (1 + np.exp(-logits))), held_out[1])
    full = fit(x, y)
    print(f"BASELINE = LogisticMapping(intercept={full[0]:.4f}, weights=({full[1]:.4f}, {full[2]:.4f}, {full[3]:.4f}))")
    del mapping


if __name__ == "__main__":
    main()
