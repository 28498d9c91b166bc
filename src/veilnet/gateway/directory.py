"""Which miners serve which models at what price: the metagraph plus each miner's /capacity, kept fresh."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp

from veilnet.chain.interface import Chain
from veilnet.chain.types import Metagraph
from veilnet.gateway.routing import Candidate

__all__ = ["MinerDirectory", "MinerOffer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MinerOffer:
    hotkey: str
    url: str
    model: str
    price_input: float
    price_output: float
    context_length: int
    embeddings: bool = False
    supported_parameters: frozenset[str] = frozenset()
    data_collection: str = "allow"
    confidential: str | None = None  # the TEE platform the miner says it attests with


class MinerDirectory:
    def __init__(self, http: aiohttp.ClientSession, me: str) -> None:
        self._http = http
        self._me = me
        self.metagraph: Metagraph | None = None
        self.offers: list[MinerOffer] = []

    async def refresh(self, metagraph: Metagraph) -> None:
        self.metagraph = metagraph
        neurons = [n for n in metagraph.neurons if n.hotkey != self._me and n.axon is not None and n.axon.is_served]
        results = await asyncio.gather(*(self._capacity(n.hotkey, n.axon.url) for n in neurons if n.axon))
        self.offers = [offer for offers in results for offer in offers]

    async def _capacity(self, hotkey: str, url: str) -> list[MinerOffer]:
        try:
            async with self._http.get(f"{url}/capacity", timeout=aiohttp.ClientTimeout(total=5)) as response:
                data = await response.json()
            if data.get("hotkey") != hotkey:
                return []  # the axon answers for another hotkey: never route there
            policy = "deny" if data.get("data_collection") == "deny" else "allow"
            tee = data.get("confidential")
            platform = str(tee["platform"]) if isinstance(tee, dict) and tee.get("platform") else None
            return [
                MinerOffer(hotkey, url, m["id"], float(m["price_input_per_million"]),
                           float(m["price_output_per_million"]), int(m["context_length"]),
                           bool(m.get("embeddings", False)),
                           frozenset(str(p) for p in m.get("supported_parameters", [])), policy, platform)
                for m in data["models"]
            ]
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
            return []

    async def refresh_forever(self, chain: Chain, netuid: int, interval: float = 12.0) -> None:
        while True:
            try:
                await self.refresh(await chain.get_metagraph(netuid))
            except Exception:  # keep routing on the last directory; the failure is logged
                log.warning("miner directory refresh failed", exc_info=True)
            await asyncio.sleep(interval)

    def confidential_miners(self) -> dict[str, str]:
        """hotkey -> axon URL of every miner that says it serves sealed requests."""
        return {o.hotkey: o.url for o in self.offers if o.confidential is not None}

    def models(self) -> dict[str, list[MinerOffer]]:
        out: dict[str, list[MinerOffer]] = {}
        for offer in self.offers:
            out.setdefault(offer.model, []).append(offer)
        return out

    def candidates(self, model: str, scores: dict[str, float], *, embeddings: bool = False) -> list[Candidate]:
        incentive = {}
        if self.metagraph is not None:
            incentive = {n.hotkey: n.incentive_f for n in self.metagraph.neurons}
        return [
            Candidate(o.hotkey, o.url, scores.get(o.hotkey, incentive.get(o.hotkey, 0.0)), o.price_input,
                      o.price_output, o.context_length, o.supported_parameters, o.data_collection)
            for o in self.offers
            if o.model == model and (o.embeddings or not embeddings)
        ]
