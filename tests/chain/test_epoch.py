"""The epoch against subtensor's own unit tests (pallets/subtensor/src/tests/epoch.rs)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from veilnet.chain.epoch import EpochInput, EpochOutput, run_epoch

U16 = 65_535


def _bonds_case(**overrides: object) -> EpochInput:
    base = EpochInput(
        n=8,
        current_block=1,
        tempo=1,
        activity_cutoff=13,
        last_mechanism_step_block=0,
        stake=[1, 2, 3, 4, 0, 0, 0, 0],
        last_update=[1, 1, 1, 1, 0, 0, 0, 0],
        block_at_registration=[0] * 8,
        validator_permit=[True] * 4 + [False] * 4,
        weights=[[(4, 16383), (5, 32767), (6, 49149), (7, 65535)]] * 4 + [[]] * 4,
        bonds=[[]] * 8,
        yuma3=False,
        bonds_penalty=U16,
        bonds_moving_average=900_000,
        max_allowed_validators=8,
        rao_emission=1_000_000_000,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_bonds_first_epoch_matches_subtensor() -> None:
    out = run_epoch(_bonds_case())
    assert [row[0][1] for row in out.bonds[:4]] == [16383, 32767, 49151, 65535]
    emission = [s + v for s, v in zip(out.server_emission, out.validator_emission, strict=True)]
    assert emission == [49999998, 99999999, 150000000, 200000001, 49998779, 100000610, 149996337, 200004272]
    assert out.validator_permit == [True] * 4 + [False] * 4


def test_bonds_self_weights_over_three_epochs_match_subtensor() -> None:
    first = run_epoch(_bonds_case())
    # uid 0 switches to a self-weight (masked: it is not the owner); one block later the next epoch runs.
    weights = [[(0, U16)]] + [[(4, 16383), (5, 32767), (6, 49149), (7, 65535)]] * 3 + [[]] * 4
    second = run_epoch(
        _bonds_case(current_block=2, weights=weights, bonds=first.bonds, validator_permit=first.validator_permit)
    )
    assert [second.bonds[i][0][1] for i in range(4)] == [14582, 32767, 49151, 65535]
    emission = [s + v for s, v in zip(second.server_emission, second.validator_emission, strict=True)]
    assert emission == [44998351, 101110561, 151667215, 202223870, 49998779, 100000610, 149996337, 200004272]

    weights = [[(0, U16)], [(1, U16)]] + [[(4, 16383), (5, 32767), (6, 49149), (7, 65535)]] * 2 + [[]] * 4
    third = run_epoch(
        _bonds_case(current_block=3, weights=weights, bonds=second.bonds, validator_permit=second.validator_permit)
    )
    assert [third.bonds[i][0][1] for i in range(4)] == [12603, 28321, 49151, 65535]
    emission = [s + v for s, v in zip(third.server_emission, third.validator_emission, strict=True)]
    assert emission == [40496805, 90999783, 157929636, 210573773, 49998779, 100000610, 149996337, 200004272]


def _alpha_u16(value: float) -> int:
    # set_alpha_values_32: I32F32::from_num(value) (round to nearest) * 65535, floored.
    bits = round(value * 2**32)
    return (bits * U16) >> 32


def _yuma3_sequence(
    stakes: list[int], schedule: dict[int, list[list[int]]], epochs: int, *, liquid_alpha: bool
) -> list[EpochOutput]:
    """Replays setup_yuma_3_scenario + run_epoch_and_check_bonds_dividends of the pallet's tests."""
    n = 5
    block = 1
    state = {
        "bonds": [[] for _ in range(n)],
        "permits": [False] * n,
        "weights": [[] for _ in range(n)],
        "last_update": [1] * n,
    }

    def epoch() -> EpochOutput:
        out = run_epoch(
            EpochInput(
                n=n,
                current_block=block,
                tempo=1,
                activity_cutoff=5000,
                last_mechanism_step_block=0,
                stake=stakes,
                last_update=list(state["last_update"]),
                block_at_registration=[1] * n,
                validator_permit=list(state["permits"]),
                weights=[list(r) for r in state["weights"]],
                bonds=[list(r) for r in state["bonds"]],
                kappa=U16 // 2,
                bonds_penalty=0,
                bonds_moving_average=975_000,
                max_allowed_validators=3,
                yuma3=True,
                liquid_alpha=liquid_alpha,
                alpha_low=_alpha_u16(0.1),
                alpha_high=_alpha_u16(0.3),
                alpha_sigmoid_steepness=1000,
            )
        )
        state["bonds"] = out.bonds
        state["permits"] = out.validator_permit
        return out

    block += 1
    epoch()  # setup: first epoch sets permits
    outputs = []
    last = schedule[0]
    for e in range(epochs):
        rows = schedule.get(e, last)
        last = rows
        for uid, row in enumerate(rows):
            state["weights"][uid] = [(3, row[0]), (4, row[1])]
            state["last_update"][uid] = block
        block += 1
        outputs.append(epoch())
    return outputs


