"""Which miners serve which models at what price: the metagraph plus each miner's capacity document
(:class:`~veilnet.protocol.capacity.CapacityDocument`), kept fresh."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
from pydantic import ValidationError

from veilnet import cancelling
from veilnet.chain.interface import Chain
from veilnet.chain.types import Metagraph
from veilnet.gateway.routing import Candidate
from veilnet.protocol import paths
from veilnet.protocol.capacity import DEFAULT_MAX_BODY_BYTES, CapacityDocument
from veilnet.protocol.openai import TEXT_ONLY

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
    input_modalities: frozenset[str] = TEXT_ONLY
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    task: str = "chat"  # the task it is offered for (chat models also serve completions and embeddings)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks the offer serves: its task, and the embeddings task for a model also served on
        /v1/embeddings (``embeddings``; the validator challenges and scores those answers as that task)."""
        return (self.task, "embeddings") if self.embeddings and self.task != "embeddings" else (self.task,)


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
            async with self._http.get(f"{url}{paths.CAPACITY}", timeout=aiohttp.ClientTimeout(total=5)) as response:
                document = CapacityDocument.model_validate_json(await response.read())
        except (aiohttp.ClientError, TimeoutError, ValidationError):
            return []  # no answer, or nonsense: no traffic until it answers properly
        if document.hotkey != hotkey:
            return []  # the axon answers for another hotkey: never route there
        platform = document.confidential.platform if document.confidential is not None else None
        return [
            MinerOffer(hotkey, url, m.id, m.price_input_per_million, m.price_output_per_million, m.context_length,
                       m.embeddings, frozenset(m.supported_parameters), document.data_collection, platform,
                       frozenset(m.input_modalities) | TEXT_ONLY, document.max_body_bytes, m.task)
            for m in document.models
        ]

    async def refresh_forever(self, chain: Chain, netuid: int, interval: float = 12.0) -> None:
        while True:
            cancelling.raise_if_stopping()
            try:
                await self.refresh(await chain.get_metagraph(netuid))
            except Exception:  # keep routing on the last directory; the failure is logged
                log.warning("miner directory refresh failed", exc_info=True)
            await asyncio.sleep(interval)

    def confidential_miners(self) -> dict[str, str]:
        """hotkey -> axon URL of every miner that says it serves sealed requests."""
        return {o.hotkey: o.url for o in self.offers if o.confidential is not None}

    def task_models(self) -> dict[str, str]:
        """model -> task, for the models offered for tasks other than chat."""
        return {o.model: o.task for o in self.offers if o.task != "chat"}

    def offered_tasks(self) -> dict[str, dict[str, list[str]]]:
        """task -> miner hotkey -> the models it offers for the task (every task, plugins' alike)."""
        out: dict[str, dict[str, list[str]]] = {}
        for offer in self.offers:
            for task in offer.tasks:
                out.setdefault(task, {}).setdefault(offer.hotkey, []).append(offer.model)
        return out

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
                      o.price_output, o.context_length, o.supported_parameters, o.data_collection,
                      o.input_modalities, o.max_body_bytes)
            for o in self.offers
            if o.model == model and (o.embeddings or not embeddings)
        ]
