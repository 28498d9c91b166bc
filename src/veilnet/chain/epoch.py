"""Subtensor's epoch (Yuma Consensus), exactly, as a pure function.

``run_epoch(EpochInput) -> EpochOutput`` reproduces ``epoch_mechanism`` of the subtensor pallet
(pallets/subtensor/src/epoch/run_epoch.rs, runtime spec >= 423) in its I32F32 fixed-point arithmetic
(:mod:`veilnet.chain.fixed`): activity cutoff, stake threshold and normalisation, validator permits
(top-k by stake), the weight masks, row normalisation, stake-weighted median consensus at kappa,
clipping, validator trust, incentive, bonds (Yuma3 EMA with optional liquid alpha; legacy Yuma EMA),
dividends and the server/validator emission split. All quantities are integers as stored on chain;
arrays are indexed by uid; weights and bonds are sparse rows ``[(uid, u16), ...]`` with each uid at most
once per row (as the chain stores them).

The matrices are held densely in numpy ``int64`` (the I32F32 bits) for the rows that carry weights, bonds or
stake, beside a mask of which sparse entries exist (the pallet keeps an explicit zero apart from a missing
entry in a few places); per-uid vectors stay Python integers. The stake-weighted median is computed in
closed form: the pallet's quickselect always returns the smallest column value whose cumulative stake
exceeds ``stake_sum - kappa`` (the largest value when none does), whatever pivots it draws.

One approximation: liquid alpha's sigmoid uses the float ``exp`` (the pallet uses a fixed-point series),
so liquid-alpha rates may differ from the chain's in the last bits. Everything else is bit-exact.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from veilnet.chain import fixed as fx
from veilnet.chain.fixed import Bits

__all__ = ["EpochInput", "EpochOutput", "SparseRow", "run_epoch"]

SparseRow = list[tuple[int, int]]
_Mask = NDArray[np.bool_]
_NO_COMMIT = 2**64 - 1


@dataclass(frozen=True)
class EpochInput:
    n: int
    current_block: int
    tempo: int
    activity_cutoff: int
    last_mechanism_step_block: int
    stake: list[int]
    last_update: list[int]
    block_at_registration: list[int]
    validator_permit: list[bool]
    weights: list[SparseRow]
    bonds: list[SparseRow]
    kappa: int = 32_767
    bonds_penalty: int = 65_535
    bonds_moving_average: int = 900_000
    max_allowed_validators: int = 64
    yuma3: bool = True
    liquid_alpha: bool = False
    alpha_low: int = 45_875
    alpha_high: int = 58_982
    alpha_sigmoid_steepness: int = 1_000
    rao_emission: int = 1_000_000_000
    owner_uid: int | None = None
    stake_threshold: int = 0
    # Commit-reveal column mask: per uid, the block of its earliest unexpired commit (None: no commit).
    commit_blocks: list[int | None] | None = None


@dataclass(frozen=True)
class EpochOutput:
    incentive: list[int]
    dividends: list[int]
    consensus: list[int]
    validator_trust: list[int]
    bonds: list[SparseRow]
    server_emission: list[int]
    validator_emission: list[int]
    validator_permit: list[bool]
    active: list[bool] = field(default_factory=list)
    emission: list[int] = field(default_factory=list)
    stake_weight: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class _Matrix:
    """Rows ``rows`` (uids) of a sparse n-column matrix, dense: I32F32 values, and which entries exist."""

    values: Bits
    present: _Mask


# --- per-uid vectors (Python integers, as the pallet's Vec<I32F32>) ----------------------------------------


def _is_topk_nonzero(vector: list[int], k: int) -> list[bool]:
    result = [v != 0 for v in vector]
    n = len(vector)
    if n < k:
        return result
    order = sorted(range(n), key=lambda i: vector[i])  # stable ascending: ties drop the lower uid first
    for idx in order[: max(0, n - k)]:
        result[idx] = False
    return result


def _ema_alpha_from_moving_average(bonds_moving_average: int) -> int:
    # I64F64(bma) / I64F64(1e6), then I32F32::from_num (drops 32 fractional bits), then 1 - that.
    bma_64 = ((bonds_moving_average << 64) << 64) // (1_000_000 << 64)
    return fx.add(fx.ONE, -fx.fixed64_to_fixed32(bma_64))


def _u16(values: list[int]) -> list[int]:
    return [fx.proportion_to_u16(v) for v in values]


# --- matrices ----------------------------------------------------------------------------------------------


def _dense(sparse: list[SparseRow], rows: NDArray[np.intp], n: int) -> tuple[Bits, _Mask]:
    """The raw integers of ``sparse``'s rows ``rows`` (entries outside 0..n-1 dropped), and their presence."""
    values = np.zeros((len(rows), n), dtype=np.int64)
    present = np.zeros((len(rows), n), dtype=np.bool_)
    lengths = [len(sparse[i]) for i in rows.tolist()]
    count = sum(lengths)
    if count == 0:
        return values, present
    pairs = np.fromiter(
        itertools.chain.from_iterable(itertools.chain.from_iterable(sparse[i] for i in rows.tolist())),
        dtype=np.int64, count=2 * count,
    ).reshape(count, 2)
    row_index = np.repeat(np.arange(len(rows)), lengths)
    cols = pairs[:, 0]
    keep = (cols >= 0) & (cols < n)
    values[row_index[keep], cols[keep]] = pairs[keep, 1]
    present[row_index[keep], cols[keep]] = True
    return values, present


