"""The interface every model engine implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from veilnet.errors import ConfigError
from veilnet.models.tokenizer import Tokenizer
from veilnet.models.vocab import Vocabulary

__all__ = ["ModelEngine", "ModelInfo", "NextTokens", "ReferenceModel", "TokenLogprob", "check_embedding_models"]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    context_length: int
    embeddings: bool = False
    embedding_concurrency: int | None = None  # embeddings requests it runs at once (None: as many as any other)
    input_modalities: frozenset[str] = frozenset({"text"})  # what its requests may hold: text, image, audio


@runtime_checkable
class ModelEngine(Protocol):
    """Runs OpenAI-shaped requests (plain dicts, already validated) for the models it lists."""

    def models(self) -> list[ModelInfo]: ...

    async def chat(self, request: dict[str, Any]) -> dict[str, Any]: ...

    def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...

    async def completion(self, request: dict[str, Any]) -> dict[str, Any]: ...

    def completion_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...

    async def embeddings(self, request: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TokenLogprob:
    """A candidate next token under a model: its id, its bytes (empty for control tokens) and its log
    probability under the model's plain softmax (temperature 1, nothing truncated)."""

    id: int
    bytes: bytes
    logprob: float


@dataclass(frozen=True)
class NextTokens:
    """The most likely next tokens (most likely first) and the exact log probability of the one token asked
    about (None when none was)."""

    top: list[TokenLogprob]
    scored: float | None = None


@runtime_checkable
class ReferenceModel(Protocol):
    """What a validator's verifier asks of its reference: the model's tokenizer and vocabulary, and the most
    likely next tokens after a sequence of token ids (re-scoring an answer feeds ids, never re-tokenised text)."""

    async def tokenizer(self, model: str) -> Tokenizer: ...

    async def vocabulary(self, model: str) -> Vocabulary:
        """Every token id's raw bytes (what a grammar's token mask is computed over)."""
        ...

    async def next_tokens(self, model: str, token_ids: Sequence[int], top: int, *, score: int | None = None) -> NextTokens:
        """The ``top`` most likely tokens after ``token_ids`` and the log probability of token ``score``
        there. Calls for growing prefixes of one sequence reuse the engine's cache of the prefix."""
        ...


def check_embedding_models(models: list[str], embedding_models: list[str] | None) -> list[str]:
    """``embedding_models`` (the served models that also embed), refused unless each is among ``models``."""
    not_served = [name for name in embedding_models or [] if name not in models]
    if not_served:
        raise ConfigError(f"embedding models {', '.join(not_served)} are not among the served models "
                          f"({', '.join(models)})")
    return list(embedding_models or [])
