"""The one interface every task implements, veilnet's own and those other packages plug in.

A task is a modality a subnet serves. It names its typed request and answer documents, generates challenges
(the request a miner gets and what the validator knows about it), verifies an answer into a
:class:`~veilnet.tasks.verdict.Verdict`, says which engine serves it on a miner (:meth:`Task.handler`), the
path miners serve it on and the gateway route apps call, and the unit its capacity and billing count in.
Tasks are found through the entry-point group ``veilnet.tasks`` (:mod:`veilnet.tasks.registry`): a package
that declares ``[project.entry-points."veilnet.tasks"] name = "module:TaskClass"`` plugs in by being
installed. Miner, validator and gateway only ever go through this interface.

Verification is pure given its inputs: the request, the truth the challenge kept, the answer and the
validator's tools (its reference engine when the task re-runs a model); it never raises for anything a miner
sent (a malformed answer is a failed verdict) and returns a hard failure only for what no honest miner sends.

Organic answers (apps' requests the gateway relayed and passed to the scorers) have no kept truth:
:meth:`Task.verify_organic` judges them, or returns None where the task has no check without a truth (the
default; the answer then stays unverified, never held against the miner). A task that sets
``audits_organic`` has one, and the gateway passes a sample of its organic answers to the scorers; one that
sets ``organic_engine`` compares an answer with the validator's own reading of the same input, by the
handler :meth:`Task.handler` gives the validator (``VerifyTools.engine_for``).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, MutableSet, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import BaseModel, JsonValue, ValidationError

from veilnet.tasks.verdict import Verdict

__all__ = [
    "Answer",
    "Challenge",
    "ChallengeTools",
    "EngineHandler",
    "HandlerTools",
    "Request",
    "ServedTask",
    "Task",
    "TaskEngines",
    "TaskHandler",
    "VerifyTools",
    "miner_path",
    "own_reading",
]

Request = TypeVar("Request", bound=BaseModel)
Answer = TypeVar("Answer", bound=BaseModel)


def miner_path(name: str) -> str:
    """The path a miner serves task ``name`` on when the task names no other (``/v1/tasks/<name>``)."""
    return f"/v1/tasks/{name}"


@dataclass(frozen=True)
class Challenge(Generic[Request]):
    """The request a miner gets and what the validator keeps about it (JSON: it travels to scorers through
    Redis with the answer). ``truth`` is None for tasks verified by re-running a reference."""

    request: Request
    truth: JsonValue = None


@dataclass
class ChallengeTools:
    """What a challenge generator may use: the validator's random source, the model to ask for, the
    validator's engine (tasks whose challenges a model writes), organic samples and written prompts (chat)."""

    rng: random.Random
    model: str
    engine: Any = None  # the validator's own engine (LlamaCppEngine in veilnet's validator), or None
    organic: Sequence[dict[str, str]] = ()
    prompt_pool: Any = None  # veilnet.tasks.challenges.PromptPool for chat
    replay_share: float = 0.3
    replayed: MutableSet[str] | None = None  # organic conversations already replayed (chat: each once)


class TaskEngines(Protocol):
    """The validator's own engines for tasks (:class:`veilnet.validator.engines.OrganicEngines`)."""

    async def engine_for(self, task: str) -> TaskHandler | None: ...


@dataclass
class VerifyTools:
    """What a verifier may use: the validator's random source, its reference engine (None in a process that
    holds none; a task that needs one says so with ``Task.needs_reference``) and the tasks' own engines it
    opened (by task name: the handlers of the tasks that set ``Task.organic_engine``, entered)."""

    rng: random.Random = field(default_factory=random.Random)
    reference: Any = None
    engines: TaskEngines | None = None

    async def engine_for(self, task: str) -> TaskHandler | None:
        """The validator's own engine serving ``task`` (None: this process has none)."""
        return await self.engines.engine_for(task) if self.engines is not None else None


@dataclass
class HandlerTools:
    """What a miner-side handler factory may use: the miner's settings section, its data directory (model
    caches), its language-model engine (for tasks served by a language model) and its concurrency limits."""

    data_dir: Path
    engine: Any = None
    concurrency: int = 2
    queue: int = 16
    threads: int = 2
    options: dict[str, Any] = field(default_factory=dict)  # the task's own settings (miner.task_options[name])


class TaskHandler(Protocol):
    """The miner's engine for one task: an async context manager serving typed requests for its models."""

    async def __aenter__(self) -> TaskHandler: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    def models(self) -> list[str]: ...

    async def serve(self, request: Any) -> BaseModel:
        """The answer document for ``request`` (already parsed into the task's request type). Raises
        veilnet errors (NotFound, Overloaded, InvalidRequest, UpstreamError) for the edge to map."""
        ...


class EngineHandler:
    """A :class:`TaskHandler` over an engine that is an async context manager with ``models()``: ``serve``
    is the engine's method that answers one request (OCR's ``transcribe``, orientation's ``classify``)."""

    def __init__(self, engine: Any, serve: Callable[[Any], Awaitable[BaseModel]]) -> None:
        self.engine = engine
        self._serve = serve

    async def __aenter__(self) -> EngineHandler:
        await self.engine.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.engine.__aexit__(*exc_info)

    def models(self) -> list[str]:
        return list(self.engine.models())

    async def serve(self, request: Any) -> BaseModel:
        return await self._serve(request)


