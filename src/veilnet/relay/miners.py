"""Calling miners: the one way a validator's hotkey sends a request to a miner.

A typed request document becomes the exact bytes sent (the fields its sender set, nothing added:
``model_dump_json(exclude_unset=True)``), those bytes are signed for the miner (Epistula, a fresh uuid and
timestamp per call, so a retried or failed-over request never carries a stale signature) and sent through a
:class:`~veilnet.relay.RelayClient` under the caller's deadlines. The gateway's organic requests and the
validator's challenges both go through here (the same headers, the same signer, the same encoding), so a
miner cannot tell them apart by how they are built; nothing in a request says which it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bittensor_wallet import Keypair

from veilnet.protocol.confidential import ENCRYPTION_SCHEME, SealedRequest
from veilnet.protocol.epistula import sign_request
from veilnet.protocol.headers import ENCRYPTION_HEADER
from veilnet.protocol.openai import MinerRequest, RoutingFields
from veilnet.protocol.paths import ENDPOINT_PATHS
from veilnet.relay.client import RelayClient, RelayResponse

__all__ = ["MinerClient", "MinerDeadlines", "encode_request"]


@dataclass(frozen=True, slots=True)
class MinerDeadlines:
    """Seconds a miner has (None: no limit): ``total`` for a whole answer, ``first_byte`` until its answer
    starts (for a non-streamed answer, that is the whole answer: its headers come with it), ``idle`` for any
    silence once it started."""

    total: float | None = 120.0
    first_byte: float | None = 30.0
    idle: float | None = 30.0


_ROUTING = set(RoutingFields.ROUTING)


def encode_request(request: MinerRequest) -> bytes:
    """The bytes a request travels as: the fields its sender set, routing fields (the gateway's) left out."""
    return request.model_dump_json(exclude_unset=True, exclude=_ROUTING).encode()


class MinerClient:
    """Signs with ``keypair`` and sends through ``relay`` (both owned by the caller). ``on_send(hotkey)`` is
    told of every request sent (the gateway counts its requests per miner with it)."""

    def __init__(self, keypair: Keypair, relay: RelayClient, deadlines: MinerDeadlines = MinerDeadlines(), *,
                 on_send: Callable[[str], None] | None = None) -> None:
        self.keypair = keypair
        self.relay = relay
        self.deadlines = deadlines
        self._on_send = on_send

    async def send(self, url: str, hotkey: str, request: MinerRequest) -> RelayResponse:
        """POST ``request`` to the miner ``hotkey`` at ``url`` (its axon); the caller owns the response."""
        return await self.post(url, hotkey, request.PATH, encode_request(request))

    async def exchange(self, url: str, hotkey: str, request: MinerRequest) -> tuple[str, RelayResponse]:
        """:meth:`send`, also giving the request's Epistula uuid (what the miner's answer is signed for)."""
        return await self._post(url, hotkey, request.PATH, encode_request(request), sealed=False)

    async def send_sealed(self, url: str, hotkey: str, sealed: SealedRequest) -> RelayResponse:
        """POST a sealed request (an envelope only the miner's enclave opens) to its endpoint's path."""
        return await self.post(url, hotkey, ENDPOINT_PATHS[sealed.endpoint], sealed.model_dump_json().encode(),
                               sealed=True)

    async def post(self, url: str, hotkey: str, path: str, body: bytes, *, sealed: bool = False) -> RelayResponse:
        """POST ``body`` (already serialised) signed for ``hotkey``. RelayError or RelayTimeout when the miner
        cannot be reached or misses a deadline."""
        return (await self._post(url, hotkey, path, body, sealed=sealed))[1]

    async def post_with_uuid(self, url: str, hotkey: str, path: str, body: bytes, *, sealed: bool = False,
                             ) -> tuple[str, RelayResponse]:
        """:meth:`post`, also giving the request's Epistula uuid (what the miner's answer is signed for)."""
        return await self._post(url, hotkey, path, body, sealed=sealed)

    async def _post(self, url: str, hotkey: str, path: str, body: bytes, *, sealed: bool) -> tuple[str, RelayResponse]:
        headers = sign_request(self.keypair, body, hotkey)
        headers["Content-Type"] = "application/json"
        if sealed:
            headers[ENCRYPTION_HEADER] = ENCRYPTION_SCHEME
        if self._on_send is not None:
            self._on_send(hotkey)
        deadlines = self.deadlines
        response = await self.relay.post(url + path, body, headers, timeout=deadlines.total,
                                         first_byte=deadlines.first_byte, idle=deadlines.idle)
        return headers["Epistula-Uuid"], response
