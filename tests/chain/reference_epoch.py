"""The epoch as first written: entry by entry on Python integers, each helper mirroring one function of
subtensor's epoch/math.rs. Kept as the reference that ``veilnet.chain.epoch.run_epoch`` (numpy) must match
bit for bit (tests/chain/test_epoch_equivalence.py); ``bench/bench_epoch.py`` times both.
"""

from __future__ import annotations

import math

from veilnet.chain import fixed as fx
from veilnet.chain.epoch import EpochInput, EpochOutput, SparseRow

__all__ = ["reference_run_epoch"]

_Sparse = list[list[tuple[int, int]]]  # rows of (column, I32F32 bits)


# --- sparse matrix helpers (each mirrors one function of epoch/math.rs) ---------------------------------


def _is_topk_nonzero(vector: list[int], k: int) -> list[bool]:
    result = [v != 0 for v in vector]
    n = len(vector)
    if n < k:
        return result
    order = sorted(range(n), key=lambda i: vector[i])  # stable ascending: ties drop the lower uid first
    for idx in order[: max(0, n - k)]:
        result[idx] = False
    return result


def _mask_outdated(matrix: _Sparse, first: list[int], second: list[int], *, strict: bool) -> _Sparse:
    """vec_mask_sparse_matrix: drop (i, j) when first[i] <= second[j] (or < when strict)."""
    out: _Sparse = []
    for i, row in enumerate(matrix):
        fv = first[i] if i < len(first) else 0
        if strict:
            out.append([(j, v) for j, v in row if not fv < (second[j] if j < len(second) else 0)])
        else:
            out.append([(j, v) for j, v in row if not fv <= (second[j] if j < len(second) else 0)])
    return out


def _row_normalize(matrix: _Sparse) -> _Sparse:
    out: _Sparse = []
    for row in matrix:
        total = sum(v for _, v in row)
        out.append([(j, fx.safe_div(v, total)) for j, v in row] if total > 0 else list(row))
    return out


def _col_normalize(matrix: _Sparse, n: int) -> _Sparse:
    sums = [0] * n
    for row in matrix:
        for j, v in row:
            if j < n:
                sums[j] = fx.add(sums[j], v)
    return [[(j, fx.safe_div(v, sums[j]) if j < n and sums[j] != 0 else v) for j, v in row] for row in matrix]


def _col_max_upscale(matrix: _Sparse, n: int) -> _Sparse:
    maxes = [0] * n
    for row in matrix:
        for j, v in row:
            if j < n and maxes[j] < v:
                maxes[j] = v
    return [[(j, fx.safe_div(v, maxes[j]) if j < n and maxes[j] != 0 else v) for j, v in row] for row in matrix]


