"""Weight conversion and commit hashes, cross-checked against an independent SCALE codec (scalecodec)."""

from __future__ import annotations

import hashlib

import pytest
from bittensor_wallet import Keypair
from scalecodec.base import RuntimeConfiguration
from scalecodec.type_registry import load_type_registry_preset

from veilnet.chain.weights import commit_hash, encode_compact, max_upscale_u16, scores_to_u16_weights
from veilnet.errors import InvalidRequest


@pytest.fixture(scope="module")
def scale() -> RuntimeConfiguration:
    config = RuntimeConfiguration()
    config.update_type_registry(load_type_registry_preset("legacy"))
    return config


def test_commit_hash_is_blake2_256_of_the_scale_tuple(scale: RuntimeConfiguration) -> None:
    hotkey = Keypair.create_from_uri("//Alice")
    uids, values, salt, version = [0, 3, 300], [65535, 1, 32768], [1, 2, 3, 4, 5, 6, 7, 8], 1_000_001
    encoded = b"".join(
        bytes(scale.create_scale_object(type_string).encode(value).data)
        for type_string, value in [
            ("[u8; 32]", "0x" + bytes(hotkey.public_key).hex()),  # type: ignore[arg-type]
            ("u16", 7), ("Vec<u16>", uids), ("Vec<u16>", values), ("Vec<u16>", salt), ("u64", version),
        ]
    )
    expected = hashlib.blake2b(encoded, digest_size=32).digest()
    assert commit_hash(bytes(hotkey.public_key), 7, uids, values, salt, version) == expected  # type: ignore[arg-type]
    assert commit_hash(bytes(hotkey.public_key), 7, uids, values, salt, version + 1) != expected  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, 1, 63, 64, 16383, 16384, 2**30 - 1, 2**30, 2**40])
def test_compact_matches_scalecodec(scale: RuntimeConfiguration, value: int) -> None:
    assert encode_compact(value) == bytes(scale.create_scale_object("Compact<u64>").encode(value).data)


def test_max_upscale_matches_subtensor_examples() -> None:
    assert max_upscale_u16([16383, 32767, 49149, 65535]) == [16383, 32767, 49149, 65535]
    assert max_upscale_u16([1, 2, 3]) == [21845, 43690, 65535]
    assert max_upscale_u16([0, 0]) == [0, 0]
    assert max_upscale_u16([]) == []


def test_scores_to_weights() -> None:
    assert scores_to_u16_weights({3: 0.5, 1: 1.0, 2: 0.0}) == ([1, 3], [65535, 32768])
    assert scores_to_u16_weights({1: 0.0}) == ([], [])
    with pytest.raises(InvalidRequest):
        scores_to_u16_weights({1: float("nan")})
    with pytest.raises(InvalidRequest):
        scores_to_u16_weights({70_000: 1.0})
