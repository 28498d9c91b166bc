"""The documents the gateway answers besides completions: its model list (OpenRouter's shape), a key's
credit and limits (OpenRouter's ``/api/v1/key``), the attested miners of confidential routing, its health.
The request documents are in :mod:`veilnet.protocol.openai`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from veilnet.protocol.openai import Model

__all__ = [
    "Budget",
    "ConfidentialMiner",
    "ConfidentialMinerList",
    "GatewayHealth",
    "KeyInfo",
    "KeyInfoData",
    "ModelCard",
    "ModelCardList",
    "Pricing",
    "RateLimit",
    "RateLimitUsed",
]


class _Document(BaseModel):
    model_config = ConfigDict(extra="ignore")  # read by clients: fields a newer gateway adds are skipped


class Pricing(_Document):
    prompt: float  # USD per token
    completion: float


class ModelCard(Model):
    """A model as the gateway offers it: OpenAI's model object with OpenRouter's fields."""

    owned_by: str = "veilnet"
    context_length: int  # the longest any miner serving it offers
    pricing: Pricing  # USD per token, the cheapest miner's
    providers: int  # how many miners serve it
    input_modalities: list[str]  # what at least one of its miners takes


class ModelCardList(_Document):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Budget(_Document):
    limit: float
    reset: str
    usage: float
    remaining: float
    resets_at: str | None


class RateLimit(_Document):
    requests: int | None
    tokens: int | None
    interval: Literal["1m"] = "1m"


class RateLimitUsed(_Document):
    requests: int
    tokens: int


class KeyInfoData(_Document):
    label: str
    limit: float
    usage: float
    limit_remaining: float
    is_free_tier: bool = False
    budget: Budget | None
    rate_limit: RateLimit
    rate_limit_used: RateLimitUsed


class KeyInfo(_Document):
    data: KeyInfoData


class ConfidentialMiner(_Document):
    """A miner the gateway verified attestation for (clients verify again, themselves)."""

    miner: str
    models: list[str]
    platform: str
    simulated: bool
    gpu_attested: bool
    tcb_status: str
    policy_id: str
    keyset_digest: str
    expires_at: float
    price: Pricing
    score: float


class ConfidentialMinerList(_Document):
    object: Literal["list"] = "list"
    data: list[ConfidentialMiner]


class GatewayHealth(_Document):
    status: Literal["ok"] = "ok"
    miners: int
    breakers: dict[str, Literal["closed", "open", "half_open"]]  # miners ever opened or paused