def _blocks(values: list[int] | list[int | None], fill: int = _NO_COMMIT) -> NDArray[np.uint64]:
    return np.array([fill if v is None else v for v in values], dtype=np.uint64)


def _weights(inputs: EpochInput, rows: NDArray[np.intp], forbids: list[bool]) -> _Matrix:
    """Weights as the epoch uses them: masked (permits, self-weights, outdated, commit-reveal), row-normalised."""
    n = inputs.n
    raw, present = _dense(inputs.weights, rows, n)
    present &= ~np.array([forbids[i] for i in rows.tolist()], dtype=np.bool_)[:, None]
    self_weight = rows[:, None] == np.arange(n)[None, :]
    if inputs.owner_uid is not None:
        self_weight &= rows[:, None] != inputs.owner_uid
    present &= ~self_weight
    registered = _blocks(inputs.block_at_registration)
    last_update = _blocks(inputs.last_update)[rows]
    present &= ~(last_update[:, None] <= registered[None, :])
    if inputs.commit_blocks is not None:
        commits = _blocks(inputs.commit_blocks)[rows]
        present &= ~(commits[:, None] < registered[None, :])
    raw = np.where(present, raw, 0)
    # safe_div(w << 32, W << 32) with W the row's u16 total is exactly (w << 32) // W: no 128-bit product.
    totals = raw.sum(axis=1, keepdims=True)
    values = np.where(totals > 0, (raw << fx.FRAC) // np.maximum(totals, 1), raw << fx.FRAC)
    return _Matrix(values, present)


def _consensus(weights: Bits, active_stake: Bits, kappa: int, n: int) -> Bits:
    """weighted_median_col_sparse: per column, the smallest value whose cumulative stake exceeds the minority."""
    voting = active_stake > 0
    if not voting.any():
        return np.zeros(n, dtype=np.int64)
    use_stake = np.array(fx.normalize(active_stake[voting].tolist()), dtype=np.int64)
    minority = fx.add(int(use_stake.sum()), -kappa)
    columns = weights[voting]
    order = np.argsort(columns, axis=0, kind="stable")
    ordered = np.take_along_axis(columns, order, axis=0)
    cumulative = np.cumsum(use_stake[order], axis=0)
    first_above = np.minimum((cumulative <= minority).sum(axis=0), len(use_stake) - 1)
    return np.asarray(ordered[first_above, np.arange(n)], dtype=np.int64)


def _clip(weights: _Matrix, consensus: Bits) -> _Matrix:
    """col_clip_sparse: a weight above consensus becomes the consensus, or is dropped when that is 0."""
    over = weights.values > consensus[None, :]
    present = weights.present & ~(over & (consensus[None, :] <= 0))
    values = np.where(over, consensus[None, :], weights.values)
    return _Matrix(np.where(present, values, 0), present)


def _interpolate(first: _Matrix, second: _Matrix, ratio: int) -> _Matrix:
    if ratio == 0:
        return first
    if ratio == fx.ONE:
        return second
    values = fx.add_array(first.values, fx.mul_array(ratio, fx.add_array(second.values, -first.values)))
    return _Matrix(np.where(values > 0, values, 0), values > 0)


def _col_normalize(values: Bits) -> Bits:
    """col_normalize of non-negative entries: each divided by its column's (saturating) sum, unless that is 0."""
    sums = _column_sums(values)
    return _divide_columns(values, sums)


def _divide_columns(values: Bits, divisors: Bits) -> Bits:
    safe = np.broadcast_to(np.where(divisors > 0, divisors, 1), values.shape)
    return np.where(divisors[None, :] > 0, fx.unit_div_array(values, safe), values)


def _column_sums(values: Bits) -> Bits:
    """Saturating column sums of non-negative entries (a saturating running sum of them is min(sum, MAX))."""
    if values.size and float(values.max()) * values.shape[0] >= 2.0**62:
        return np.array([min(sum(column), fx.I64_MAX) for column in values.T.tolist()], dtype=np.int64)
    return np.asarray(values.sum(axis=0), dtype=np.int64)


def _col_max_upscale(values: Bits) -> Bits:
    return _divide_columns(values, values.max(axis=0, initial=0))


def _mat_ema(new: Bits, old: Bits, alpha: int) -> _Matrix:
    values = fx.add_array(fx.mul_array(alpha, new), fx.mul_array(fx.add(fx.ONE, -alpha), old))
    return _Matrix(np.where(values > 0, values, 0), values > 0)


def _liquid_alpha(consensus: Bits, weight: Bits, bond: Bits, inputs: EpochInput) -> Bits:
    """alpha_sigmoid elementwise: the bond EMA rate from how far a weight is from consensus (or below its bond)."""
    low = fx.u16_proportion(inputs.alpha_low)
    high = fx.u16_proportion(inputs.alpha_high)
    steepness = fx.from_int(inputs.alpha_sigmoid_steepness)
    diff_buy = np.clip(fx.add_array(weight, -consensus), 0, fx.ONE)
    diff_sell = np.clip(fx.add_array(bond, -weight), 0, fx.ONE)
    combined = np.where(weight >= bond, diff_buy, diff_sell)
    exponent = fx.mul_array(fx.saturating_div(steepness, fx.from_int(-100)), fx.add_array(combined, -(fx.ONE // 2)))
    exponent = np.clip(exponent, fx.from_int(-20), fx.from_int(20))
    # The float exp of Python's math module, value by value, exactly as the scalar definition uses it.
    exp_float = np.array([math.exp(x) for x in (exponent.astype(np.float64) / fx.ONE).tolist()], dtype=np.float64)
    exp_value = np.floor(exp_float * float(fx.ONE)).astype(np.int64)
    sigmoid = fx.recip_array(fx.add_array(fx.ONE, exp_value))
    alpha = fx.add_array(low, fx.mul_array(sigmoid, fx.add(high, -low)))
    return np.maximum(np.minimum(alpha, high), low)


def _mat_ema_alpha(new: _Matrix, old: Bits, consensus: Bits, inputs: EpochInput) -> _Matrix:
    """mat_ema_alpha with liquid alpha: only entries present in ``new`` survive."""
    rows, cols = np.nonzero(new.present)
    weight = new.values[rows, cols]
    bond = old[rows, cols]
    alpha = _liquid_alpha(consensus[cols], weight, bond, inputs)
    decayed = fx.mul_array(fx.add_array(fx.ONE, -alpha), bond)
    increase = np.maximum(fx.mul_array(alpha, weight), 0)
    value = np.minimum(fx.add_array(decayed, increase), fx.ONE)
    values = np.zeros_like(new.values)
    values[rows, cols] = np.where(value > 0, value, 0)
    return _Matrix(values, values > 0)


# --- the epoch -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Consensus:
    rows: NDArray[np.intp]
    active_stake: list[int]
    weights: _Matrix
    consensus: Bits
    clipped: _Matrix
    incentive: list[int]


def _bond_inputs(inputs: EpochInput, rows: NDArray[np.intp], *, as_proportion: bool) -> Bits:
    raw, present = _dense(inputs.bonds, rows, inputs.n)
    last_tempo = (
        max(inputs.current_block - inputs.tempo, 0)
        if inputs.last_mechanism_step_block == 0
        else inputs.last_mechanism_step_block + 1
    )
    fresh = _blocks(inputs.block_at_registration) >= np.uint64(last_tempo)  # bonds to them are reset
    present &= ~fresh[None, :]
    bits = (raw << fx.FRAC) // fx.U16_MAX if as_proportion else raw << fx.FRAC
    return np.where(present, bits, 0)


def _yuma3_bonds(inputs: EpochInput, state: _Consensus, weights_for_bonds: _Matrix) -> tuple[list[int], _Matrix]:
    bonds = _bond_inputs(inputs, state.rows, as_proportion=True)
    if inputs.liquid_alpha and bool((state.consensus != 0).any()):
        ema = _mat_ema_alpha(weights_for_bonds, bonds, state.consensus, inputs)
    else:
        ema = _mat_ema(weights_for_bonds.values, bonds, _ema_alpha_from_moving_average(inputs.bonds_moving_average))
    normalized = _col_normalize(ema.values)
    incentive = np.array(state.incentive, dtype=np.int64)
    per_validator = fx.mul_array(normalized, incentive[None, :]).sum(axis=1).tolist()
    dividends = [0] * inputs.n
    for row, uid in enumerate(state.rows.tolist()):
        product = (per_validator[row] * state.active_stake[uid]) >> fx.FRAC
        dividends[uid] = product if fx.I64_MIN <= product <= fx.I64_MAX else 0
    return fx.normalize(dividends), ema


def _legacy_bonds(inputs: EpochInput, state: _Consensus, weights_for_bonds: _Matrix) -> tuple[list[int], _Matrix]:
    bonds = _col_normalize(_bond_inputs(inputs, state.rows, as_proportion=False))
    stake = np.array([state.active_stake[uid] for uid in state.rows.tolist()], dtype=np.int64)
    delta = _col_normalize(fx.mul_array(weights_for_bonds.values, stake[:, None]))
    ema = _mat_ema(delta, bonds, _ema_alpha_from_moving_average(inputs.bonds_moving_average))
    normalized = _col_normalize(ema.values)
    incentive = np.array(state.incentive, dtype=np.int64)
    per_row = fx.mul_array(incentive[None, :], normalized).sum(axis=1).tolist()
    dividends = [0] * inputs.n
    for row, uid in enumerate(state.rows.tolist()):
        dividends[uid] = per_row[row]
    return fx.normalize(dividends), _Matrix(_col_max_upscale(normalized), ema.present)


def _consensus_state(inputs: EpochInput, stake: list[int], permits: list[bool], inactive: list[bool]) -> _Consensus:
    n = inputs.n
    forbids = [not p for p in permits]
    active_stake = fx.normalize([0 if (inactive[i] or forbids[i]) else s for i, s in enumerate(stake)])
    rows = np.array(
        [i for i in range(n) if inputs.weights[i] or inputs.bonds[i] or active_stake[i] > 0], dtype=np.intp
    )
    weights = _weights(inputs, rows, forbids)
    row_stake = np.array([active_stake[i] for i in rows.tolist()], dtype=np.int64)
    consensus = _consensus(weights.values, row_stake, fx.u16_proportion(inputs.kappa), n)
    clipped = _clip(weights, consensus)
    ranked = fx.mul_array(row_stake[:, None], clipped.values).sum(axis=0) if len(rows) else np.zeros(n, np.int64)
    incentive = fx.normalize(ranked.tolist())
    return _Consensus(rows, active_stake, weights, consensus, clipped, incentive)


def _sparse_rows(matrix: _Matrix, rows: NDArray[np.intp], permits: list[bool], n: int) -> list[SparseRow]:
    out: list[SparseRow] = [[] for _ in range(n)]
    u16 = fx.proportion_to_u16_array(matrix.values)
    for row, uid in enumerate(rows.tolist()):
        if permits[uid]:
            cols = np.flatnonzero(matrix.present[row])
            out[uid] = list(zip(cols.tolist(), u16[row, cols].tolist(), strict=True))
    return out


def run_epoch(inputs: EpochInput) -> EpochOutput:
    """One epoch of ``inputs``'s subnet, as subtensor's ``epoch_mechanism`` computes it."""
    n = inputs.n
    inactive = [updated + inputs.activity_cutoff < inputs.current_block for updated in inputs.last_update]

    # Stake: threshold filter (the owner is exempt), normalise in I64F64, then to I32F32.
    owner = inputs.owner_uid
    filtered = [0 if (uid != owner and s < inputs.stake_threshold) else s for uid, s in enumerate(inputs.stake)]
    stake = [fx.fixed64_to_fixed32(v) for v in fx.normalize_64(filtered)]

    # Validator permits: the stored ones gate this epoch; new ones are top-k by stake.
    permits = list(inputs.validator_permit)
    new_permits = _is_topk_nonzero(stake, inputs.max_allowed_validators)
    if owner is not None and owner < n:
        permits[owner] = True
        new_permits[owner] = True

    state = _consensus_state(inputs, stake, permits, inactive)
    validator_trust = [0] * n
    for row, total in zip(state.rows.tolist(), state.clipped.values.sum(axis=1).tolist(), strict=True):
        validator_trust[row] = total
    weights_for_bonds = _interpolate(state.weights, state.clipped, fx.u16_proportion(inputs.bonds_penalty))
    bond_step = _yuma3_bonds if inputs.yuma3 else _legacy_bonds
    dividends, stored_bonds = bond_step(inputs, state, weights_for_bonds)
    server, validator, combined = _emission(state.incentive, dividends, state.active_stake, stake)

    def to_rao(values: list[int]) -> list[int]:
        return [max(0, (v * inputs.rao_emission) >> fx.FRAC) for v in values]

    return EpochOutput(
        incentive=_u16(state.incentive),
        dividends=_u16(dividends),
        consensus=_u16(state.consensus.tolist()),
        validator_trust=_u16(validator_trust),
        bonds=_sparse_rows(stored_bonds, state.rows, new_permits, n),
        server_emission=to_rao(server),
        validator_emission=to_rao(validator),
        validator_permit=new_permits,
        active=[not flag for flag in inactive],
        emission=to_rao(combined),
        stake_weight=_u16(stake),
    )


def _emission(
    incentive: list[int], dividends: list[int], active_stake: list[int], stake: list[int]
) -> tuple[list[int], list[int], list[int]]:
    """Normalised server, validator and combined emission shares."""
    combined = [fx.add(i, d) for i, d in zip(incentive, dividends, strict=True)]
    emission_sum = sum(combined)
    if emission_sum == 0:
        fallback = list(stake) if sum(active_stake) == 0 else list(active_stake)
        return list(incentive), fallback, list(fallback)
    server = [fx.safe_div(v, emission_sum) for v in incentive]
    validator = [fx.safe_div(v, emission_sum) for v in dividends]
    return server, validator, fx.normalize(combined)
