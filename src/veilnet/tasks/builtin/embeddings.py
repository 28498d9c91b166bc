"""Embeddings as a task: random texts, answers compared with the reference model's own vectors
(:func:`veilnet.tasks.embeddings.verify_embeddings_answer`). Served by the miner's language-model engine on
``/v1/embeddings`` (base64 encoding included), so :meth:`EmbeddingsTask.handler` is None."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from veilnet.protocol import paths
from veilnet.protocol.openai import EmbeddingRequest
from veilnet.tasks.challenges import embeddings_texts
from veilnet.tasks.embeddings import verify_embeddings_answer
from veilnet.tasks.interface import Challenge, ChallengeTools, HandlerTools, Task, TaskHandler, VerifyTools
from veilnet.tasks.verdict import Verdict

__all__ = ["EmbeddingsAnswer", "EmbeddingsTask"]


class _Vector(BaseModel):
    model_config = ConfigDict(extra="ignore")
    index: int = Field(ge=0)
    embedding: list[float]


class EmbeddingsAnswer(BaseModel):
    """OpenAI's embeddings answer, floats (what miners send validators)."""

    model_config = ConfigDict(extra="ignore")
    object: Literal["list"] = "list"
    model: str
    data: list[_Vector]
    usage: dict[str, int] = Field(default_factory=dict)


class EmbeddingsTask(Task[EmbeddingRequest, EmbeddingsAnswer]):
    name: ClassVar[str] = "embeddings"
    request_type: ClassVar[type[BaseModel]] = EmbeddingRequest
    answer_type: ClassVar[type[BaseModel]] = EmbeddingsAnswer
    default_model: ClassVar[str] = "SmolLM2-135M-Instruct"
    unit: ClassVar[str] = "input"
    path: ClassVar[str] = paths.EMBEDDINGS
    needs_reference: ClassVar[bool] = True
    language_model: ClassVar[bool] = True

    def units(self, request: EmbeddingRequest) -> float:
        return float(len(request.input) if isinstance(request.input, list) else 1)

    async def challenge(self, tools: ChallengeTools) -> Challenge[EmbeddingRequest]:
        return Challenge(EmbeddingRequest(model=tools.model, input=embeddings_texts(tools.rng)))

    async def verify(self, request: EmbeddingRequest, truth: JsonValue, answer: object,
                     tools: VerifyTools) -> Verdict:
        if tools.reference is None:
            raise RuntimeError("this process verifies embeddings without a reference model")
        document: dict[str, Any] = answer if isinstance(answer, dict) else {}
        return await verify_embeddings_answer(tools.reference, request.model_dump(exclude_none=True), document)

    def handler(self, tools: HandlerTools) -> TaskHandler | None:
        return None
