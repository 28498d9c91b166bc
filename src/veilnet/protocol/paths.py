"""Every HTTP path of veilnet's services, named once: the apps serve these and the clients call these.

The OpenAI-compatible paths live under ``/v1``; clients configured the OpenAI way hold a base URL that ends
in ``/v1`` and append :func:`under_v1` of a path.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "ATTESTATION",
    "CAPACITY",
    "CHAT_COMPLETIONS",
    "COMPLETIONS",
    "CONFIDENTIAL_ATTESTATION",
    "CONFIDENTIAL_MINERS",
    "EMBEDDINGS",
    "ENDPOINT_PATHS",
    "HEALTH",
    "KEY",
    "METRICS",
    "MODEL",
    "MODELS",
    "V1",
    "Endpoint",
    "under_v1",
]

V1 = "/v1"

# OpenAI's API, served by miners (Epistula-signed) and by the gateway (API keys)
CHAT_COMPLETIONS = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
EMBEDDINGS = "/v1/embeddings"
MODELS = "/v1/models"
MODEL = "/v1/models/{model_id:path}"  # one model (model ids may hold a slash)

# miners
CAPACITY = "/capacity"  # the capacity document (veilnet.protocol.capacity)
ATTESTATION = "/v1/attestation"  # an enclave's evidence for a verifier's nonce

# the gateway
KEY = "/api/v1/key"  # OpenRouter's key endpoint
CONFIDENTIAL_MINERS = "/v1/confidential/miners"
CONFIDENTIAL_ATTESTATION = "/v1/confidential/attestation"
METRICS = "/metrics"

HEALTH = "/health"

#: The endpoints a sealed request can be for (its envelope names one), and their paths.
Endpoint = Literal["chat.completions", "completions"]
ENDPOINT_PATHS: dict[Endpoint, str] = {"chat.completions": CHAT_COMPLETIONS, "completions": COMPLETIONS}


def under_v1(path: str) -> str:
    """``path`` relative to a base URL that ends in ``/v1`` (``/v1/chat/completions`` -> ``/chat/completions``)."""
    if not path.startswith(V1 + "/"):
        raise ValueError(f"{path} is not under {V1}")
    return path[len(V1):]
