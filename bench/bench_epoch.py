"""One epoch with 256 uids and 64 validators weighting all miners, measured in the same run:

- veilnet's exact I32F32 epoch (``run_epoch``, numpy), with Yuma3, with liquid alpha, and legacy Yuma;
- the entry-by-entry reference it must equal bit for bit (tests/chain/reference_epoch.py), on the same inputs;
- a float64 numpy Yuma (same steps, no fixed-point exactness) as the floor.

The script also checks that the two exact implementations agree on every input it times.
Goal: the exact epoch at most 50 ms.  Run: .venv/bin/python bench/bench_epoch.py
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from veilnet.chain.epoch import EpochInput, EpochOutput, run_epoch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the reference lives in the test tree
from tests.chain.reference_epoch import reference_run_epoch

N, VALIDATORS = 256, 64


def scenario(seed: int = 7) -> EpochInput:
    rng = random.Random(seed)
    stake = [rng.randint(1_000, 100_000) * 10**9 if uid < VALIDATORS else 0 for uid in range(N)]
    weights = [
        [(j, rng.randint(1, 65_535)) for j in range(VALIDATORS, N)] if uid < VALIDATORS else [] for uid in range(N)
    ]
    bonds = [
        [(j, rng.randint(1, 65_535)) for j in range(VALIDATORS, N)] if uid < VALIDATORS else [] for uid in range(N)
    ]
    return EpochInput(
        n=N, current_block=10_000, tempo=360, activity_cutoff=5_000, last_mechanism_step_block=9_639,
        stake=stake, last_update=[9_990] * N, block_at_registration=[0] * N,
        validator_permit=[uid < VALIDATORS for uid in range(N)], weights=weights, bonds=bonds,
        max_allowed_validators=VALIDATORS,
    )


def float_yuma(inputs: EpochInput) -> np.ndarray:
    n = inputs.n
    s = np.array(inputs.stake, dtype=np.float64)
    s /= s.sum()
    w = np.zeros((n, n))
    for i, row in enumerate(inputs.weights):
        for j, v in row:
            w[i, j] = v
    w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    order = np.argsort(w, axis=0)
    cum = np.cumsum(s[order], axis=0)
    idx = (cum < 0.5).sum(axis=0).clip(max=n - 1)
    consensus = w[order[idx, np.arange(n)], np.arange(n)]
    clipped = np.minimum(w, consensus)
    incentive = s @ clipped
    incentive /= incentive.sum()
    b = np.zeros((n, n))
    for i, row in enumerate(inputs.bonds):
        for j, v in row:
            b[i, j] = v / 65_535
    ema = 0.1 * clipped + 0.9 * b
    ema_norm = ema / np.maximum(ema.sum(axis=0, keepdims=True), 1e-12)
    dividends = (ema_norm @ incentive) * s
    return dividends / dividends.sum()


def timed(fn: Callable[[EpochInput], object], arg: EpochInput, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(arg)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    base = scenario()
    cases = {
        "Yuma3": base,
        "Yuma3 + liquid alpha": replace(base, liquid_alpha=True),
        "legacy Yuma": replace(base, yuma3=False),
    }
    print(f"one epoch, {N} uids, {VALIDATORS} validators weighting {N - VALIDATORS} miners (median / min ms)")
    print(f"{'case':<24}{'run_epoch (numpy)':>20}{'reference (ints)':>20}{'speed-up':>10}  {'bit-exact':>9}")
    for name, inputs in cases.items():
        fast_out: EpochOutput = run_epoch(inputs)
        same = fast_out == reference_run_epoch(inputs)
        fast = timed(run_epoch, inputs, 9)
        reference = timed(reference_run_epoch, inputs, 3)
        print(
            f"{name:<24}{statistics.median(fast):>11.1f} / {min(fast):>5.1f}"
            f"{statistics.median(reference):>11.1f} / {min(reference):>5.1f}"
            f"{statistics.median(reference) / statistics.median(fast):>9.1f}x  {'yes' if same else 'NO':>9}"
        )
    approx = timed(float_yuma, base, 9)
    print(f"{'float64 numpy Yuma':<24}{statistics.median(approx):>11.1f} / {min(approx):>5.1f}   (no exactness: the floor)")
    print("goal: exact epoch <= 50 ms")


if __name__ == "__main__":
    main()
