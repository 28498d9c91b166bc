"""The HTTP client of veilnet's relay hops (lean per chunk, keep-alive pooled) and the signed way to call miners."""

from veilnet.relay.client import RelayClient, RelayConnectError, RelayError, RelayResponse, RelayTimeout
from veilnet.relay.miners import MinerClient, MinerDeadlines, encode_request

__all__ = ["MinerClient", "MinerDeadlines", "RelayClient", "RelayConnectError", "RelayError", "RelayResponse",
           "RelayTimeout", "encode_request"]