def _weighted_median(stake: list[int], score: list[int], minority: int, hi: int) -> int:
    """weighted_median of math.rs: quickselect on stake mass around ``minority``."""
    current = list(range(len(stake)))
    lo = 0
    limit = len(current)
    iterations = 0
    while True:
        n = len(current)
        if n == 0:
            return 0
        if n == 1:
            return score[current[0]]
        pivot = score[current[n // 2]]
        lo_stake = hi_stake = 0
        lower: list[int] = []
        upper: list[int] = []
        for idx in current:
            value = score[idx]
            if value == pivot:
                continue
            if value < pivot:
                lo_stake = fx.add(lo_stake, stake[idx])
                lower.append(idx)
            else:
                hi_stake = fx.add(hi_stake, stake[idx])
                upper.append(idx)
        if minority < fx.add(lo, lo_stake) and lower:
            current = lower
            hi = fx.add(lo, lo_stake)
        elif fx.add(hi, -hi_stake) <= minority and upper:
            current = upper
            lo = fx.add(hi, -hi_stake)
        else:
            return pivot
        iterations += 1
        if iterations > limit:
            return 0


def _weighted_median_cols(stake: list[int], weights: _Sparse, n: int, kappa: int) -> list[int]:
    use_stake = fx.normalize([s for s in stake if s > 0])
    stake_sum = sum(use_stake)
    minority = fx.add(stake_sum, -kappa)
    columns = [[0] * len(use_stake) for _ in range(n)]
    k = 0
    for s, row in zip(stake, weights, strict=False):
        if s > 0:
            for j, v in row:
                if j < n:
                    columns[j][k] = v
            k += 1
    if not use_stake:
        return [0] * n
    return [_weighted_median(use_stake, column, minority, stake_sum) for column in columns]


def _col_clip(matrix: _Sparse, threshold: list[int]) -> _Sparse:
    out: _Sparse = []
    for row in matrix:
        new_row: list[tuple[int, int]] = []
        for j, v in row:
            th = threshold[j] if j < len(threshold) else 0
            if th < v:
                if th > 0:
                    new_row.append((j, th))
            else:
                new_row.append((j, v))
        out.append(new_row)
    return out


def _matmul(matrix: _Sparse, vector: list[int], n: int) -> list[int]:
    result = [0] * n
    for i, row in enumerate(matrix):
        scale = vector[i] if i < len(vector) else 0
        for j, v in row:
            if j < n:
                result[j] = fx.add(result[j], fx.mul(scale, v))
    return result


def _interpolate(mat1: _Sparse, mat2: _Sparse, n: int, ratio: int) -> _Sparse:
    if ratio == 0:
        return [list(r) for r in mat1]
    if ratio == fx.ONE:
        return [list(r) for r in mat2]
    out: _Sparse = []
    for row1_sparse, row2_sparse in zip(mat1, mat2, strict=True):
        row1 = [0] * n
        row2 = [0] * n
        for j, v in row1_sparse:
            row1[j] = v
        for j, v in row2_sparse:
            row2[j] = v
        new_row = []
        for j in range(n):
            value = fx.add(row1[j], fx.mul(ratio, fx.add(row2[j], -row1[j])))
            if value > 0:
                new_row.append((j, value))
        out.append(new_row)
    return out


def _mat_ema(new: _Sparse, old: _Sparse, alpha: int, n: int) -> _Sparse:
    one_minus_alpha = fx.add(fx.ONE, -alpha)
    out: _Sparse = []
    for i, new_row in enumerate(new):
        acc = [0] * n
        for j, v in new_row:
            acc[j] = fx.add(acc[j], fx.mul(alpha, v))
        if i < len(old):
            for j, v in old[i]:
                acc[j] = fx.add(acc[j], fx.mul(one_minus_alpha, v))
        out.append([(j, v) for j, v in enumerate(acc) if v > 0])
    return out


def _mat_ema_alpha(new: _Sparse, old: _Sparse, alphas: list[list[int]]) -> _Sparse:
    out: _Sparse = []
    for new_row, old_row, alpha_row in zip(new, old, alphas, strict=True):
        decayed = [0] * len(alpha_row)
        for j, v in old_row:
            if j < len(alpha_row):
                decayed[j] = fx.mul(fx.add(fx.ONE, -alpha_row[j]), v)
        row = []
        for j, v in new_row:
            if j < len(alpha_row):
                inc = max(fx.mul(alpha_row[j], v), 0)
                value = min(fx.add(decayed[j], inc), fx.ONE)
                if value > 0:
                    row.append((j, value))
        out.append(row)
    return out


def _alpha_sigmoid(consensus: int, weight: int, bond: int, low: int, high: int, steepness: int) -> int:
    def clamp(value: int, lo: int, hi: int) -> int:
        return max(min(value, hi), lo)

    diff_buy = clamp(fx.add(weight, -consensus), 0, fx.ONE)
    diff_sell = clamp(fx.add(bond, -weight), 0, fx.ONE)
    combined = diff_buy if weight >= bond else diff_sell
    exponent = fx.mul(fx.saturating_div(steepness, fx.from_int(-100)), fx.add(combined, -(fx.ONE // 2)))
    exponent = clamp(exponent, fx.from_int(-20), fx.from_int(20))
    exp_value = math.floor(math.exp(fx.to_float(exponent)) * fx.ONE)
    sigmoid = fx.saturating_div(fx.ONE, fx.add(fx.ONE, exp_value))
    alpha = fx.add(low, fx.mul(sigmoid, fx.add(high, -low)))
    return clamp(alpha, low, high)


def _liquid_alphas(weights: _Sparse, bonds: _Sparse, consensus: list[int], inputs: EpochInput) -> list[list[int]]:
    low = fx.u16_proportion(inputs.alpha_low)
    high = fx.u16_proportion(inputs.alpha_high)
    steepness = fx.from_int(inputs.alpha_sigmoid_steepness)
    alphas = []
    for w_row, b_row in zip(weights, bonds, strict=True):
        w = dict(w_row)
        b = dict(b_row)
        alphas.append(
            [_alpha_sigmoid(c, w.get(j, 0), b.get(j, 0), low, high, steepness) for j, c in enumerate(consensus)]
        )
    return alphas


def _ema_alpha_from_moving_average(bonds_moving_average: int) -> int:
    # I64F64(bma) / I64F64(1e6), then I32F32::from_num (drops 32 fractional bits), then 1 - that.
    bma_64 = ((bonds_moving_average << 64) << 64) // (1_000_000 << 64)
    return fx.add(fx.ONE, -fx.fixed64_to_fixed32(bma_64))


# --- the epoch -------------------------------------------------------------------------------------


def reference_run_epoch(inputs: EpochInput) -> EpochOutput:
    """One epoch, computed entry by entry on Python integers."""
    n = inputs.n
    current_block = inputs.current_block

    inactive = [updated + inputs.activity_cutoff < current_block for updated in inputs.last_update]
    active = [not flag for flag in inactive]

    # Stake: threshold filter (the owner is exempt), normalise in I64F64, then to I32F32.
    owner = inputs.owner_uid
    filtered = [0 if (uid != owner and s < inputs.stake_threshold) else s for uid, s in enumerate(inputs.stake)]
    stake = [fx.fixed64_to_fixed32(v) for v in fx.normalize_64(filtered)]

    # Validator permits: the stored ones gate this epoch; new ones are top-k by stake.
    permits = list(inputs.validator_permit)
    if owner is not None and owner < n:
        permits[owner] = True
    forbids = [not p for p in permits]
    new_permits = _is_topk_nonzero(stake, inputs.max_allowed_validators)
    if owner is not None and owner < n:
        new_permits[owner] = True

    active_stake = [0 if (inactive[i] or forbids[i]) else s for i, s in enumerate(stake)]
    active_stake = fx.normalize(active_stake)

    # Weights: u16 -> fixed, masks, row normalisation.
    weights: _Sparse = [[(j, fx.from_int(w)) for j, w in row if j < n] for row in inputs.weights]
    weights = [[] if forbids[i] else row for i, row in enumerate(weights)]
    weights = [
        [(j, v) for j, v in row if i != j or (owner is not None and i == owner and j == owner)]
        for i, row in enumerate(weights)
    ]
    weights = _mask_outdated(weights, inputs.last_update, inputs.block_at_registration, strict=False)
    if inputs.commit_blocks is not None:
        commits = [(2**64 - 1) if c is None else c for c in inputs.commit_blocks]
        weights = _mask_outdated(weights, commits, inputs.block_at_registration, strict=True)
    weights = _row_normalize(weights)

    kappa = fx.u16_proportion(inputs.kappa)
    consensus = _weighted_median_cols(active_stake, weights, n, kappa)
    clipped = _col_clip(weights, consensus)
    validator_trust = [sum(v for _, v in row) for row in clipped]
    incentive = fx.normalize(_matmul(clipped, active_stake, n))

    bonds_penalty = fx.u16_proportion(inputs.bonds_penalty)
    weights_for_bonds = _interpolate(weights, clipped, n, bonds_penalty)
    last_tempo = (
        max(current_block - inputs.tempo, 0)
        if inputs.last_mechanism_step_block == 0
        else inputs.last_mechanism_step_block + 1
    )
    registered = inputs.block_at_registration

    if inputs.yuma3:
        bonds: _Sparse = [
            [(j, fx.safe_div(fx.from_int(b), fx.from_int(fx.U16_MAX))) for j, b in row if j < n]
            for row in inputs.bonds
        ]
        bonds = [[(j, v) for j, v in row if not last_tempo <= registered[j]] for row in bonds]
        if inputs.liquid_alpha and consensus and any(c != 0 for c in consensus):
            ema_bonds = _mat_ema_alpha(weights_for_bonds, bonds, _liquid_alphas(weights_for_bonds, bonds, consensus, inputs))
        else:
            ema_bonds = _mat_ema(weights_for_bonds, bonds, _ema_alpha_from_moving_average(inputs.bonds_moving_average), n)
        ema_norm = _col_normalize(ema_bonds, n)
        per_validator = [
            sum(p for p in (fx.mul(v, incentive[j]) for j, v in row) if p != 0) for row in ema_norm
        ]
        dividends = [
            (a * b) >> fx.FRAC if fx.I64_MIN <= (a * b) >> fx.FRAC <= fx.I64_MAX else 0
            for a, b in zip(per_validator, active_stake, strict=True)
        ]
        dividends = fx.normalize(dividends)
        stored_bonds = ema_bonds
    else:
        bonds = [[(j, fx.from_int(b)) for j, b in row if j < n] for row in inputs.bonds]
        bonds = [[(j, v) for j, v in row if not last_tempo <= registered[j]] for row in bonds]
        bonds = _col_normalize(bonds, n)
        delta = [[(j, fx.mul(v, active_stake[i])) for j, v in row] for i, row in enumerate(weights_for_bonds)]
        delta = _col_normalize(delta, n)
        ema_bonds = _mat_ema(delta, bonds, _ema_alpha_from_moving_average(inputs.bonds_moving_average), n)
        ema_bonds = _col_normalize(ema_bonds, n)
        dividends = fx.normalize(
            [sum(fx.mul(incentive[j], v) for j, v in row) for row in ema_bonds]
        )
        stored_bonds = _col_max_upscale(ema_bonds, n)

    # Emission.
    combined = [fx.add(i, d) for i, d in zip(incentive, dividends, strict=True)]
    emission_sum = sum(combined)
    norm_server = [fx.safe_div(v, emission_sum) for v in incentive] if emission_sum != 0 else list(incentive)
    norm_validator = [fx.safe_div(v, emission_sum) for v in dividends] if emission_sum != 0 else list(dividends)
    norm_combined = fx.normalize(combined)
    if emission_sum == 0:
        if sum(active_stake) == 0:
            norm_validator = list(stake)
            norm_combined = list(stake)
        else:
            norm_validator = list(active_stake)
            norm_combined = list(active_stake)

    rao = inputs.rao_emission

    def to_rao(values: list[int]) -> list[int]:
        return [max(0, (v * rao) >> fx.FRAC) for v in values]

    out_bonds: list[SparseRow] = []
    for uid in range(n):
        if new_permits[uid]:
            out_bonds.append([(j, fx.proportion_to_u16(v)) for j, v in stored_bonds[uid]])
        else:
            out_bonds.append([])

    return EpochOutput(
        incentive=[fx.proportion_to_u16(v) for v in incentive],
        dividends=[fx.proportion_to_u16(v) for v in dividends],
        consensus=[fx.proportion_to_u16(v) for v in consensus],
        validator_trust=[fx.proportion_to_u16(v) for v in validator_trust],
        bonds=out_bonds,
        server_emission=to_rao(norm_server),
        validator_emission=to_rao(norm_validator),
        validator_permit=new_permits,
        active=active,
        emission=to_rao(norm_combined),
        stake_weight=[fx.proportion_to_u16(v) for v in stake],
    )
