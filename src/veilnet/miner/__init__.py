"""The miner: a thin ASGI app serving OpenAI-compatible inference to permitted validators."""

from veilnet.miner.app import create_miner_app
from veilnet.miner.service import MetagraphHolder, MinerContext

__all__ = ["MetagraphHolder", "MinerContext", "create_miner_app"]
