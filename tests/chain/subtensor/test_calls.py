"""Call bytes built offline from the recorded runtime metadata, the submit path, and error mapping."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path
from typing import Any

import pytest
from bittensor_wallet import Keypair
from tests.chain.subtensor.replay_node import ReplayNode, replay_node

from veilnet.chain import errors as ce
from veilnet.chain.subtensor import SubtensorChain, calls
from veilnet.chain.subtensor.dispatch import error_from_dispatch, error_from_pool_rejection
from veilnet.chain.subtensor.timelock import TimelockInputs, encrypt_weights
from veilnet.chain.weights import encode_compact
from veilnet.errors import ChainError

ALICE = Keypair.create_from_uri("//Alice")
SUBTENSOR_PALLET_INDEX = 7  # SubtensorModule's index in Subtensor's construct_runtime!


def _u16s(values: list[int]) -> bytes:
    return encode_compact(len(values)) + b"".join(struct.pack("<H", v) for v in values)


async def _call_bytes(chain: SubtensorChain, spec: calls.CallSpec) -> bytes:
    call = await chain.substrate.compose_call(spec.pallet, spec.function, spec.params)
    return bytes(call.data.data)


async def test_set_weights_and_serve_axon_bytes_from_metadata(chain_data: Path) -> None:
    async with replay_node(chain_data, "metagraph") as node, SubtensorChain(node.url) as chain:
        set_weights = await _call_bytes(chain, calls.set_weights(1, [0, 3, 255], [65_535, 7, 1], 2_004_001))
        serve = await _call_bytes(chain, calls.serve_axon(12, ip="203.0.113.9", port=8091, protocol=4, version=7))
        serve6 = await _call_bytes(chain, calls.serve_axon(12, ip="2001:db8::1", port=443, protocol=4, version=0))
        commit = await _call_bytes(chain, calls.commit_weights(1, bytes(range(32))))
        reveal = await _call_bytes(chain, calls.reveal_weights(1, [1, 2], [10, 20], [5, 6, 7], 3))
        register = await _call_bytes(chain, calls.burned_register(3, ALICE.ss58_address))
        stake = await _call_bytes(chain, calls.add_stake(3, ALICE.ss58_address, 10**9))
    # set_weights: call_index(0); (netuid u16, dests Vec<u16>, weights Vec<u16>, version_key u64)
    assert set_weights == (bytes([SUBTENSOR_PALLET_INDEX, 0]) + struct.pack("<H", 1) + _u16s([0, 3, 255])
                           + _u16s([65_535, 7, 1]) + struct.pack("<Q", 2_004_001))
    # serve_axon: call_index(4); (netuid u16, version u32, ip u128, port u16, ip_type u8, protocol u8, 0u8, 0u8)
    ip = (203 << 24) | (0 << 16) | (113 << 8) | 9
    assert serve == (bytes([SUBTENSOR_PALLET_INDEX, 4]) + struct.pack("<HI", 12, 7) + ip.to_bytes(16, "little")
                     + struct.pack("<HBBBB", 8091, 4, 4, 0, 0))
    assert serve6[2 + 6:2 + 6 + 16] == (0x20010DB8 << 96 | 1).to_bytes(16, "little") and serve6[-4] == 6
    assert commit == bytes([SUBTENSOR_PALLET_INDEX, 96]) + struct.pack("<H", 1) + bytes(range(32))
    assert reveal == (bytes([SUBTENSOR_PALLET_INDEX, 97]) + struct.pack("<H", 1) + _u16s([1, 2]) + _u16s([10, 20])
                      + _u16s([5, 6, 7]) + struct.pack("<Q", 3))
    assert register == bytes([SUBTENSOR_PALLET_INDEX, 7]) + struct.pack("<H", 3) + ALICE.public_key
    assert stake == (bytes([SUBTENSOR_PALLET_INDEX, 2]) + ALICE.public_key + struct.pack("<H", 3)
                     + struct.pack("<Q", 10**9))


def test_call_arguments_are_checked_before_anything_is_signed() -> None:
    with pytest.raises(ce.InvalidIpAddress, match="not an IP"):
        calls.serve_axon(1, ip="localhost", port=80, protocol=4, version=0)
    with pytest.raises(ce.InvalidPort):
        calls.serve_axon(1, ip="10.0.0.1", port=0, protocol=4, version=0)
    with pytest.raises(ce.WeightVecNotEqualSize, match="2 uids but 1 weights"):
        calls.set_weights(1, [0, 1], [5], 0)


def _accept_signing(node: ReplayNode, submitted: list[str], rejection: dict[str, Any]) -> None:
    head = next(iter(node.recording["chain_getHead"].values()))["result"]
    node.extra["chain_getFinalizedHead"] = lambda params: {"result": head}
    node.extra["chain_getBlockHash"] = lambda params: {"result": "0x" + "11" * 32}  # genesis
    node.extra["account_nextIndex"] = lambda params: {"result": 5}

    def submit(params: list[Any]) -> dict[str, Any]:
        submitted.append(params[0])
        return {"error": rejection}

    node.extra["author_submitAndWatchExtrinsic"] = submit


@pytest.mark.parametrize(("code", "call", "expected"), [
    (6, "set_weights", ce.SettingWeightsTooFast),
    (12, "serve_axon", ce.ServingRateLimitExceeded),
    (10, "set_weights", ce.NotRegistered),
])
async def test_pool_rejections_become_typed_errors(
    chain_data: Path, code: int, call: str, expected: type[ChainError]
) -> None:
    submitted: list[str] = []
    async with replay_node(chain_data, "metagraph") as node, SubtensorChain(node.url) as chain:
        _accept_signing(node, submitted, {"code": 1010, "message": "Invalid Transaction", "data": f"Custom error: {code}"})
        with pytest.raises(expected, match=f"custom error {code}"):
            if call == "set_weights":
                await chain.set_weights(1, ALICE, [0, 3], [65_535, 7], 5)
            else:
                await chain.serve_axon(1, ALICE, ip="203.0.113.9", port=8091)
    # What went out is a signed v4 extrinsic from Alice (MultiAddress::Id, sr25519) carrying exactly the call.
    extrinsic = bytes.fromhex(submitted[0].removeprefix("0x"))
    body = extrinsic[len(encode_compact(len(extrinsic) - 1)):]
    assert body[0] == 0x84 and body[1] == 0x00 and body[2:34] == ALICE.public_key and body[34] == 0x01
    if call == "set_weights":
        expected_call = bytes([SUBTENSOR_PALLET_INDEX, 0]) + struct.pack("<H", 1) + _u16s([0, 3]) + _u16s([65_535, 7])
        assert body.endswith(expected_call + struct.pack("<Q", 5))


def test_dispatch_errors_map_to_the_devnet_classes() -> None:
    too_fast = error_from_dispatch({"type": "Module", "name": "SettingWeightsTooFast", "docs": ["too fast"]},
                                   call="set_weights")
    assert isinstance(too_fast, ce.SettingWeightsTooFast) and "too fast" in str(too_fast)
    assert isinstance(error_from_dispatch({"name": "NotEnoughBalanceToStake"}, call="add_stake"), ce.NotEnoughBalance)
    assert isinstance(error_from_dispatch({"name": "HotKeyNotRegisteredInSubNet"}, call="x"), ce.NotRegistered)
    assert isinstance(error_from_dispatch({"name": "CommitRevealEnabled"}, call="x"), ce.CommitRevealEnabled)
    assert isinstance(error_from_dispatch({"name": "SubnetNotExists"}, call="x"), ce.SubnetNotExists)
    assert isinstance(error_from_dispatch({"name": "CommittingWeightsTooFast"}, call="x"), ce.SettingWeightsTooFast)
    unknown = error_from_dispatch({"name": "BrandNewError"}, call="set_weights")
    assert type(unknown) is ChainError and unknown.code == "BrandNewError"
    assert error_from_pool_rejection("Priority is too low", call="set_weights") is None


async def test_every_typed_error_names_a_real_subtensor_error(chain_data: Path) -> None:
    """Each veilnet pallet error is spelled as the runtime's SubtensorModule spells it (or is mapped)."""
    async with replay_node(chain_data, "metagraph") as node, SubtensorChain(node.url) as chain:
        runtime = await chain.substrate.init_runtime()
        pallet = runtime.metadata.get_metadata_pallet("SubtensorModule")
        names = {error.name for error in pallet.errors}
    ours = {cls.pallet_error for cls in vars(ce).values()
            if isinstance(cls, type) and issubclass(cls, ce.ChainError) and getattr(cls, "pallet_error", "")}
    not_module_errors = {"InvalidSignature", "BadOrigin"}  # signature / origin failures, not pallet errors
    assert ours - not_module_errors <= names, sorted(ours - not_module_errors - names)


def test_timelocked_commit_encrypts_offline() -> None:
    inputs = TimelockInputs(current_block=1_000, tempo=360, reveal_period_epochs=1, blocks_since_last_step=20,
                            last_epoch_block=980, subnet_epoch_index=3, block_time=12.0)
    commit, reveal_round = encrypt_weights(inputs, uids=[0, 1], weights=[65_535, 10], version_key=1,
                                           hotkey_public_key=ALICE.public_key)
    again, same_round = encrypt_weights(inputs, uids=[0, 1], weights=[65_535, 10], version_key=1,
                                        hotkey_public_key=ALICE.public_key)
    _, later_round = encrypt_weights(dataclasses.replace(inputs, reveal_period_epochs=3), uids=[0, 1],
                                     weights=[65_535, 10], version_key=1, hotkey_public_key=ALICE.public_key)
    assert len(commit) > 64 and reveal_round > 0
    assert commit != again and same_round == reveal_round  # fresh randomness, same target round
    # two more epochs of 360 blocks at 12 s, in drand quicknet rounds of 3 s
    assert later_round - reveal_round == pytest.approx(2 * 360 * 12 / 3, abs=2)
