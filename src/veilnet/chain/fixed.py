"""Subtensor's fixed-point arithmetic on plain Python integers (the raw bits of ``substrate_fixed`` types).

``I32F32`` values are signed 64-bit integers with 32 fractional bits; ``I64F64`` signed 128-bit with 64.
Rules, as in the pallet: multiplication floors (arithmetic shift), ``safe_div`` truncates toward zero and
gives 0 for a zero divisor or an overflowing quotient, saturating operations clamp to the type's range.
Everything here is pure.

Each operation comes twice: on Python integers (one value) and on numpy ``int64`` arrays holding the same
bits (``*_array``, elementwise, broadcasting), bit for bit the same results. numpy has no 128-bit integers,
so the array products are assembled from 32-bit halves in ``uint64`` and the quotients by long division in
chunks that cannot overflow; that is the only reason these are written by hand.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FRAC",
    "I64_MAX",
    "I64_MIN",
    "ONE",
    "Bits",
    "add",
    "add_array",
    "fixed64_to_fixed32",
    "from_int",
    "mul",
    "mul_array",
    "normalize",
    "normalize_64",
    "proportion_to_u16",
    "proportion_to_u16_array",
    "recip_array",
    "safe_div",
    "saturating_div",
    "to_float",
    "to_int_floor",
    "u16_proportion",
    "unit_div_array",
]

FRAC = 32
ONE = 1 << FRAC
I64_MAX = (1 << 63) - 1
I64_MIN = -(1 << 63)
_I128_MAX = (1 << 127) - 1
_I128_MIN = -(1 << 127)
U16_MAX = 65_535


def _sat64(x: int) -> int:
    return I64_MAX if x > I64_MAX else I64_MIN if x < I64_MIN else x


def from_int(x: int) -> int:
    """``I32F32::saturating_from_num(x)`` for an integer."""
    return _sat64(x << FRAC)


def add(a: int, b: int) -> int:
    """``saturating_add``."""
    return _sat64(a + b)


def mul(a: int, b: int) -> int:
    """``saturating_mul``: the exact product floored to 32 fractional bits, clamped."""
    return _sat64((a * b) >> FRAC)


def _trunc_div(num: int, den: int) -> int:
    q = abs(num) // abs(den)
    return q if (num >= 0) == (den > 0) else -q


def safe_div(a: int, b: int) -> int:
    """``safe_div``: truncating division; 0 when dividing by zero or when the quotient overflows."""
    if b == 0:
        return 0
    q = _trunc_div(a << FRAC, b)
    return q if I64_MIN <= q <= I64_MAX else 0


def saturating_div(a: int, b: int) -> int:
    """``saturating_div``: truncating division clamped to the range (b != 0)."""
    if b == 0:
        return I64_MAX if a > 0 else I64_MIN if a < 0 else 0
    return _sat64(_trunc_div(a << FRAC, b))


def to_int_floor(x: int) -> int:
    """``saturating_to_num::<int>()``: floor."""
    return x >> FRAC


def to_float(x: int) -> float:
    return x / ONE


def proportion_to_u16(x: int) -> int:
    """``fixed_proportion_to_u16``: x * 65535, floored, clamped to u16."""
    value = mul(x, from_int(U16_MAX)) >> FRAC
    return 0 if value < 0 else U16_MAX if value > U16_MAX else value


def u16_proportion(x: int) -> int:
    """``u16_proportion_to_fixed``: x / 65535 as I32F32."""
    return safe_div(from_int(x), from_int(U16_MAX))


def normalize(values: list[int]) -> list[int]:
    """``inplace_normalize``: divide by the sum unless the sum is 0."""
    total = sum(values)
    if total == 0:
        return list(values)
    return [safe_div(v, total) for v in values]


def normalize_64(values: list[int]) -> list[int]:
    """``inplace_normalize_64`` on integer inputs, returning I64F64 bits (64 fractional bits)."""
    total = sum(values) << 64
    if total == 0:
        return [v << 64 for v in values]
    out = []
    for v in values:
        q = _trunc_div((v << 64) << 64, total)
        out.append(q if _I128_MIN <= q <= _I128_MAX else 0)
    return out


def fixed64_to_fixed32(x: int) -> int:
    """``I32F32::saturating_from_num(I64F64)``: drop 32 fractional bits (floor), clamp."""
    return _sat64(x >> 32)


# --- arrays -------------------------------------------------------------------------------------------

Bits = NDArray[np.int64]

_MASK32 = np.uint64(0xFFFF_FFFF)
_SHIFT32 = np.uint64(32)
_U64_ONE = np.uint64(1)
_TWO_63 = np.uint64(1 << 63)


def add_array(a: Bits | int, b: Bits | int) -> Bits:
    """``saturating_add`` elementwise."""
    x = np.atleast_1d(np.asarray(a, dtype=np.int64))
    y = np.atleast_1d(np.asarray(b, dtype=np.int64))
    total = x + y  # wraps on overflow; the sign test below finds the wrapped entries
    overflow = ((x >= 0) == (y >= 0)) & ((total >= 0) != (x >= 0))
    if overflow.any():
        total = np.where(overflow, np.where(np.broadcast_to(x, total.shape) >= 0, I64_MAX, I64_MIN), total)
    return total


def mul_array(a: Bits | int, b: Bits | int) -> Bits:
    """``saturating_mul`` elementwise: floor(a * b / 2**32), clamped.

    |a| and |b| are split into 32-bit halves (``uint64``); the magnitude of the shifted product is
    ``hi_hi << 32 + (hi_lo + lo_hi) + (lo_lo >> 32)`` with remainder ``lo_lo & (2**32 - 1)``, and a negative
    product floors away from zero when that remainder is not 0.
    """
    x, y = np.broadcast_arrays(np.atleast_1d(np.asarray(a, dtype=np.int64)), np.asarray(b, dtype=np.int64))
    negative = (x < 0) != (y < 0)
    ux = np.abs(x).astype(np.uint64)  # abs(I64_MIN) stays I64_MIN, whose uint64 bits are 2**63: right
    uy = np.abs(y).astype(np.uint64)
    xh, xl = ux >> _SHIFT32, ux & _MASK32
    yh, yl = uy >> _SHIFT32, uy & _MASK32
    hh = xh * yh  # < 2**62
    mid = xh * yl + xl * yh  # each < 2**63: no wrap
    ll = xl * yl
    high = hh << _SHIFT32
    magnitude = high + mid
    wrapped = (hh >= np.uint64(1 << 31)) | (magnitude < mid)
    top = magnitude + (ll >> _SHIFT32)
    wrapped |= top < magnitude
    rounded_up = top + ((ll & _MASK32) != 0).astype(np.uint64) * negative.astype(np.uint64)
    wrapped |= rounded_up < top
    positive_result = np.where(wrapped | (top > np.uint64(I64_MAX)), np.uint64(I64_MAX), top)
    negative_magnitude = np.where(wrapped | (rounded_up > _TWO_63), _TWO_63, rounded_up)
    negative_result = (np.uint64(0) - negative_magnitude).view(np.int64)  # 2**63 -> I64_MIN
    return np.where(negative, negative_result, positive_result.view(np.int64))


def unit_div_array(a: Bits, b: Bits) -> Bits:
    """``safe_div(a, b)`` elementwise where ``0 <= a <= b`` and ``b > 0``: a quotient in ``[0, ONE]``.

    Long division: the integer part (0 or 1), then the 32 fractional bits in chunks as wide as the
    divisor leaves room for in 64 bits.
    """
    ua = np.asarray(a, dtype=np.int64).astype(np.uint64)
    ub = np.asarray(b, dtype=np.int64).astype(np.uint64)
    if ua.size == 0:
        return np.zeros(np.broadcast_shapes(ua.shape, ub.shape), dtype=np.int64)
    chunk = 64 - int(ub.max()).bit_length()
    quotient = ua // ub
    remainder = ua - quotient * ub
    bits = 0
    while bits < FRAC:
        step = np.uint64(min(chunk, FRAC - bits))
        remainder = remainder << step
        quotient = (quotient << step) | (remainder // ub)
        remainder = remainder % ub
        bits += int(step)
    return quotient.view(np.int64)


def recip_array(d: Bits) -> Bits:
    """``saturating_div(ONE, d)`` elementwise for ``d > ONE``: floor(2**64 / d) (no clamp can apply)."""
    ud = np.asarray(d, dtype=np.int64).astype(np.uint64)
    quotient = np.uint64(2**64 - 1) // ud
    exact = (quotient + _U64_ONE) * ud == 0  # (q + 1) * d == 2**64: wraps to exactly 0
    return np.asarray((quotient + exact.astype(np.uint64)).view(np.int64), dtype=np.int64)


def proportion_to_u16_array(x: Bits) -> Bits:
    """``fixed_proportion_to_u16`` elementwise."""
    # Clamping first changes nothing (the result clamps to 0..65535) and keeps x * 65535 inside int64.
    bounded = np.clip(np.asarray(x, dtype=np.int64), -(1 << 47), 1 << 47)
    return np.asarray(np.clip((bounded * U16_MAX) >> FRAC, 0, U16_MAX), dtype=np.int64)
