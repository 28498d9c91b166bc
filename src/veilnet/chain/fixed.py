"""Subtensor's fixed-point arithmetic on plain Python integers (the raw bits of ``substrate_fixed`` types).

``I32F32`` values are signed 64-bit integers with 32 fractional bits; ``I64F64`` signed 128-bit with 64.
Rules, as in the pallet: multiplication floors (arithmetic shift), ``safe_div`` truncates toward zero and
gives 0 for a zero divisor or an overflowing quotient, saturating operations clamp to the type's range.
Everything here is pure.
"""

from __future__ import annotations

__all__ = [
    "FRAC",
    "I64_MAX",
    "I64_MIN",
    "ONE",
    "add",
    "fixed64_to_fixed32",
    "from_int",
    "mul",
    "normalize",
    "normalize_64",
    "proportion_to_u16",
    "safe_div",
    "saturating_div",
    "to_float",
    "to_int_floor",
    "u16_proportion",
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
