"""OpenAI-compatible request documents (chat, completions, embeddings), ordered as OpenAI documents them,
and the gateway's versions of them (OpenRouter's routing fields added).

Only pydantic and the standard library. Unknown fields are refused (``extra="forbid"``), so a typo never
silently changes sampling, and so are NaN and infinity anywhere (``allow_inf_nan=False``): what a gateway
accepts, a miner accepts too, since both parse with these documents. A message's content parts are typed
(text, image, audio); which of them a model takes is its input modalities (:func:`input_modalities`,
declared per model in the miner's capacity document).

A request travels to a miner as exactly the fields its sender set (``model_dump_json(exclude_unset=True)``),
so defaults never grow a body on its way.
"""

from __future__ import annotations

import base64
import struct
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from veilnet.protocol import paths

__all__ = [
    "MINER_SUPPORTED_PARAMETERS",
    "SAMPLING_PARAMETERS",
    "TEXT_ONLY",
    "AttestationPreferences",
    "AudioPart",
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "ContentPart",
    "EmbeddingRequest",
    "GatewayChatRequest",
    "GatewayCompletionRequest",
    "GatewayEmbeddingRequest",
    "GatewayRequest",
    "ImagePart",
    "MaxPrice",
    "MinerRequest",
    "Modality",
    "Model",
    "ModelList",
    "ProviderPreferences",
    "RoutingFields",
    "StreamOptions",
    "TextPart",
    "encode_embeddings_base64",
    "input_modalities",
    "prompt_text_chars",
]

#: What a model takes as input (a miner declares it per model; text is always taken).
Modality = Literal["text", "image", "audio"]
TEXT_ONLY: frozenset[str] = frozenset({"text"})


MAX_TOKEN_ID = 2**31  # token ids are 32-bit signed integers in every backend veilnet relays to


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImageUrl(_Strict):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(_Strict):
    data: str = Field(min_length=1)  # base64
    format: Literal["wav", "mp3"]


class AudioPart(_Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio


#: One part of a message's content; a part of any other type is refused naming its type.
ContentPart = Annotated[TextPart | ImagePart | AudioPart, Field(discriminator="type")]
_PART_MODALITY: dict[type[BaseModel], str] = {TextPart: "text", ImagePart: "image", AudioPart: "audio"}


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(_Strict):
    include_usage: bool = True


class _Sampling(_Strict):
    model: str = Field(min_length=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    n: int = Field(default=1, ge=1, le=1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)  # what backends keep (a 64-bit integer)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    user: str | None = None

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        """OpenAI's logit_bias maps token ids (decimal, as JSON keys are strings) to a bias; backends read the
        ids as 32-bit integers, and llama.cpp would take a word for the tokens it spells."""
        for key in value or ():
            if not (key.isascii() and key.isdigit() and int(key) < MAX_TOKEN_ID):
                raise ValueError(f"keys must be token ids (integers from 0 to {MAX_TOKEN_ID - 1}), not {key[:40]!r}")
        return value

    @field_validator("stop")
    @classmethod
    def _stop_limit(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value


class ChatCompletionRequest(_Sampling):
    PATH: ClassVar[str] = paths.CHAT_COMPLETIONS
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32_768)


class CompletionRequest(_Sampling):
    PATH: ClassVar[str] = paths.COMPLETIONS
    prompt: str = Field(min_length=1)
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = False


class EmbeddingRequest(_Strict):
    PATH: ClassVar[str] = paths.EMBEDDINGS
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
    """The gateway's extensions to an OpenAI request: routing preferences and the ``models`` fallback list
    (at most ``MAX_FALLBACK_MODELS`` names: each is routed in turn)."""

    ROUTING: ClassVar[frozenset[str]] = frozenset({"provider", "models"})  # never sent to a miner
    MAX_FALLBACK_MODELS: ClassVar[int] = 8
    provider: ProviderPreferences | None = None
    models: list[Annotated[str, Field(min_length=1)]] | None = Field(default=None, max_length=8)


class GatewayChatRequest(ChatCompletionRequest, RoutingFields):
    pass


class GatewayCompletionRequest(CompletionRequest, RoutingFields):
    pass


class GatewayEmbeddingRequest(EmbeddingRequest, RoutingFields):
    pass


#: A request as a miner takes it, and as an app sends it to the gateway.
MinerRequest = ChatCompletionRequest | CompletionRequest | EmbeddingRequest
GatewayRequest = GatewayChatRequest | GatewayCompletionRequest | GatewayEmbeddingRequest


def input_modalities(request: MinerRequest) -> frozenset[str]:
    """What kinds of input ``request`` holds: text, and image or audio when a message has such parts."""
    if not isinstance(request, ChatCompletionRequest):
        return TEXT_ONLY
    kinds: set[str] | None = None
    for message in request.messages:
        if isinstance(message.content, list):
            for part in message.content:
                if not isinstance(part, TextPart):
                    kinds = kinds or {"text"}
                    kinds.add(_PART_MODALITY[type(part)])
    return TEXT_ONLY if kinds is None else frozenset(kinds)


def prompt_text_chars(request: MinerRequest | None) -> int:
    """Characters of text in a chat request's messages or a completion request's prompt (an image's or an
    audio clip's bytes are not text); 0 when there is no request to read."""
    if isinstance(request, ChatCompletionRequest):
        total = 0
        for message in request.messages:
            content = message.content
            if isinstance(content, str):
                total += len(content)
            elif content is not None:
                total += sum(len(part.text) for part in content if isinstance(part, TextPart))
        return total
    if isinstance(request, CompletionRequest):
        return len(request.prompt)
    return 0


class Model(BaseModel):
    """OpenAI's model object (``GET /v1/models``), with the context length OpenRouter adds."""

    model_config = ConfigDict(extra="forbid")

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str
    context_length: int | None = None


class ModelList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object: Literal["list"] = "list"
    data: list[Model]


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
