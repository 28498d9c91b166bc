"""OpenAI-compatible request schemas (chat, completions, embeddings), ordered as OpenAI documents them.

Only pydantic and the standard library. Between validator/gateway and miner unknown fields are refused
(``extra="forbid"``), so a typo never silently changes sampling.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "MINER_SUPPORTED_PARAMETERS",
    "SAMPLING_PARAMETERS",
    "AttestationPreferences",
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "EmbeddingRequest",
    "MaxPrice",
    "ProviderPreferences",
    "RoutingFields",
    "StreamOptions",
    "encode_embeddings_base64",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = True


class _Sampling(_Strict):
    model: str = Field(min_length=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    n: int = Field(default=1, ge=1, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop_limit(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32_768)


class CompletionRequest(_Sampling):
    prompt: str = Field(min_length=1)
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = False


class EmbeddingRequest(_Strict):
    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


class MaxPrice(_Strict):
    """USD per million tokens (OpenRouter's ``provider.max_price``)."""

    prompt: float | None = Field(default=None, ge=0)
    completion: float | None = Field(default=None, ge=0)


class AttestationPreferences(_Strict):
    """Which attested miners a confidential request accepts (on top of the gateway's own policy)."""

    platforms: list[Literal["tdx", "sev-snp", "dev"]] | None = None
    gpu_required: bool = False
    policy_version: int | None = Field(default=None, ge=0)  # minimum version of the policy verified under


class ProviderPreferences(_Strict):
    """OpenRouter's ``provider`` object (the parts the gateway honours); miners are named by hotkey."""

    order: list[str] | None = None
    only: list[str] | None = None
    ignore: list[str] | None = None
    allow_fallbacks: bool = True
    sort: Literal["price", "latency", "throughput"] | None = None
    max_price: MaxPrice | None = None
    require_parameters: bool = False  # only miners that declare every sampling parameter the request sets
    data_collection: Literal["allow", "deny"] = "allow"  # deny: only miners that declare they keep no data
    # required: only miners with fresh verified TEE attestation, the request sealed to the enclave;
    # preferred: those first, others as fallbacks
    confidential: Literal["required", "preferred", "off"] = "off"
    attestation: AttestationPreferences | None = None


class RoutingFields(_Strict):
    """The gateway's extensions to an OpenAI request: routing preferences and the ``models`` fallback list."""

    provider: ProviderPreferences | None = None
    models: list[str] | None = None


#: Request fields that change how a model samples; a miner declares which it honours (``/capacity``), and
#: ``provider.require_parameters`` routes only to miners honouring all those a request sets.
SAMPLING_PARAMETERS: frozenset[str] = frozenset({
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed", "stop", "logprobs",
    "top_logprobs", "presence_penalty", "frequency_penalty", "repetition_penalty", "min_p", "logit_bias",
    "response_format", "tools", "tool_choice", "n",
})

#: What veilnet's miner passes to its backend by default: llama.cpp's server and vLLM-style upstreams honour
#: all of them. An operator whose upstream ignores some declares less (``VEILNET_MINER__SUPPORTED_PARAMETERS``).
MINER_SUPPORTED_PARAMETERS: tuple[str, ...] = (
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "logprobs", "top_logprobs",
    "presence_penalty", "frequency_penalty", "logit_bias", "n",
)


def encode_embeddings_base64(answer: dict[str, Any]) -> None:
    """Turn an embeddings answer's float vectors into OpenAI's base64 form (little-endian float32), in place;
    ValueError when a vector is not a list of numbers."""
    items = answer.get("data", [])
    if not isinstance(items, list):
        raise ValueError("data is not a list")
    for index, item in enumerate(items):
        vector: Any = item.get("embedding") if isinstance(item, dict) else None
        try:
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        except (struct.error, TypeError) as exc:
            raise ValueError(f"data[{index}].embedding is not a list of numbers") from exc
