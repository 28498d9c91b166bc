"""The interface every model engine implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["ModelEngine", "ModelInfo"]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    context_length: int
    embeddings: bool = False


@runtime_checkable
class ModelEngine(Protocol):
    """Runs OpenAI-shaped requests (plain dicts, already validated) for the models it lists."""

    def models(self) -> list[ModelInfo]: ...

    async def chat(self, request: dict[str, Any]) -> dict[str, Any]: ...

    def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...

    async def completion(self, request: dict[str, Any]) -> dict[str, Any]: ...

    def completion_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...

    async def embeddings(self, request: dict[str, Any]) -> dict[str, Any]: ...
