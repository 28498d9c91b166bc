"""SubtensorChain reads, decoded by async-substrate-interface from recorded Subtensor JSON-RPC traffic.

The traffic is replayed by a websocket node on 127.0.0.1 (tests/chain/subtensor/replay_node.py), so the real
transport, runtime initialisation (metadata v15 from the recorded blob) and SCALE decoding all run.
"""

from __future__ import annotations

import json
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from scalecodec.utils.ss58 import ss58_encode
from tests.chain.subtensor.replay_node import replay_node

from veilnet.chain import errors as ce
from veilnet.chain.connect import chain_from_settings
from veilnet.chain.interface import Chain
from veilnet.chain.subtensor import SubtensorChain, resolve_endpoint
from veilnet.chain.subtensor.decode import METAGRAPH_FIELDS, SELECTIVE_METAGRAPH_INDEX
from veilnet.chain.subtensor.networks import runtime_version_warning
from veilnet.chain.weights import encode_compact
from veilnet.errors import ConfigError
from veilnet.settings import ChainSettings


def _recorded_state_call(recordings: dict[str, Any], scenario: str, function: str) -> tuple[list[Any], Any]:
    for key, response in recordings[scenario]["state_call"].items():
        params = json.loads(key)
        if params[0] == function:
            return params, response
    raise AssertionError(f"{function} not recorded in {scenario}")


def _selective_metagraph_params(netuid: int) -> str:
    indexes = [SELECTIVE_METAGRAPH_INDEX[name] for name in METAGRAPH_FIELDS]
    body = struct.pack("<H", netuid) + encode_compact(len(indexes)) + b"".join(struct.pack("<H", i) for i in indexes)
    return body.hex()


async def test_metagraph_from_the_selective_runtime_api(chain_data: Path, recordings: dict[str, Any]) -> None:
    async with replay_node(chain_data, "metagraph") as node:
        # The recording holds the all-fields answer (get_selective_mechagraph, mechanism 0). A selective answer
        # is the same type with only the asked fields set, so the node may serve it for our narrower request.
        (_, _, block_hash), answer = _recorded_state_call(recordings, "metagraph",
                                                          "SubnetInfoRuntimeApi_get_selective_mechagraph")
        ours = json.dumps(["SubnetInfoRuntimeApi_get_selective_metagraph", _selective_metagraph_params(1), block_hash])
        node.recording["state_call"][ours] = answer
        async with SubtensorChain(node.url, connect_attempts=1) as chain:
            assert isinstance(chain, Chain)
            assert chain.spec_version == 343
            graph = await chain.get_metagraph(1)
            lite = await chain.substrate.runtime_call("NeuronInfoRuntimeApi", "get_neurons_lite", [1])
        asked = [p for m, p in node.requests if m == "state_call" and p[0].endswith("get_selective_metagraph")]
        assert asked and asked[0][1].removeprefix("0x") == _selective_metagraph_params(1)
        assert node.misses == []

    assert graph.netuid == 1 and graph.block == 6852690
    assert graph.owner_hotkey == "5HCFWvRqzSHWRPecN7q8J6c7aKQnrCZTMHstPv39xL1wgDHh"
    assert graph.n > 0 and [n.uid for n in graph.neurons] == list(range(graph.n))
    first = graph.neurons[0]
    assert first.hotkey == "5DkMmXtWf16RNdusZGCrJ7ca7ADPgRnZLVWCWbgA7s7sy1AQ"
    assert first.stake == 2_557_172_316  # total_stake of uid 0
    assert first.axon is not None and first.axon.port == 6028
    assert first.axon.ip == socket.inet_ntoa(struct.pack(">I", 3_235_789_677))
    # Two independent runtime APIs from the same block agree on who holds each uid.
    by_uid = {int(n["uid"]): n for n in lite}
    assert len(by_uid) == graph.n
    for neuron in graph.neurons:
        assert by_uid[neuron.uid]["hotkey"] == neuron.hotkey
        assert by_uid[neuron.uid]["coldkey"] == neuron.coldkey
        assert bool(by_uid[neuron.uid]["validator_permit"]) == neuron.validator_permit


