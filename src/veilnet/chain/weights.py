"""Weights as the chain wants them: float scores -> u16 with Subtensor's max-upscale, and commit hashes.

Pure functions shared by the validator (what it sends), the devnet chain (what it stores) and tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from veilnet.chain import fixed as fx
from veilnet.errors import InvalidRequest

__all__ = ["commit_hash", "encode_compact", "is_self_weight", "max_upscale_u16", "scores_to_u16_weights"]

U16_MAX = 65_535


def _round(x: int) -> int:
    # substrate_fixed round(): half away from zero
    half = 1 << (fx.FRAC - 1)
    return (x + half) >> fx.FRAC if x >= 0 else -((-x + half) >> fx.FRAC)


def _to_u16(x: int) -> int:
    return 0 if x < 0 else U16_MAX if x > U16_MAX else x


def max_upscale_u16(values: Sequence[int]) -> list[int]:
    """``vec_u16_max_upscale_to_u16``: scale so the largest weight is 65535, in I32F32 with rounding."""
    fixed = [fx.from_int(v) for v in values]
    if not fixed:
        return []
    top = max(fixed)
    u16_max = fx.from_int(U16_MAX)
    if top == 0:
        return [_to_u16(fx.mul(v, u16_max) >> fx.FRAC) for v in fixed]
    if top > fx.from_int(32_768):
        ratio = fx.safe_div(u16_max, top)
        return [_to_u16(_round(fx.mul(v, ratio))) for v in fixed]
    return [_to_u16(_round(fx.safe_div(fx.mul(v, u16_max), top))) for v in fixed]


def is_self_weight(uid: int, uids: Sequence[int], weights: Sequence[int]) -> bool:
    """Subtensor's rule: exactly one weight, on the caller's own uid."""
    return len(weights) == 1 and len(uids) >= 1 and uids[0] == uid


def scores_to_u16_weights(scores: dict[int, float]) -> tuple[list[int], list[int]]:
    """Normalise non-negative scores by uid and convert to u16 with max-upscale, as the bittensor SDK does.

    Zero scores are dropped; returns ``(uids, weights)`` sorted by uid (empty when every score is 0).
    """
    for uid, score in scores.items():
        if uid < 0 or uid > U16_MAX:
            raise InvalidRequest(f"uid {uid} is out of range", param="uids")
        if not score >= 0:  # also rejects NaN
            raise InvalidRequest(f"score for uid {uid} must be >= 0, got {score}", param="scores")
    positive = {uid: s for uid, s in scores.items() if s > 0}
    if not positive:
        return [], []
    top = max(positive.values())
    uids = sorted(positive)
    weights = [round(positive[uid] / top * U16_MAX) for uid in uids]
    keep = [(u, w) for u, w in zip(uids, weights, strict=True) if w > 0]
    return [u for u, _ in keep], [w for _, w in keep]


def encode_compact(value: int) -> bytes:
    """SCALE compact encoding of a non-negative integer."""
    if value < 0:
        raise ValueError("compact integers are non-negative")
    if value < 1 << 6:
        return bytes([value << 2])
    if value < 1 << 14:
        return ((value << 2) | 1).to_bytes(2, "little")
    if value < 1 << 30:
        return ((value << 2) | 2).to_bytes(4, "little")
    raw = value.to_bytes((value.bit_length() + 7) // 8, "little")
    return bytes([((len(raw) - 4) << 2) | 3]) + raw


def _vec_u16(values: Sequence[int]) -> bytes:
    return encode_compact(len(values)) + b"".join(int(v).to_bytes(2, "little") for v in values)


def commit_hash(
    hotkey_public_key: bytes,
    netuid: int,
    uids: Sequence[int],
    values: Sequence[int],
    salt: Sequence[int],
    version_key: int,
) -> bytes:
    """Commit-reveal v2: blake2_256 of SCALE(AccountId32, u16 netuid, Vec<u16> uids, Vec<u16> values,
    Vec<u16> salt, u64 version_key)."""
    if len(hotkey_public_key) != 32:
        raise InvalidRequest("the hotkey public key is 32 bytes", param="hotkey")
    encoded = (
        bytes(hotkey_public_key)
        + int(netuid).to_bytes(2, "little")
        + _vec_u16(uids)
        + _vec_u16(values)
        + _vec_u16(salt)
        + int(version_key).to_bytes(8, "little")
    )
    return hashlib.blake2b(encoded, digest_size=32).digest()
