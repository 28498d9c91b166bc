"""The I32F32 helpers follow substrate_fixed's rules: floor multiply, truncating safe_div, saturation."""

from __future__ import annotations

import random

import numpy as np

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


_EDGES = [0, 1, -1, fx.ONE, -fx.ONE, fx.ONE - 1, fx.ONE + 1, fx.I64_MAX, fx.I64_MIN, fx.I64_MIN + 1, 2**62, -(2**62),
          2**31, 2**32 - 1, 2**33 + 5, -(2**40) - 3]


def test_array_multiply_and_add_equal_the_scalar_ones_including_saturation() -> None:
    rng = random.Random(1)
    values = _EDGES + [rng.randint(fx.I64_MIN, fx.I64_MAX) for _ in range(120)] + [
        rng.randint(-(2**40), 2**40) for _ in range(120)
    ]
    a = np.array([x for x in values for _ in values], dtype=np.int64)
    b = np.array([y for _ in values for y in values], dtype=np.int64)
    assert fx.mul_array(a, b).tolist() == [fx.mul(x, y) for x in values for y in values]
    assert fx.add_array(a, b).tolist() == [fx.add(x, y) for x in values for y in values]
    assert fx.mul_array(fx.ONE // 2, np.array([3, -3])).tolist() == [1, -2]  # a scalar broadcasts; floor


def test_array_divisions_equal_the_scalar_ones() -> None:
    rng = random.Random(2)
    pairs = [(fx.I64_MAX, fx.I64_MAX), (0, 1), (1, fx.I64_MAX), (2**62, fx.I64_MAX), (7, 7)]
    for _ in range(3_000):
        b = rng.choice([rng.randint(1, fx.I64_MAX), rng.randint(1, 2**40), rng.randint(1, 100)])
        pairs.append((rng.randint(0, b), b))
    quotients = fx.unit_div_array(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
    assert quotients.tolist() == [fx.safe_div(a, b) for a, b in pairs]
    divisors = [fx.ONE + 1, 2 * fx.ONE, 2**40, 2**62] + [fx.ONE + rng.randint(1, 2**58) for _ in range(3_000)]
    assert fx.recip_array(np.array(divisors)).tolist() == [fx.saturating_div(fx.ONE, d) for d in divisors]


def test_array_u16_conversion_equals_the_scalar_one() -> None:
    rng = random.Random(3)
    values = _EDGES + [rng.randint(fx.I64_MIN, fx.I64_MAX) for _ in range(2_000)] + [
        rng.randint(-(2**33), 2**34) for _ in range(2_000)
    ]
    assert fx.proportion_to_u16_array(np.array(values)).tolist() == [fx.proportion_to_u16(v) for v in values]