async def test_metagraph_of_a_missing_subnet_is_subnet_not_exists(chain_data: Path) -> None:
    async with replay_node(chain_data, "metagraph") as node:
        params = json.dumps(["SubnetInfoRuntimeApi_get_selective_metagraph", _selective_metagraph_params(99)])
        node.recording["state_call"][params] = {"result": "0x00"}  # Option::None
        async with SubtensorChain(node.url, connect_attempts=1) as chain:
            with pytest.raises(ce.SubnetNotExists):
                await chain.get_metagraph(99)


async def test_hyperparameters_and_burn(chain_data: Path) -> None:
    async with replay_node(chain_data, "get_subnet_hyperparameters") as node:
        node.absent_storage_is_empty = True  # Burn was not recorded: the node says "never written"
        async with SubtensorChain(node.url, connect_attempts=1) as chain:
            hyper = await chain.get_hyperparameters(23)
    # decoded by hand from the recorded bytes: compact kappa feff0100, immunity 214e, min weights 04,
    # max weights feff0300, tempo a10f
    assert hyper.netuid == 23
    assert hyper.kappa == 32_767
    assert hyper.immunity_period == 5_000
    assert hyper.min_allowed_weights == 1
    assert hyper.max_weight_limit == 65_535
    assert hyper.tempo == 1_000
    assert isinstance(hyper.commit_reveal_weights_enabled, bool)
    assert 0 < hyper.min_burn <= hyper.max_burn


async def test_block_balance_subnet_and_epoch_reads(chain_data: Path, recordings: dict[str, Any]) -> None:
    async with replay_node(chain_data, "get_current_block") as node, SubtensorChain(node.url) as chain:
        header = next(iter(recordings["get_current_block"]["chain_getHeader"].values()))["result"]
        assert await chain.get_current_block() == int(header["number"], 16)

    async with replay_node(chain_data, "subnet_exists") as node, SubtensorChain(node.url) as chain:
        assert await chain.subnet_exists(23) is True

    key, response = next(iter(recordings["get_balance"]["state_getStorageAt"].items()))
    storage_key = bytes.fromhex(json.loads(key)[0][2:])
    account = ss58_encode(storage_key[-32:], 42)  # System.Account is Blake2_128Concat(AccountId)
    raw = bytes.fromhex(response["result"][2:])
    free = struct.unpack_from("<Q", raw, 16)[0]  # AccountInfo: 4 x u32, then data.free (Subtensor balances are u64)
    async with replay_node(chain_data, "get_balance") as node, SubtensorChain(node.url) as chain:
        assert await chain.get_balance(account) == free > 0

    async with replay_node(chain_data, "tempo") as node, SubtensorChain(node.url) as chain:
        block = await chain.get_current_block()
        tempo = 1000  # the recorded Tempo of subnet 23 (0xe803)
        # runtime 320's metadata has neither get_next_epoch_start_block nor LastEpochBlock: legacy schedule
        nxt = await chain.get_next_epoch_block(23)
        assert block <= nxt <= block + tempo
        assert (nxt + 23 + 1) % (tempo + 1) == tempo  # blocks_until_next_epoch(nxt) == 0


async def test_unreachable_node_is_chain_unavailable_after_retries() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    chain = SubtensorChain(f"ws://127.0.0.1:{port}", connect_attempts=2, backoff=0.01)
    with pytest.raises(ce.ChainUnavailable, match=f"127.0.0.1:{port}.*2 attempts"):
        await chain.__aenter__()


def test_network_names_and_runtime_range() -> None:
    assert resolve_endpoint("finney") == "wss://entrypoint-finney.opentensor.ai:443"
    assert resolve_endpoint("test") == "wss://test.finney.opentensor.ai:443"
    assert resolve_endpoint("local") == "ws://127.0.0.1:9944"
    assert resolve_endpoint("wss://node.example:443") == "wss://node.example:443"
    with pytest.raises(ConfigError, match="mainnet"):
        resolve_endpoint("mainnet")
    chain = chain_from_settings(ChainSettings(network="local", block_time=0.25))
    assert isinstance(chain, SubtensorChain) and chain.url == "ws://127.0.0.1:9944" and chain.block_time == 0.25
    assert runtime_version_warning(343) is None
    warning = runtime_version_warning(9_999)
    assert warning is not None and "9999" in warning and "425" in warning
    assert runtime_version_warning(100) is not None
