"""HTTP headers of veilnet's own protocol (beside Epistula's)."""

from __future__ import annotations

__all__ = ["TRAFFIC_HEADER"]

# Set by validators and gateways on requests to miners: ``organic`` (default) or ``synthetic``.
TRAFFIC_HEADER = "X-Veilnet-Traffic"
