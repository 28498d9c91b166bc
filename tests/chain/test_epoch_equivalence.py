"""The numpy epoch equals the entry-by-entry reference (tests/chain/reference_epoch.py) bit for bit: every
output field, over many random subnets (sizes 1..256, sparse and dense weights, bonds, Yuma3 and legacy,
liquid alpha, commit masks, owners, stake thresholds) and the edge cases named below."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from tests.chain.reference_epoch import reference_run_epoch

from veilnet.chain.epoch import EpochInput, EpochOutput, SparseRow, run_epoch

U16 = 65_535


def _assert_same(inputs: EpochInput) -> EpochOutput:
    fast = run_epoch(inputs)
    reference = reference_run_epoch(inputs)
    for name in EpochOutput.__dataclass_fields__:
        assert getattr(fast, name) == getattr(reference, name), f"{name} differs for {inputs}"
    return fast


def _row(rng: random.Random, n: int, density: float) -> SparseRow:
    cols = [j for j in range(n) if rng.random() < density]
    return [(j, rng.choice([0, 1, U16, rng.randint(0, U16)])) for j in cols]


def _random_input(rng: random.Random, n: int, validators: int) -> EpochInput:
    density = rng.choice([0.05, 0.3, 1.0])
    stake = [
        rng.choice([0, rng.randint(1, 10**6), rng.randint(10**9, 10**15)]) if uid < validators else rng.choice([0, 0, 5])
        for uid in range(n)
    ]
    weights = [_row(rng, n, density) if uid < validators or rng.random() < 0.1 else [] for uid in range(n)]
    bonds = [_row(rng, n, density) if uid < validators and rng.random() < 0.7 else [] for uid in range(n)]
    commit_blocks = [rng.choice([None, rng.randint(0, 30)]) for _ in range(n)] if rng.random() < 0.4 else None
    return EpochInput(
        n=n,
        current_block=rng.randint(1, 40),
        tempo=rng.randint(1, 10),
        activity_cutoff=rng.randint(0, 40),
        last_mechanism_step_block=rng.choice([0, rng.randint(0, 30)]),
        stake=stake,
        last_update=[rng.randint(0, 30) for _ in range(n)],
        block_at_registration=[rng.randint(0, 30) for _ in range(n)],
        validator_permit=[rng.random() < 0.8 for _ in range(n)],
        weights=weights,
        bonds=bonds,
        kappa=rng.choice([0, 32_767, U16, rng.randint(0, U16)]),
        bonds_penalty=rng.choice([0, U16, rng.randint(0, U16)]),
        bonds_moving_average=rng.choice([0, 900_000, 975_000, 1_000_000, rng.randint(0, 1_000_000), 3_000_000]),
        max_allowed_validators=rng.randint(1, n + 2),
        yuma3=rng.random() < 0.6,
        liquid_alpha=rng.random() < 0.5,
        alpha_low=rng.randint(0, U16),
        alpha_high=rng.randint(0, U16),
        alpha_sigmoid_steepness=rng.randint(-32_768, 32_767),
        rao_emission=rng.randint(0, 10**10),
        owner_uid=rng.choice([None, rng.randrange(n)]),
        stake_threshold=rng.choice([0, 10**5]),
        commit_blocks=commit_blocks,
    )


@pytest.mark.parametrize("seed", range(8))
def test_small_random_subnets_match(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(60):
        n = rng.choice([1, 2, 3, 5, 8, 17, 40])
        _assert_same(_random_input(rng, n, rng.randint(1, n)))


@pytest.mark.parametrize(("yuma3", "liquid_alpha", "density"), [(True, False, 1.0), (True, True, 0.3), (False, False, 0.5)])
def test_full_size_subnet_matches(yuma3: bool, liquid_alpha: bool, density: float) -> None:
    rng = random.Random(256)
    n, validators = 256, 64
    base = _random_input(rng, n, validators)
    served = [j for j in range(validators, n) if rng.random() < density]  # the miners validators weight
    inputs = replace(
        base,
        current_block=10_000, tempo=360, activity_cutoff=5_000, last_mechanism_step_block=9_639,
        last_update=[9_990] * n, block_at_registration=[rng.choice([0, 9_700]) for _ in range(n)],
        validator_permit=[uid < validators for uid in range(n)], max_allowed_validators=validators,
        weights=[[(j, rng.randint(1, U16)) for j in served if rng.random() < 0.9] if uid < validators else []
                 for uid in range(n)],
        bonds=[_row(rng, n, density) if uid < validators else [] for uid in range(n)],
        stake=[rng.randint(10**9, 10**14) if uid < validators else 0 for uid in range(n)], kappa=32_767,
        yuma3=yuma3, liquid_alpha=liquid_alpha, commit_blocks=None, stake_threshold=0, owner_uid=None,
    )
    out = _assert_same(inputs)
    assert sum(out.incentive) > 0 and sum(out.dividends) > 0  # a case that exercises every step


@pytest.mark.parametrize(("yuma3", "liquid_alpha"), [(True, False), (True, True), (False, False)])
def test_bonds_carried_over_epochs_match(yuma3: bool, liquid_alpha: bool) -> None:
    rng = random.Random(7)
    n, validators = 48, 6
    stake = [rng.randint(1, 100) * 10**9 if uid < validators else 0 for uid in range(n)]
    permits = [False] * n
    bonds: list[SparseRow] = [[] for _ in range(n)]
    for epoch in range(6):
        block = 100 * (epoch + 1)
        out = _assert_same(
            EpochInput(
                n=n, current_block=block, tempo=99, activity_cutoff=5_000, last_mechanism_step_block=block - 100,
                stake=stake, last_update=[block - 1] * n, block_at_registration=[0] * n, validator_permit=permits,
                weights=[_row(rng, n, 0.6) if uid < validators else [] for uid in range(n)], bonds=bonds,
                yuma3=yuma3, liquid_alpha=liquid_alpha, max_allowed_validators=validators,
            )
        )
        permits, bonds = out.validator_permit, out.bonds
    assert any(bonds[:validators])


def _edge(n: int, **overrides: object) -> EpochInput:
    base = EpochInput(
        n=n, current_block=10, tempo=5, activity_cutoff=100, last_mechanism_step_block=4,
        stake=[10**9] * n, last_update=[9] * n, block_at_registration=[0] * n, validator_permit=[True] * n,
        weights=[[(j, U16) for j in range(n)] for _ in range(n)], bonds=[[(j, 30_000) for j in range(n)] for _ in range(n)],
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "inputs"),
    [
        ("n = 1", _edge(1)),
        ("n = 1, owner", _edge(1, owner_uid=0)),
        ("zero stake", _edge(6, stake=[0] * 6)),
        ("zero stake, legacy", _edge(6, stake=[0] * 6, yuma3=False)),
        ("all weights to self", _edge(6, weights=[[(i, U16)] for i in range(6)])),
        ("all weights to self, owner", _edge(6, weights=[[(i, U16)] for i in range(6)], owner_uid=2)),
        ("no weights, no bonds", _edge(5, weights=[[]] * 5, bonds=[[]] * 5)),
        ("all zero weights", _edge(5, weights=[[(j, 0) for j in range(5)] for _ in range(5)], liquid_alpha=True)),
        ("nobody active", _edge(5, current_block=1_000)),
        ("no permits", _edge(5, validator_permit=[False] * 5)),
        ("one validator holds all", _edge(4, stake=[10**12, 0, 0, 0])),
        ("kappa 0", _edge(7, kappa=0, stake=[1, 2, 3, 4, 5, 6, 7])),
        ("kappa max", _edge(7, kappa=U16, stake=[1, 2, 3, 4, 5, 6, 7])),
        ("every commit expired", _edge(5, commit_blocks=[None] * 5, block_at_registration=[0, 0, 12, 12, 0])),
        ("commits before registrations", _edge(5, commit_blocks=[1, 2, 3, 4, 5], block_at_registration=[0, 3, 3, 0, 9])),
        ("huge moving average", _edge(5, bonds_moving_average=2**63)),
        ("liquid, negative steepness", _edge(5, liquid_alpha=True, alpha_sigmoid_steepness=-32_768,
                                              weights=[[(0, 1), (3, U16)]] * 5)),
        ("tiny stakes beside huge", _edge(6, stake=[1, 1, 2**62, 1, 0, 2**63])),
    ],
)
def test_edge_cases_match(name: str, inputs: EpochInput) -> None:
    _assert_same(inputs)
