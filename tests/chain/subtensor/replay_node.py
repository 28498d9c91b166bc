"""A loopback Substrate JSON-RPC websocket node that answers from recorded Subtensor traffic.

The recordings (tests/data/chain/bittensor_recorded_websocket.json.gz, from the public bittensor SDK's
tests) map scenario -> RPC method -> JSON-encoded params -> response. The node serves one scenario; the runtime
metadata (``Metadata_metadata_at_version``) comes from the recorded v15 blob. A request that was not recorded
gets a JSON-RPC error, as a real node answers an unknown call, and is remembered in ``misses`` so a test can
say exactly what it asked that the recording lacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

# An extra handler answers one RPC method with a whole reply: {"result": ...} or {"error": {...}}.
Handler = Callable[[list[Any]], dict[str, Any]]


@dataclass
class ReplayNode:
    recording: dict[str, dict[str, Any]]
    metadata_v15_hex: str
    extra: dict[str, Handler] = field(default_factory=dict)
    misses: list[tuple[str, str]] = field(default_factory=list)
    requests: list[tuple[str, list[Any]]] = field(default_factory=list)
    url: str = ""
    absent_storage_is_empty: bool = False

    def answer(self, method: str, params: list[Any]) -> dict[str, Any]:
        self.requests.append((method, params))
        if method in self.extra:
            return self.extra[method](params)
        if method == "state_call" and params and params[0] == "Metadata_metadata_at_version":
            return {"result": self.metadata_v15_hex}
        recorded = self.recording.get(method, {})
        key = json.dumps(params)
        if key in recorded:
            return dict(recorded[key])
        # the library may omit a trailing block hash that the recording carried, or the reverse
        for stored_key, response in recorded.items():
            if _same_call(json.loads(stored_key), params):
                return dict(response)
        if method == "system_chain":
            return {"result": "Bittensor"}
        if method == "state_getStorageAt" and self.absent_storage_is_empty:
            # a node answers null for a key never written; the decoder then uses the item's default
            self.misses.append((method, key))
            return {"result": None}
        self.misses.append((method, key))
        return {"error": {"code": -32601, "message": f"not recorded: {method} {key[:120]}"}}

    async def _serve_connection(self, ws: ServerConnection) -> None:
        async for message in ws:
            request = json.loads(message)
            batch = request if isinstance(request, list) else [request]
            replies = []
            for item in batch:
                reply = self.answer(item["method"], list(item.get("params") or []))
                reply = {"jsonrpc": "2.0", "id": item["id"], **{k: v for k, v in reply.items() if k != "id"}}
                replies.append(reply)
            await ws.send(json.dumps(replies if isinstance(request, list) else replies[0]))


def _same_call(stored: list[Any], asked: list[Any]) -> bool:
    """Equal up to a trailing block hash that one side left out (``None`` or absent)."""
    width = max(len(stored), len(asked))
    for index in range(width):
        a = stored[index] if index < len(stored) else None
        b = asked[index] if index < len(asked) else None
        if a is None or b is None:
            if index == width - 1:
                continue
            return False
        if isinstance(a, str) and isinstance(b, str):
            a, b = a.removeprefix("0x"), b.removeprefix("0x")
        if a != b:
            return False
    return True


def load_recordings(data: Path) -> dict[str, Any]:
    """The recorded traffic in ``data`` (tests/data/chain), every scenario."""
    with gzip.open(data / "bittensor_recorded_websocket.json.gz", "rt") as recorded:
        loaded: dict[str, Any] = json.load(recorded)
    return loaded


def load_scenario(data: Path, scenario: str) -> dict[str, dict[str, Any]]:
    recordings = load_recordings(data)
    merged: dict[str, dict[str, Any]] = {}
    # rpc_methods and the like are the same in every scenario; the named scenario wins
    for other in recordings.values():
        for method in ("rpc_methods", "system_chain"):
            merged.setdefault(method, {}).update(other.get(method, {}))
    for method, params in recordings[scenario].items():
        merged.setdefault(method, {}).update(params)
    return merged


@contextlib.asynccontextmanager
async def replay_node(data: Path, scenario: str, **extra: Handler) -> AsyncIterator[ReplayNode]:
    """A node replaying ``scenario`` from the recordings in ``data`` (tests/data/chain)."""
    with gzip.open(data / "bt_metadata_v15_spec320.hex.txt.gz", "rt") as blob:
        metadata = blob.read().strip()
    node = ReplayNode(load_scenario(data, scenario), metadata, dict(extra))
    async with serve(node._serve_connection, "127.0.0.1", 0, max_size=2**26) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        node.url = f"ws://127.0.0.1:{port}"
        yield node
        server.close()
    await asyncio.sleep(0)
