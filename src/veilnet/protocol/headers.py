"""HTTP headers of veilnet's own protocol (beside Epistula's)."""

from __future__ import annotations

__all__ = ["ENCRYPTION_HEADER", "GENERATION_HEADER", "SIMULATED_HEADER"]

# No header tells a miner whether a request is organic or a challenge (docs/incentives.md).
# On sealed requests and on every 2xx answer to one: the encryption scheme (see protocol.confidential).
ENCRYPTION_HEADER = "X-Veilnet-Encryption"
# On answers from a development (software) enclave: "true". Such answers carry no hardware guarantee.
SIMULATED_HEADER = "X-Veilnet-Simulated"
# On the gateway's answers: the request's one id (every chunk's and the answer's ``id``, the ledger row's).
GENERATION_HEADER = "X-Generation-Id"
