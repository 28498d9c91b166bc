"""The interface every model engine implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from veilnet.errors import ConfigError

__all__ = ["ModelEngine", "ModelInfo", "check_embedding_models"]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    context_length: int
    embeddings: bool = False
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


def check_embedding_models(models: list[str], embedding_models: list[str] | None) -> list[str]:
    """``embedding_models`` (the served models that also embed), refused unless each is among ``models``."""
    not_served = [name for name in embedding_models or [] if name not in models]
    if not_served:
        raise ConfigError(f"embedding models {', '.join(not_served)} are not among the served models "
                          f"({', '.join(models)})")
    return list(embedding_models or [])
