"""The gateway: an OpenAI/OpenRouter-compatible API that routes each request to the best miner."""

from veilnet.gateway.app import create_gateway_app
from veilnet.gateway.faults import AttemptOutcome, Fault
from veilnet.gateway.service import Gateway, GatewayContext

__all__ = ["AttemptOutcome", "Fault", "Gateway", "GatewayContext", "create_gateway_app"]
