"""The real Subtensor backend: a direct Substrate interface (async-substrate-interface), no Bittensor SDK."""

from veilnet.chain.subtensor.backend import SubtensorChain
from veilnet.chain.subtensor.networks import NETWORKS, TESTED_SPEC_VERSIONS, resolve_endpoint

__all__ = ["NETWORKS", "TESTED_SPEC_VERSIONS", "SubtensorChain", "resolve_endpoint"]
