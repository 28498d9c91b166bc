"""One epoch with 256 uids and 64 validators weighting all miners: veilnet's exact I32F32 epoch vs a
float64 numpy Yuma (same steps, no fixed-point exactness) as the baseline, measured in the same run.

Goal: the exact epoch at most 100 ms on a 2-core machine.  Run: .venv/bin/python bench/bench_epoch.py
"""

from __future__ import annotations

import random
import statistics
import time

import numpy as np

from veilnet.chain.epoch import EpochInput, run_epoch

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


def timed(fn, arg, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(arg)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    inputs = scenario()
    exact = timed(run_epoch, inputs, 5)
    approx = timed(float_yuma, inputs, 5)
    print(f"one epoch, {N} uids, {VALIDATORS} validators weighting {N - VALIDATORS} miners")
    print(f"{'implementation':<36}{'median ms':>12}{'min ms':>10}")
    print(f"{'veilnet exact I32F32 (run_epoch)':<36}{statistics.median(exact):>12.1f}{min(exact):>10.1f}")
    print(f"{'float64 numpy Yuma (baseline)':<36}{statistics.median(approx):>12.1f}{min(approx):>10.1f}")
    print("goal: exact epoch <= 100 ms")


if __name__ == "__main__":
    main()
