"""Serving installed tasks to apps, each on its gateway route (:attr:`Task.gateway_route`), generically.

A task request is admitted like any other (API key, credit, rate limits), parsed into the task's request
document, routed to the healthy miners offering its model (the same :class:`~veilnet.gateway.router.Router`
and :class:`~veilnet.gateway.attempt.Attempts` as chat: breakers, failover, fault classification), and the
first miner's signed answer that parses as the task's answer document is returned with its ``usage`` and the
request's one id (``X-Generation-Id``). A task whose gateway route is an OpenAI route (OCR on
``/v1/chat/completions``) shares it: the request's model picks the task (:meth:`TaskRelay.task_for`).

Billing counts the task's units (fixed by the request: images, characters, ...), never what an answer
claims: ``prompt_tokens`` carries the units (rounded up) and miners price them per million like tokens.
Task requests are never sampled into the validator's organic stream (its replays are chat prompts). The
answers of tasks that judge organic answers (``Task.audits_organic``) are drawn for the validator's scorers as
chat's are (:class:`~veilnet.gateway.verification.OrganicVerifier`: the same rate, the bytes the miner signed,
kept ``private`` when the request's provider preferences deny data collection), and verified there by the
task's ``verify_organic``.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict
from pydantic_core import to_json

from veilnet.edge import parse_body
from veilnet.errors import InvalidRequest, NotFound, Overloaded, UpstreamError
from veilnet.gateway.access import KeyGate
from veilnet.gateway.attempt import Attempts, MinerRefused, Opened, short, timed_out
from veilnet.gateway.directory import MinerDirectory
from veilnet.gateway.flow import FlowParts, new_generation_id
from veilnet.gateway.router import Needs
from veilnet.protocol.headers import GENERATION_HEADER
from veilnet.protocol.usage import LedgerStatus, Usage
from veilnet.relay import RelayError
from veilnet.tasks.interface import Task

__all__ = ["TaskRelay"]

_SIGNATURE_HEADER = "Epistula-Response-Signature"


class _ModelOnly(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str


class TaskRelay:
    """Serves ``tasks`` (installed tasks with their own engines, by name) through ``parts``."""

    def __init__(self, tasks: dict[str, Task[Any, Any]], access: KeyGate, parts: FlowParts,
                 directory: MinerDirectory) -> None:
        self.tasks = tasks
        self._access = access
        self._parts = parts
        self._directory = directory
        self._seen: object = None  # the directory's offers the table below was built from
        self._by_route: dict[str, dict[str, Task[Any, Any]]] = {}

    def routes(self) -> set[str]:
        return {task.gateway_route for task in self.tasks.values()}

    def _table(self) -> dict[str, dict[str, Task[Any, Any]]]:
        """route -> model -> task, as miners offer them now (rebuilt when the directory's offers change, not per
        request: the chat route asks on every request)."""
        offers = self._directory.offers
        if offers is not self._seen:
            table: dict[str, dict[str, Task[Any, Any]]] = {}
            for model, name in self._directory.task_models().items():
                task = self.tasks.get(name)
                if task is not None:
                    table.setdefault(task.gateway_route, {})[model] = task
            self._by_route, self._seen = table, offers
        return self._by_route

    def task_for(self, route: str, model: str) -> Task[Any, Any] | None:
        """The task ``model`` is offered for on ``route`` (None: not a task model there)."""
        return self._table().get(route, {}).get(model)

    def shares(self, route: str) -> bool:
        """Whether some miner offers a model on ``route`` for a task now."""
        return bool(self._table().get(route))

    def peek(self, route: str, body: bytes) -> Task[Any, Any] | None:
        """The task a request ``body`` on a shared route is for (None: not a task's model)."""
        try:
            model = _ModelOnly.model_validate_json(body).model
        except ValueError:
            return None  # the route's own parser says what is wrong
        return self.task_for(route, model)

    async def serve(self, request: Request, route: str, body: bytes, *, task: Task[Any, Any] | None = None,
                    started: float | None = None) -> Response:
        started = time.perf_counter() if started is None else started
        key = await self._access.admit(request.headers.get("authorization"))
        model = parse_body(_ModelOnly, body).model
        task = task or self.task_for(route, model)
        if task is None:
            offered = sorted(self._table().get(route, {}))
            raise NotFound(f"no miner serves model {model!r} on {route}; available: {', '.join(offered) or 'none yet'}",
                           code="model_not_found")
        parsed = parse_body(task.request_type, body)
        if getattr(parsed, "stream", False):
            raise InvalidRequest(f"{task.name} answers are not streamed; send stream=false", param="stream")
        units = max(0, math.ceil(task.units(parsed)))
        generation = new_generation_id()
        # chat's rule: an answer not sealed may be verified (tasks are never sealed); deny: held only until verified
        prefs = getattr(parsed, "provider", None)
        entry = self._parts.ledger.entry(key, generation, model, started, sampled=False, task=task.name,
                                         verifiable=task.audits_organic,
                                         private=getattr(prefs, "data_collection", None) == "deny")
        attempts = Attempts(self._parts.miners, self._parts.breaker, self._parts.ledger, task.miner_path,
                            stream=False, endpoint=None)
        wire = parsed.model_dump_json(exclude_unset=True).encode()
        try:
            routes = await self._parts.router.route(model, Needs())
        except Exception:
            entry.finish(None, None, LedgerStatus.ERROR, "no route", model=model)
            raise
        for route_to in routes:
            try:
                opened = await attempts.open(route_to, model, wire)
            except MinerRefused as refused:  # the request is invalid: the app hears it at once
                entry.finish(refused.candidate, None, LedgerStatus.ERROR, refused.error.message[:200], model=model)
                raise refused.error from None
            if opened is None:
                continue
            read = await self._read(task, opened, attempts)
            if read is None:
                continue
            answer, raw = read
            signed = entry.signed("body", raw, opened.uuid, dict(opened.response.headers))
            # units come from the request alone (no answer moves them), so no bound by a context applies
            bill = Usage(prompt_tokens=units, total_tokens=units).priced(opened.candidate.price_input,
                                                                         opened.candidate.price_output)
            answer["usage"] = bill.model_dump(exclude_none=True)
            entry.finish(opened.candidate, bill, LedgerStatus.OK, model=model, request=wire, signed=signed)
            attempts.succeeded(opened, bill.prompt_tokens, 0)
            return Response(to_json(answer), media_type="application/json", headers={GENERATION_HEADER: generation})
        error = attempts.failures[-1] if attempts.failures else UpstreamError("no miner could serve the request")
        entry.finish(None, None, LedgerStatus.ERROR, error.message[:200], model=model)
        if isinstance(error, UpstreamError):
            raise Overloaded(f"no miner could serve the request: {error.message}", retry_after=2)
        raise error

    async def _read(self, task: Task[Any, Any], opened: Opened, attempts: Attempts,
                    ) -> tuple[dict[str, Any], bytes] | None:
        """The miner's answer as JSON, and the bytes it signed, when it is signed and is the task's answer
        document; None (the miner's failure, counted) otherwise."""
        who = f"miner {short(opened.candidate.hotkey)}"
        try:
            raw = await opened.response.read()
            if _SIGNATURE_HEADER not in opened.response.headers:
                raise UpstreamError(f"{who} sent an answer without its signature")
            data = json.loads(raw)
            parsed = task.parse_answer(data)
            if isinstance(parsed, str):
                raise UpstreamError(f"{who} sent an unusable {task.name} answer: {parsed[:200]}")
        except TimeoutError as exc:
            attempts.failed(opened.route, opened.model, opened.sent_at, timed_out(opened.candidate, exc), status=200)
            return None
        except (RelayError, ValueError) as exc:
            attempts.failed(opened.route, opened.model, opened.sent_at,
                            UpstreamError(f"{who} sent an unreadable answer: {str(exc)[:200]}"), status=200)
            return None
        except UpstreamError as exc:
            attempts.failed(opened.route, opened.model, opened.sent_at, exc, status=200)
            return None
        finally:
            opened.response.release()
        return dict(parsed.model_dump(mode="json", exclude_none=True)), raw
