"""Pick the chain backend named by the settings."""

from __future__ import annotations

from veilnet.chain.interface import Chain
from veilnet.settings import ChainSettings

__all__ = ["chain_from_settings"]


def chain_from_settings(settings: ChainSettings) -> Chain:
    """``devnet`` -> the devnet chain's HTTP client; ``finney``/``test``/``local``/ws(s) URL -> Subtensor."""
    if settings.network == "devnet":
        from veilnet.devnet.chain import DevnetChainClient

        return DevnetChainClient(settings.devnet_url)
    from veilnet.chain.subtensor import SubtensorChain, resolve_endpoint

    return SubtensorChain(
        resolve_endpoint(settings.network),
        block_time=settings.block_time,
        connect_attempts=settings.connect_attempts,
        connect_timeout=settings.connect_timeout,
    )
