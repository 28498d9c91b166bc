"""The embedded devnet chain: a faithful model of Subtensor's subnet logic, in-process or over HTTP."""

from veilnet.devnet.chain.client import DevnetChainClient
from veilnet.devnet.chain.local import DevnetChain

__all__ = ["DevnetChain", "DevnetChainClient"]