def _assert_dividends(outputs: list[EpochOutput], targets: list[list[float]]) -> None:
    for epoch, (out, target) in enumerate(zip(outputs, targets, strict=True)):
        got = [d / U16 for d in out.dividends]
        assert got == pytest.approx(target, abs=1e-3), f"epoch {epoch}: {got} != {target}"


def test_yuma3_kappa_moves_first() -> None:
    schedule = {
        0: [[U16, 0]] * 3,
        1: [[0, U16], [U16, 0], [U16, 0]],
        2: [[0, U16], [0, U16], [U16, 0]],
        3: [[0, U16]] * 3,
    }
    outputs = _yuma3_sequence([8, 1, 1, 0, 0], schedule, 6, liquid_alpha=True)
    _assert_dividends(
        outputs,
        [
            [0.8000, 0.1000, 0.1000, 0.0, 0.0],
            [1.0000, 0.0000, 0.0000, 0.0, 0.0],
            [0.9382, 0.0618, 0.0000, 0.0, 0.0],
            [0.8819, 0.0773, 0.0407, 0.0, 0.0],
            [0.8564, 0.0844, 0.0592, 0.0, 0.0],
            [0.8418, 0.0884, 0.0697, 0.0, 0.0],
        ],
    )


def test_yuma3_liquid_alpha_disabled() -> None:
    schedule = {0: [[U16, 0]] * 3, 2: [[U16, 0], [U16, 0], [0, U16]], 3: [[U16, 0]] * 3}
    outputs = _yuma3_sequence([33, 33, 34, 0, 0], schedule, 6, liquid_alpha=False)
    _assert_dividends(
        outputs,
        [
            [0.3300, 0.3300, 0.3400, 0.0, 0.0],
            [0.3300, 0.3300, 0.3400, 0.0, 0.0],
            [0.3734, 0.3734, 0.2532, 0.0, 0.0],
            [0.3611, 0.3611, 0.2779, 0.0, 0.0],
            [0.3541, 0.3541, 0.2919, 0.0, 0.0],
            [0.3495, 0.3495, 0.3009, 0.0, 0.0],
        ],
    )


def test_no_weights_gives_stake_proportional_validator_emission() -> None:
    out = run_epoch(_bonds_case(weights=[[]] * 8))
    assert out.server_emission == [0] * 8
    assert sum(out.validator_emission) == pytest.approx(1_000_000_000, abs=10)
    assert out.validator_emission[3] > out.validator_emission[0] > 0


def test_owner_self_weight_is_kept_and_others_masked() -> None:
    weights = [[(0, U16)], [(1, U16)], [], [], [], [], [], []]
    out = run_epoch(_bonds_case(weights=weights, owner_uid=0, stake=[7, 1, 1, 1, 0, 0, 0, 0]))
    assert out.incentive[0] == U16  # the owner's self-weight counts
    assert out.incentive[1] == 0  # uid 1's self-weight is masked


def test_weights_older_than_target_registration_are_masked() -> None:
    # uid 7 re-registered at block 5, after the validators set weights at block 1.
    out = run_epoch(_bonds_case(current_block=6, block_at_registration=[0] * 7 + [5]))
    assert out.incentive[7] == 0
    assert out.incentive[4] > 0


def test_inactive_validator_gets_no_dividends() -> None:
    out = run_epoch(_bonds_case(current_block=20, last_update=[1, 1, 1, 19, 0, 0, 0, 0]))
    # activity cutoff 13: validators 0-2 (last update 1) are inactive at block 20
    assert out.dividends[:3] == [0, 0, 0]
    assert out.dividends[3] == U16
