"""The HTTP client of veilnet's relay hops: lean per chunk, keep-alive pooled."""

from veilnet.relay.client import RelayClient, RelayConnectError, RelayError, RelayResponse

__all__ = ["RelayClient", "RelayConnectError", "RelayError", "RelayResponse"]
