"""Chat completions as a task: challenges from organic replays, reference-written questions and word-list
prompts (:mod:`veilnet.tasks.challenges`), answers re-scored by the validator's reference model
(:func:`veilnet.tasks.chat.verify_chat_answer`). Served by the miner's language-model engine on its own
routes (streams, sealed requests), so :meth:`ChatTask.handler` is None. Organic answers are re-scored the same
way (no truth is needed)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, JsonValue

from veilnet.models.engine import ReferenceModel
from veilnet.protocol import paths
from veilnet.protocol.openai import ChatCompletionRequest
from veilnet.tasks.answer import ChatAnswer
from veilnet.tasks.challenges import challenge_request, organic_requests
from veilnet.tasks.chat import verify_chat_answer
from veilnet.tasks.interface import Challenge, ChallengeTools, HandlerTools, Task, TaskHandler, VerifyTools
from veilnet.tasks.verdict import Verdict

__all__ = ["ChatTask"]


class ChatTask(Task[ChatCompletionRequest, BaseModel]):
    name: ClassVar[str] = "chat"
    request_type: ClassVar[type[BaseModel]] = ChatCompletionRequest
    answer_type: ClassVar[type[BaseModel]] = ChatAnswer
    default_model: ClassVar[str] = "SmolLM2-135M-Instruct"
    unit: ClassVar[str] = "token"
    path: ClassVar[str] = paths.CHAT_COMPLETIONS
    needs_reference: ClassVar[bool] = True
    language_model: ClassVar[bool] = True
    audits_organic: ClassVar[bool] = True

    def units(self, request: ChatCompletionRequest) -> float:
        return float(request.max_completion_tokens or request.max_tokens or 0)

    async def challenge(self, tools: ChallengeTools) -> Challenge[ChatCompletionRequest]:
        # parameters (stream included) those of a recent organic request: nothing marks it as a challenge
        return Challenge(challenge_request(tools.model, tools.rng, organic=organic_requests(list(tools.organic)),
                                           pool=tools.prompt_pool, replay_share=tools.replay_share,
                                           replayed=tools.replayed))

    async def verify(self, request: ChatCompletionRequest, truth: JsonValue, answer: object,
                     tools: VerifyTools) -> Verdict:
        if not isinstance(tools.reference, ReferenceModel):
            raise RuntimeError("the scorer's reference model cannot re-score chat answers")
        return await verify_chat_answer(tools.reference, request, answer, rng=tools.rng)

    async def verify_organic(self, request: ChatCompletionRequest, answer: object, tools: VerifyTools) -> Verdict:
        # re-scoring by the reference needs no truth: an app's answer is verified as a challenge's is
        return await self.verify(request, None, answer, tools)

    def handler(self, tools: HandlerTools) -> TaskHandler | None:
        return None
