"""A miner's capacity document (``GET /capacity``): who it is, the quota it grants, what it serves, at what
price and with which limits. The miner builds it, gateways and validators parse it with this one model.

Read leniently: fields a newer miner adds are ignored (``extra="ignore"``), so an older reader still routes
to it; a document that breaks a rule below is refused whole (the miner gets no traffic until it is fixed).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from veilnet.protocol.openai import Modality

__all__ = ["DEFAULT_MAX_BODY_BYTES", "CapacityDocument", "ConfidentialOffer", "MinerHealth", "ModelOffer"]

#: The request body a miner takes when its document does not say (veilnet's own default).
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


class _Document(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)


class ModelOffer(_Document):
    id: str = Field(min_length=1)
    capacity_per_window: int = Field(ge=0)
    price_input_per_million: float = Field(ge=0)  # USD per million prompt tokens
    price_output_per_million: float = Field(ge=0)
    context_length: int = Field(gt=0)
    embeddings: bool = False  # also served on /v1/embeddings
    concurrency: int = Field(default=1, ge=1)  # requests it runs at once (validators probe up to this many)
    # embeddings requests it runs at once, when fewer than ``concurrency`` (validators probe embeddings with
    # up to this many)
    embedding_concurrency: int | None = Field(default=None, ge=1)
    supported_parameters: list[str] = Field(default_factory=list)  # the sampling parameters it honours
    input_modalities: list[Modality] = Field(default_factory=lambda: list[Modality](["text"]))  # what it takes
    task: str = Field(default="chat", min_length=1)  # the task it is offered for (an installed task's name)


class ConfidentialOffer(_Document):
    """The miner serves sealed requests from an enclave attesting with ``platform``."""

    platform: str = Field(min_length=1)
    keyset_digest: str


class CapacityDocument(_Document):
    hotkey: str = Field(min_length=1)  # a reader routes to it only when this is the axon's own hotkey
    window_seconds: int = Field(default=60, ge=1)
    data_collection: Literal["allow", "deny"] = "allow"  # deny: it keeps no prompts or outputs
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, gt=0)  # larger request bodies are refused (413)
    confidential: ConfidentialOffer | None = None
    models: list[ModelOffer] = Field(default_factory=list)


class MinerHealth(_Document):
    status: Literal["ok"] = "ok"
    hotkey: str
    models: list[str]
