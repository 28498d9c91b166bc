"""The I32F32 helpers follow substrate_fixed's rules: floor multiply, truncating safe_div, saturation."""

from __future__ import annotations

from veilnet.chain import fixed as fx


def test_multiply_floors_and_saturates() -> None:
    assert fx.mul(fx.ONE // 2, fx.ONE // 2) == fx.ONE // 4
    assert fx.mul(-1, 1) == -1  # floor of -2**-64 is the smallest negative step
    assert fx.mul(fx.I64_MAX, fx.from_int(2)) == fx.I64_MAX


def test_safe_div_truncates_and_gives_zero_on_zero_or_overflow() -> None:
    assert fx.safe_div(fx.ONE, fx.from_int(3)) == fx.ONE // 3
    assert fx.safe_div(-fx.ONE, fx.from_int(3)) == -(fx.ONE // 3)
    assert fx.safe_div(fx.ONE, 0) == 0
    assert fx.safe_div(fx.I64_MAX, 1) == 0  # overflowing quotient


def test_u16_conversions_round_trip_as_subtensor_does() -> None:
    assert fx.proportion_to_u16(fx.ONE) == 65_535
    assert fx.proportion_to_u16(fx.u16_proportion(32_767)) == 32_766  # floor on both steps
    assert fx.proportion_to_u16(-fx.ONE) == 0
    assert fx.normalize([0, 0]) == [0, 0]
    assert sum(fx.normalize([1, 2, 3])) <= fx.ONE


def test_normalize_64_then_to_32_bits() -> None:
    shares = [fx.fixed64_to_fixed32(v) for v in fx.normalize_64([1, 2, 3, 4])]
    assert shares[3] == (4 << 64) // 10 >> 32
