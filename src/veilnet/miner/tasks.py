"""The miner's side of the task interface: the handlers of the tasks its settings enable (opened on its exit
stack), the routes that serve them, and their offers in the capacity document.

A task request goes through the same checks as a chat request (Epistula, the caller's standing, replay and
quota in one Redis round trip), is parsed into the task's request document, served by the handler of the
model it names and answered signed. Several tasks may share a path (then the model names the task).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from veilnet.edge import EdgeApp, parse_body, read_body
from veilnet.errors import ConfigError, NotFound, UpstreamError, VeilnetError
from veilnet.miner.service import MinerContext, admit, authenticate
from veilnet.protocol import paths
from veilnet.protocol.capacity import ModelOffer
from veilnet.protocol.epistula import sign_response
from veilnet.settings import Settings
from veilnet.tasks.interface import HandlerTools, ServedTask
from veilnet.tasks.registry import select_tasks

__all__ = ["add_task_routes", "open_task_handlers", "task_models", "task_offers"]


log = logging.getLogger(__name__)

_ENGINE_PATHS = frozenset({paths.CHAT_COMPLETIONS, paths.COMPLETIONS, paths.EMBEDDINGS})


class _ModelOnly(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str


async def open_task_handlers(stack: contextlib.AsyncExitStack, settings: Settings,
                             engine: object = None) -> dict[str, ServedTask]:
    """The handler of every task ``settings.miner.tasks`` names that has its own engine, entered on ``stack``
    (ConfigError for a task not installed)."""
    miner = settings.miner
    served: dict[str, ServedTask] = {}
    for name, task in select_tasks(miner.tasks).items():
        tools = HandlerTools(data_dir=settings.data_dir, engine=engine, concurrency=miner.max_concurrency,
                             queue=miner.max_queue, threads=settings.llamacpp.resolved_threads(),
                             options=dict(miner.task_options.get(name, {})))
        handler = task.handler(tools)
        if handler is not None:
            served[name] = ServedTask(task, await stack.enter_async_context(handler))
    return served


def _by_model(ctx: MinerContext) -> dict[str, ServedTask]:
    return {model: served for served in ctx.tasks.values() for model in served.handler.models()}


def task_models(ctx: MinerContext) -> list[str]:
    """The models the served tasks answer for."""
    return list(_by_model(ctx))


def task_offers(ctx: MinerContext) -> list[ModelOffer]:
    """The capacity document's offers of the task models (priced per million of the task's units)."""
    s = ctx.settings
    return [ModelOffer(id=model, task=served.task.name, capacity_per_window=s.capacity_per_window,
                       price_input_per_million=s.price_input_per_million, price_output_per_million=0.0,
                       context_length=1, concurrency=s.max_concurrency)
            for model, served in _by_model(ctx).items()]


def _serve_on(ctx: MinerContext, path: str) -> Callable[[Request], Awaitable[Response]]:
    by_model = {model: served for model, served in _by_model(ctx).items() if served.task.miner_path == path}
    on_path = {served.task.name: served for served in by_model.values()}

    async def serve(request: Request) -> Response:
        body = await read_body(request, ctx.epistula.max_body_bytes)
        claims = await authenticate(ctx, request.headers, body, check_replay=False)  # admit checks it
        if len(on_path) == 1:
            task = next(iter(on_path.values())).task
        else:
            task = by_model.get(parse_body(_ModelOnly, body).model, next(iter(on_path.values()))).task
        parsed = parse_body(task.request_type, body)
        served = by_model.get(parsed.model)
        if served is None:
            raise NotFound(f"model {parsed.model!r} is not served here for {task.name}; served: "
                           f"{', '.join(by_model)}", code="model_not_found")
        await admit(ctx, claims.signed_by, request_uuid=claims.uuid)
        try:
            answer = await served.handler.serve(parsed)
        except VeilnetError:
            raise
        except Exception as exc:  # a task engine's own failure: the miner's fault, said without its internals
            log.exception("task engine failed", extra={"task": task.name})
            raise UpstreamError(f"the {task.name} engine failed ({type(exc).__name__})") from exc
        data = answer.model_dump_json(exclude_none=True).encode()
        return Response(data, media_type="application/json",
                        headers=sign_response(ctx.keypair, data, claims.uuid, claims.signed_by))

    return serve


def add_task_routes(app: EdgeApp, ctx: MinerContext) -> None:
    """A POST route per path the served tasks use, on ``app``'s fast path."""
    for path in sorted({served.task.miner_path for served in ctx.tasks.values()}):
        if path in _ENGINE_PATHS:
            raise ConfigError(f"a task with its own engine cannot be served on {path}, the language-model "
                              "engine's path; give it a path of its own (its gateway route may be that one)")
        route = _serve_on(ctx, path)
        app.post(path)(route)
        app.fast_routes[path] = route
