"""OpenAI-compatible request documents (chat, completions, embeddings), ordered as OpenAI documents them,
and the gateway's versions of them (OpenRouter's routing fields added).

Only pydantic and the standard library. Unknown fields are refused (``extra="forbid"``), so a typo never
silently changes sampling, and so are NaN and infinity anywhere (``allow_inf_nan=False``): what a gateway
accepts, a miner accepts too, since both parse with these documents. A message's content parts are typed
(text, image, audio); which of them a model takes is its input modalities (:func:`input_modalities`,
declared per model in the miner's capacity document).

A request travels to a miner as exactly the fields its sender set (``model_dump_json(exclude_unset=True)``),
so defaults never grow a body on its way.

Tools (``tools``, ``tool_choice``, ``parallel_tool_calls``), structured output (``response_format``: text,
``json_object``, ``json_schema``) and ``n`` are typed as OpenAI documents them; a JSON schema itself (a tool's
``parameters``, a format's ``schema``) is a JSON object (:data:`JsonSchema`), checked to be one. Which of them
a request uses is :func:`functional_parameters`: a miner must declare each of those to be routed such a request.
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from veilnet.protocol import paths

__all__ = [
    "FUNCTIONAL_PARAMETERS",
    "MAX_CHOICES",
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
    "FunctionCall",
    "FunctionDefinition",
    "GatewayChatRequest",
    "GatewayCompletionRequest",
    "GatewayEmbeddingRequest",
    "GatewayRequest",
    "ImagePart",
    "JsonObjectFormat",
    "JsonSchema",
    "JsonSchemaFormat",
    "JsonSchemaSpec",
    "MaxPrice",
    "MinerRequest",
    "Modality",
    "Model",
    "ModelList",
    "NamedFunction",
    "NamedToolChoice",
    "ProviderPreferences",
    "ResponseFormat",
    "RoutingFields",
    "StreamOptions",
    "TextFormat",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "encode_embeddings_base64",
    "functional_parameters",
    "input_modalities",
    "prompt_text_chars",
    "prompt_token_floor",
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


#: A JSON schema as a request carries it (a tool's parameters, a response format's schema): a JSON object.
JsonSchema = dict[str, JsonValue]
#: The most choices one request may ask for (``n``).
MAX_CHOICES = 8


class FunctionCall(_Strict):
    """A function an assistant called: its name and its arguments as a JSON text."""

    name: str = Field(min_length=1)
    arguments: str


class ToolCall(_Strict):
    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    refusal: str | None = None  # an assistant message's refusal, as the SDKs send history back
    tool_calls: list[ToolCall] | None = None  # an assistant message's calls
    tool_call_id: str | None = None  # a tool message: the call it answers

    @model_validator(mode="after")
    def _tool_fields(self) -> ChatMessage:
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id it answers")
        return self


class FunctionDefinition(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    parameters: JsonSchema | None = None
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Strict):
    name: str = Field(min_length=1)


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


#: ``none`` / ``auto`` / ``required``, or the one function to call.
ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class TextFormat(_Strict):
    type: Literal["text"]


class JsonObjectFormat(_Strict):
    type: Literal["json_object"]


class JsonSchemaSpec(_Strict):
    """OpenAI's ``response_format.json_schema``: the schema travels as ``schema`` (``schema_`` in Python,
    since pydantic models own a ``schema`` name)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, validate_by_name=True, validate_by_alias=True,
                              serialize_by_alias=True)
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    schema_: JsonSchema | None = Field(default=None, alias="schema")
    strict: bool | None = None


class JsonSchemaFormat(_Strict):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")]


class StreamOptions(_Strict):
    include_usage: bool = True


class _Sampling(_Strict):
    model: str = Field(min_length=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=32_768)
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
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
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(default=None, min_length=1, max_length=128)
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="after")
    def _tool_choice_names_a_tool(self) -> ChatCompletionRequest:
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice):
            names = [t.function.name for t in self.tools or []]
            if choice.function.name not in names:
                raise ValueError(f"tool_choice names function {choice.function.name!r}, which is not among the "
                                 f"tools ({', '.join(names) or 'none given'})")
        elif choice == "required" and not self.tools:
            raise ValueError("tool_choice 'required' needs tools")
        return self


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


_WORDS = re.compile(r"\S+")


def prompt_token_floor(request: MinerRequest | None) -> int:
    """A number of tokens the prompt of ``request`` surely has, whatever the model's tokenizer: its runs of
    non-space characters in message text and tool-call arguments. Byte-level BPE (GPT-2, Llama 3, Qwen,
    SmolLM2) pre-splits text so that no token holds two such runs, and SentencePiece splits on whitespace, so
    each run is at least one token; the chat template only adds tokens."""
    if isinstance(request, CompletionRequest):
        return len(_WORDS.findall(request.prompt))
    if not isinstance(request, ChatCompletionRequest):
        return 0
    total = 0
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            total += len(_WORDS.findall(content))
        elif content is not None:
            total += sum(len(_WORDS.findall(part.text)) for part in content if isinstance(part, TextPart))
        for call in message.tool_calls or []:
            total += len(_WORDS.findall(call.function.arguments))
    return total


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


#: Request fields that change what a model must produce (a tool call, JSON, several choices): a request using
#: one is routed only to miners that declare it, whatever ``provider.require_parameters`` says (OpenRouter's
#: behaviour for tools and structured output).
FUNCTIONAL_PARAMETERS: frozenset[str] = frozenset({
    "tools", "tool_choice", "parallel_tool_calls", "response_format", "n",
})


def functional_parameters(request: BaseModel) -> frozenset[str]:
    """The functional parameters ``request`` uses: those it sets to something other than their plain
    meaning (``n`` above 1, a response format other than text, any tools)."""
    used = set()
    if isinstance(request, ChatCompletionRequest):
        if request.tools:
            used.add("tools")
            if request.tool_choice is not None:
                used.add("tool_choice")
            if request.parallel_tool_calls is not None:
                used.add("parallel_tool_calls")
        if request.response_format is not None and not isinstance(request.response_format, TextFormat):
            used.add("response_format")
    if isinstance(request, ChatCompletionRequest | CompletionRequest) and request.n > 1:
        used.add("n")
    return frozenset(used)


#: Request fields that change how a model samples; a miner declares which it honours (``/capacity``), and
#: ``provider.require_parameters`` routes only to miners honouring all those a request sets.
SAMPLING_PARAMETERS: frozenset[str] = frozenset({
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "seed", "stop", "logprobs",
    "top_logprobs", "presence_penalty", "frequency_penalty", "repetition_penalty", "min_p", "logit_bias",
    "response_format", "tools", "tool_choice", "parallel_tool_calls", "n",
})

#: What veilnet's miner passes to its backend by default: llama.cpp's server and vLLM-style upstreams honour
#: all of them. An operator whose upstream ignores some declares less (``VEILNET_MINER__SUPPORTED_PARAMETERS``).
MINER_SUPPORTED_PARAMETERS: tuple[str, ...] = (
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "logprobs", "top_logprobs",
    "presence_penalty", "frequency_penalty", "logit_bias", "n", "tools", "tool_choice", "parallel_tool_calls",
    "response_format",
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