class Task(ABC, Generic[Request, Answer]):
    """A task: see the module docstring. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]  # the entry point's name, the capacity document's ``task``, the observation's task
    request_type: ClassVar[type[BaseModel]]
    answer_type: ClassVar[type[BaseModel]]
    default_model: ClassVar[str]  # the model name miners serve it under unless told otherwise
    unit: ClassVar[str]  # what capacity and billing count: "request", "image", "1k characters", "token"...
    path: ClassVar[str] = ""  # where miners serve it (default: miner_path(name))
    route: ClassVar[str] = ""  # where the gateway serves it to apps (default: the miner's path)
    needs_reference: ClassVar[bool] = False  # the verifier re-runs the validator's reference engine
    language_model: ClassVar[bool] = False  # served by the miner's language-model engine (chat, embeddings)
    # verify_organic judges organic answers: the gateway passes a sample of them to the scorers
    audits_organic: ClassVar[bool] = False
    # verify_organic compares with the validator's own engine (handler()), which scorers open for the task
    organic_engine: ClassVar[bool] = False

    @property
    def miner_path(self) -> str:
        return self.path or miner_path(self.name)

    @property
    def gateway_route(self) -> str:
        return self.route or self.miner_path

    def parse_answer(self, answer: object) -> Answer | str:
        """The answer as the task's document, or why it is not one (never raises)."""
        try:
            return self.answer_type.model_validate(answer)  # type: ignore[return-value]
        except ValidationError as exc:
            first = exc.errors()[0]
            return f"malformed {self.name} answer: {first['msg']} at {'.'.join(str(p) for p in first['loc'])}"

    @abstractmethod
    def units(self, request: Request) -> float:
        """The work ``request`` asks for, in ``unit``: fixed by the request, never by an answer."""

    @abstractmethod
    async def challenge(self, tools: ChallengeTools) -> Challenge[Request]:
        """A fresh challenge for ``tools.model``."""

    @abstractmethod
    async def verify(self, request: Request, truth: JsonValue, answer: object, tools: VerifyTools) -> Verdict:
        """The verdict on ``answer`` (the miner's JSON, unparsed) to ``request`` whose challenge kept ``truth``."""

    @abstractmethod
    def handler(self, tools: HandlerTools) -> TaskHandler | None:
        """The miner's engine for this task (None: served by the language-model engine's own routes)."""

    async def verify_json(self, request: dict[str, Any], truth: JsonValue, answer: object,
                          tools: VerifyTools) -> Verdict:
        """:meth:`verify` on the request as it travelled (JSON); a request that does not parse is the
        validator's own fault and raises ValueError."""
        try:
            parsed = self.request_type.model_validate(request)
        except ValidationError as exc:
            raise ValueError(f"the {self.name} challenge's own request does not parse: {exc}") from exc
        return await self.verify(parsed, truth, answer, tools)  # type: ignore[arg-type]

    async def verify_organic(self, request: Request, answer: object, tools: VerifyTools) -> Verdict | None:
        """The verdict on ``answer`` (the miner's JSON, unparsed) to an app's ``request``, which kept no truth;
        None: this task cannot judge an answer without a known truth (the default). Like :meth:`verify`, never
        raises for anything a miner sent."""
        return None

    async def verify_organic_json(self, request: dict[str, Any], answer: object,
                                  tools: VerifyTools) -> Verdict | None:
        """:meth:`verify_organic` on the request as it travelled (JSON); one that does not parse (the gateway
        relayed only parsed requests) raises ValueError."""
        try:
            parsed = self.request_type.model_validate(request)
        except ValidationError as exc:
            raise ValueError(f"the {self.name} organic request does not parse: {exc}") from exc
        return await self.verify_organic(parsed, answer, tools)  # type: ignore[arg-type]

    async def organic_handler(self, tools: VerifyTools) -> TaskHandler:
        """The validator's own engine for this task (RuntimeError when this process has none: a scorer set up
        without it cannot verify, and the answer stays unverified)."""
        handler = await tools.engine_for(self.name)
        if handler is None:
            raise RuntimeError(f"this scorer holds no {self.name} engine to verify organic answers with")
        return handler


async def own_reading(handler: TaskHandler, request: BaseModel, answer_type: type[Answer]) -> Answer:
    """``handler``'s answer to ``request`` as ``answer_type``: the validator's own reading of an app's input. Asked
    under the first model the handler serves when it serves not the request's (a miner may serve the task under
    another model; the organic verifiers compare readings, never model names)."""
    served = handler.models()
    if served and getattr(request, "model", None) not in served:
        request = request.model_copy(update={"model": served[0]})
    answer = await handler.serve(request)
    return answer if isinstance(answer, answer_type) else answer_type.model_validate(answer.model_dump())


@dataclass(frozen=True)
class ServedTask:
    """A task a miner serves, with the handler (engine) that serves it."""

    task: Task[Any, Any]
    handler: TaskHandler
