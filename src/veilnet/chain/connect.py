"""Pick the chain backend named by the settings."""

from __future__ import annotations

from veilnet.chain.interface import Chain
from veilnet.errors import ConfigError
from veilnet.settings import ChainSettings

__all__ = ["chain_from_settings"]


def chain_from_settings(settings: ChainSettings) -> Chain:
    """``devnet`` -> the devnet chain's HTTP client; real networks need the Subtensor backend."""
    if settings.network == "devnet":
        from veilnet.devnet.chain import DevnetChainClient

        return DevnetChainClient(settings.devnet_url)
    raise ConfigError(
        f"chain network {settings.network!r} needs the real Subtensor backend, which this version does not "
        "include yet; use VEILNET_CHAIN__NETWORK=devnet"
    )
