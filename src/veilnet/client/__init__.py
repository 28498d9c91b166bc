"""Clients of a veilnet gateway: :class:`ConfidentialClient` (end-to-end encrypted, attestation verified
locally) and the local OpenAI-compatible proxy built on it (``veilnet confidential-proxy``)."""

from veilnet.client.confidential import ConfidentialClient, error_from_response
from veilnet.client.proxy import create_proxy_app

__all__ = ["ConfidentialClient", "create_proxy_app", "error_from_response"]
