"""The embedded devnet chain: a faithful model of Subtensor's subnet logic, in-process or over HTTP.

Importing it registers the ``devnet`` network with :func:`veilnet.chain.connect.chain_from_settings`."""

from veilnet.chain.connect import register_chain_backend
from veilnet.devnet.chain.client import DevnetChainClient
from veilnet.devnet.chain.local import DevnetChain

__all__ = ["DevnetChain", "DevnetChainClient"]

register_chain_backend("devnet", lambda settings: DevnetChainClient(settings.devnet_url))
