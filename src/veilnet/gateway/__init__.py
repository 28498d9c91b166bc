"""The gateway: an OpenAI/OpenRouter-compatible API that routes each request to the best miner."""

from veilnet.gateway.app import create_gateway_app
from veilnet.gateway.service import GatewayContext

__all__ = ["GatewayContext", "create_gateway_app"]
