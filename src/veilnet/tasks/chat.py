"""Verifying a miner's chat answer with the validator's own reference model, from the answer alone.

The answer is parsed into a typed document (:mod:`veilnet.tasks.answer`; malformed is a hard failure with a
reason). The prompt is rendered with the model's chat template and tokenised, the answer's text tokenised
with the model's own tokenizer (:mod:`veilnet.models.tokenizer`); the reference then re-scores the answer by
token ids at a random sample of positions, in ascending order so llama.cpp re-uses the cached prefix, and
always at the end:

- *stop*: ``finish_reason: "stop"`` needs an end of generation (or one of the request's stop sequences) to
  be plausible where the answer ends, so empty and truncated answers fail; ``"length"`` needs the recounted
  length to reach ``max_tokens``.
- *text*: each checked position's p-value (:mod:`veilnet.tasks.rescoring`, by bytes, under every sampler an
  honest backend may use), combined with Fisher's method; only text far outside what the model writes fails.
- *usage*: the recount against the claimed counts; inflation beyond what re-tokenisation explains fails.
- *claimed logprobs*, when given, against the reference's (aligned by byte offsets; the sampled positions are
  drawn where the claims line up): two more than ``gross_logprob`` off fail; asked for but missing is a soft
  failure.
- at temperature 0, the argmax at every position (up to ``greedy_positions``): a few misses beyond a near
  tie fail, as no honest greedy backend has them; above 0, the evidence for a greedy cache
  (:mod:`veilnet.tasks.series`).

An answer a grammar shaped is re-scored under that grammar (:mod:`veilnet.tasks.constraint`: the miner
engine's compact grammar, else flexible whitespace): an answer to a JSON response format (``json_object`` /
``json_schema``, no tools), and a forced tool call (a named function or ``required``), whose text is rebuilt
from the calls as the engine's grammar writes them (:func:`~veilnet.models.toolcalls.calls_json`, the
arguments as the answer gives them) and replayed under the call schema's grammar. Either must first be valid
under its schema (:mod:`veilnet.tasks.structured`, hard). At each position the reference's candidates and the
answer's log probability are renormalised over the tokens the grammar allows
(:func:`veilnet.tasks.rescoring.renormalise`). Where it allows at most ``exact_allowed`` tokens, each one's
probability is asked for. Positions the grammar forced byte for byte are not checked, and ending is certain
where the grammar allows nothing else. Calls in another backend's layout are checked only inside their
arguments (the rest of the rebuilt text is not what that backend wrote). Under the compact grammar the text is
the engine's own, so at temperature 0 a single position more than ``extreme_gap`` below the argmax is hard.
Usage is recounted with room for the whitespace a JSON grammar allows. An answer neither grammar writes is not
re-scored (soft ``off_grammar``).

Calls the model wrote freely (``auto``) are rebuilt after the content as the chat template asks for them
(:func:`~veilnet.models.toolcalls.block_calls_text`) and re-scored as free text, at positions inside the
content and the arguments (what the answer holds as written). What that finds is soft, with a cost in
quality: the miner engine writes such calls freely, but another backend may shape them with a grammar of its
own the validator cannot replay, and an honest answer must never fail. Their calls are held to the declared
functions and schemas softly too (:mod:`veilnet.tasks.structured`). A text answer to ``auto`` is free text,
re-scored as such under the prompt that shows the tools. Forced answers cut short and penalised samplers are
checked for their constraint and recounted, not re-scored (soft ``unscored``).

Hard findings are what only a cheat produces; soft ones lower quality. The function is pure apart from the
reference's calls. A ``constraint`` given by the caller replaces the one built from a JSON response format.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from veilnet.errors import InvalidRequest
from veilnet.models.engine import NextTokens, ReferenceModel, TokenLogprob
from veilnet.models.tokenizer import Token, Tokenizer
from veilnet.models.toolcalls import argument_spans, block_calls_text
from veilnet.protocol.openai import ChatCompletionRequest, JsonObjectFormat, JsonSchemaFormat
from veilnet.tasks.answer import ChatAnswer, ClaimedToken, parse_chat_answer
from veilnet.tasks.constraint import TokenConstraint, json_constraint
from veilnet.tasks.rescoring import PositionScore, Renormalised, renormalise, score_position, stop_probability
from veilnet.tasks.sampling import Sampler, honest_samplers
from veilnet.tasks.structured import (
    calls_text,
    forced_calls_text,
    forces_calls,
    is_structured,
    shown_tools,
    structured_findings,
    whitespace_allowance,
)
from veilnet.tasks.verdict import Finding, GreedyEvidence, RecountedUsage, Verdict, failed

__all__ = ["ChatVerifySettings", "TokenConstraint", "fisher_p_value", "verify_chat_answer"]


@dataclass(frozen=True)
class ChatVerifySettings:
    """``positions``: answer positions re-scored besides the end; ``top``: candidates read per position.
    ``stop_floor``: an end the model gives less than this probability fails (an honest answer ends at a
    position where ending is that unlikely at most ``stop_floor`` of the time, per position).
    ``text_alpha``: the Fisher p-value below which the text fails. ``completion_slack``/``prompt_slack``:
    how far an honest backend's token counts may stray from the recount (re-tokenisation merges or splits a
    few tokens; stop sequences cost tokens that never reach the text)."""

    positions: int = 8
    greedy_positions: int = 24  # at temperature 0 every position up to this many: misses are rare and cheap to find
    greedy_misses: int = 3  # positions more than ``near_tie`` below the argmax that fail a greedy answer
    top: int = 100
    stop_floor: float = 1e-6
    text_alpha: float = 1e-9
    implausible: float = 1e-3  # a position with a p-value below this lowers quality
    completion_slack: float = 0.15  # share of the recount
    completion_slack_tokens: int = 4
    prompt_slack_tokens: int = 2
    logprob_tolerance: float = 1.0  # nats between a claimed logprob and the reference's
    gross_logprob: float = 4.0  # nats: no honest backend is this far off (twice: hard)
    near_tie: float = 1.0  # nats: an argmax flip within this is quantisation noise
    gross_gap: float = 4.0  # nats below the argmax: no honest greedy backend goes this far (twice: hard)
    extreme_gap: float = 8.0  # nats below the argmax: once is hard, in text the engine's own grammar wrote
    min_context: int = 2048  # every miner serves at least this context (a shorter 'length' end is not honest)
    exact_allowed: int = 8  # under a grammar, ask each allowed token's probability when it allows this few


def fisher_p_value(statistic: float, positions: int) -> float:
    """P(chi-squared with 2 * ``positions`` degrees of freedom >= ``statistic``): the combined p-value of
    ``positions`` independent p-values whose -2 log sum is ``statistic`` (closed form for even degrees)."""
    if positions <= 0:
        return 1.0
    half = statistic / 2
    term, total = 1.0, 1.0
    for j in range(1, positions):
        term *= half / j
        total += term
    return min(1.0, math.exp(-half + math.log(total)) if total > 0 else math.exp(-half))


#: What re-scoring finds: soft where the text was re-scored without the grammar that may have shaped it.
_RESCORED = frozenset({"implausible_text", "implausible_stop", "not_greedy", "forged_logprobs"})


@dataclass
class _Run:
    """One verification's state: what was parsed and recounted, and what it found."""

    request: ChatCompletionRequest
    answer: ChatAnswer
    settings: ChatVerifySettings
    prompt: list[int]
    text: str  # the text the model generated: the content, or the calls as the engine's grammar writes them
    tokens: list[Token]
    samplers: list[Sampler]
    findings: list[Finding]
    whitespace: int = 0  # completion tokens a JSON grammar's whitespace may add beyond the recount
    compact: bool = False  # written under the miner engine's compact grammar: its tokens are the text's own
    lenient: bool = False  # re-scored without knowing the grammar that may have shaped it: findings are soft

    @property
    def ended(self) -> bool:
        """The answer ended on the model's own end of generation (a stop, or after its tool calls)."""
        return self.answer.finish_reason in ("stop", "tool_calls")

    def add(self, code: str, severity: str, detail: str) -> None:
        hard = severity == "hard" and not (self.lenient and code in _RESCORED)
        self.findings.append(Finding(code, "hard" if hard else "soft", detail))

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    @property
    def stops(self) -> list[bytes]:
        stop = self.request.stop
        return [s.encode() for s in ([stop] if isinstance(stop, str) else stop or []) if s]

    @property
    def max_tokens(self) -> int | None:
        return self.request.max_completion_tokens or self.request.max_tokens


async def verify_chat_answer(
    reference: ReferenceModel,
    request: ChatCompletionRequest | Mapping[str, Any],
    response: Any,
    *,
    rng: random.Random | None = None,
    settings: ChatVerifySettings | None = None,
    constraint: TokenConstraint | None = None,
) -> Verdict:
    """Check ``response`` (a miner's chat completion, non-streamed or a reassembled stream) for ``request``."""
    rng = rng or random.Random()
    settings = settings or ChatVerifySettings()
    if not isinstance(request, ChatCompletionRequest):
        try:
            request = ChatCompletionRequest.model_validate(dict(request))
        except ValidationError as exc:
            raise InvalidRequest(f"not a chat request: {exc.errors()[0]['msg']}") from exc
    answer = parse_chat_answer(response)
    if isinstance(answer, str):
        return failed(answer, code="malformed")
    if answer.model != request.model:
        return failed(f"answered as model {answer.model!r}, asked {request.model!r}", code="wrong_model")
    tokenizer = await reference.tokenizer(request.model)
    messages = [m.model_dump(exclude_none=True) for m in request.messages]
    if answer.tool_calls and not request.tools:
        return failed("the answer calls tools the request did not offer", code="undeclared_tool")
    shape = None if _penalised(request) else (
        _json_shape(request, answer) or _call_shape(request, answer) or _block_shape(request, answer))
    if shape is not None:
        return await _verify_shaped(reference, tokenizer, _Asked(request, answer, settings, messages), shape, rng,
                                    constraint)
    tools = shown_tools(request)
    if is_structured(request) and not _free_text(request, answer):
        return await _verify_structured(tokenizer, request, answer, settings, messages, tools)
    run = _Run(request, answer, settings, await tokenizer.chat_prompt(messages, tools=tools), answer.content,
               await tokenizer.text_tokens(answer.content),
               honest_samplers(request.temperature, request.top_p, None), [])
    usage = _check_usage(run)
    if _penalised(request):  # the reference cannot reproduce a penalised sampler: recount only
        run.add("unscored", "soft", "penalties or logit_bias change the sampler; only the usage is checked")
        return _conclude(run, [], usage, None, 0.0)
    free = None if constraint is None else await asyncio.to_thread(
        constraint.free_positions, run.ids, [t.bytes for t in run.tokens])
    scores, stop = await _rescore(reference, tokenizer, run, rng, constraint, free)
    return _judge(run, scores, stop, usage)


def _judge(run: _Run, scores: list[PositionScore], stop: _Stop | None, usage: RecountedUsage) -> Verdict:
    """The re-scored positions and the end judged: text, stop, argmax (or greedy evidence), claims."""
    fisher = _check_text(run, scores)
    _check_stop(run, stop)
    greedy = _check_argmax(run, scores)
    _check_claimed(run, scores)
    return _conclude(run, scores, usage, greedy, fisher)


def _json_format(request: ChatCompletionRequest) -> dict[str, Any] | None:
    """The request's JSON response format as sent (``None`` for text, or beside tools: llama.cpp applies no
    grammar of its own to a request with tools)."""
    fmt = request.response_format
    if request.tools or not isinstance(fmt, JsonObjectFormat | JsonSchemaFormat):
        return None
    return fmt.model_dump(by_alias=True, exclude_none=True)


def _free_text(request: ChatCompletionRequest, answer: ChatAnswer) -> bool:
    """A text answer to a request whose tools left the model free to write (``auto``): no grammar shaped it,
    so it is re-scored like any text, under the prompt that shows the tools."""
    shaped = isinstance(request.response_format, JsonObjectFormat | JsonSchemaFormat)
    return bool(request.tools) and not answer.tool_calls and not forces_calls(request) and not shaped


@dataclass(frozen=True)
class _Asked:
    """What one verification was asked: the request, the parsed answer, the settings, the prompt's messages."""

    request: ChatCompletionRequest
    answer: ChatAnswer
    settings: ChatVerifySettings
    messages: list[dict[str, Any]]


@dataclass(frozen=True)
class _Shape:
    """A constrained answer as it was generated: its ``text``, the response format whose grammar shaped it,
    the tools its prompt showed, and the byte spans of ``text`` the answer holds as the model wrote them
    (``None``: all of it; for calls, their arguments, the rest being rebuilt in the engine's layout)."""

    text: str
    format: dict[str, Any] | None  # None: no grammar (calls written freely)
    tools: list[dict[str, Any]] | None = None
    written: tuple[tuple[int, int], ...] | None = None


def _json_shape(request: ChatCompletionRequest, answer: ChatAnswer) -> _Shape | None:
    fmt = _json_format(request)
    return None if fmt is None or answer.tool_calls else _Shape(answer.content, fmt)


def _call_shape(request: ChatCompletionRequest, answer: ChatAnswer) -> _Shape | None:
    """A forced call's answer: the calls rebuilt as the engine's compact grammar writes them (their
    arguments as the answer gives them), to be re-scored under the call's schema."""
    forced = forced_calls_text(request, [(c.function.name, c.function.arguments) for c in answer.tool_calls or []])
    if forced is None:
        return None
    text, fmt = forced
    spans = argument_spans(text) or []  # none when an argument is not one JSON value: not written by a grammar
    return _Shape(text, fmt, shown_tools(request), _byte_spans(text, spans))


def _block_shape(request: ChatCompletionRequest, answer: ChatAnswer) -> _Shape | None:
    """Calls the model wrote freely (``auto``): the content and the calls as the chat template asks for them
    (:func:`~veilnet.models.toolcalls.block_calls_text`), re-scored as free text where the answer holds what
    the model wrote (the content, each call's arguments)."""
    tools = shown_tools(request)
    if not answer.tool_calls or tools is None or forces_calls(request):
        return None
    text, spans = block_calls_text(answer.content, [(c.function.name, c.function.arguments) for c in answer.tool_calls])
    return _Shape(text, None, tools, _byte_spans(text, spans))


def _byte_spans(text: str, spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    return tuple((len(text[:a].encode()), len(text[:b].encode())) for a, b in spans)


async def _verify_shaped(reference: ReferenceModel, tokenizer: Tokenizer, asked: _Asked, shape: _Shape,
                         rng: random.Random, constraint: TokenConstraint | None) -> Verdict:
    """An answer whose text is rebuilt or shaped: a JSON response format's or a forced tool call's (under a
    grammar), or freely written calls (no grammar). Valid under its schema (hard), its usage recounted with
    room for JSON whitespace, then re-scored like any answer but under the grammar it was generated with
    (:mod:`veilnet.tasks.constraint`), at the positions the grammar left to the model and, where the text is
    rebuilt from another layout than the miner engine's, only inside what the answer holds as written."""
    request, answer = asked.request, asked.answer
    samplers = honest_samplers(request.temperature, request.top_p, None)
    if shape.format is not None:
        widest = max(s.temperature for s in samplers)  # llama.cpp truncates before its grammar resamples: see
        samplers.append(Sampler(widest))  # rescoring.renormalise; untruncated, that is the renormalised model
    run = _Run(request, answer, asked.settings, await tokenizer.chat_prompt(asked.messages, tools=shape.tools),
               shape.text, await tokenizer.text_tokens(shape.text), samplers,
               list(structured_findings(request, answer)), whitespace=whitespace_allowance(shape.text))
    usage = _check_usage(run)
    if any(f.severity == "hard" for f in run.findings):
        return _conclude(run, [], usage, None, 0.0)
    if shape.format is None:  # calls written freely: some backends shape them with a grammar of their own
        run.lenient = True
        free = _within(run.tokens, list(range(len(run.tokens))), shape.written or ())
        scores, stop = await _rescore(reference, tokenizer, run, rng, None, free)
        return _judge(run, scores, stop, usage)
    if constraint is None:
        vocab = await reference.vocabulary(request.model)
        constraint = await asyncio.to_thread(json_constraint, vocab, tokenizer, shape.format, run.ids)
    if constraint is None:
        run.add("off_grammar", "soft", "no JSON grammar of the reference writes this answer's tokens (keys out of "
                                       "the schema's order, or a schema llguidance cannot compile): not re-scored")
        return _conclude(run, [], usage, None, 0.0)
    free = await asyncio.to_thread(constraint.free_positions, run.ids, [t.bytes for t in run.tokens])
    run.compact = constraint.name == "compact"
    if shape.written is not None and not run.compact:
        free = _within(run.tokens, free, shape.written)
    scores, stop = await _rescore(reference, tokenizer, run, rng, constraint, free)
    return _judge(run, scores, stop, usage)


def _within(tokens: list[Token], positions: list[int], spans: tuple[tuple[int, int], ...]) -> list[int]:
    """The ``positions`` whose token lies inside one of the byte ``spans`` of the tokens' text."""
    starts = [0]
    for token in tokens:
        starts.append(starts[-1] + len(token.bytes))
    return [i for i in positions if any(a <= starts[i] and starts[i + 1] <= b for a, b in spans)]


async def _verify_structured(tokenizer: Tokenizer, request: ChatCompletionRequest, answer: ChatAnswer,
                             settings: ChatVerifySettings, messages: list[dict[str, Any]],
                             tools: list[dict[str, Any]] | None) -> Verdict:
    """An answer to a request with tools or a format that is not re-scored (a forced answer cut short or
    calls that do not fit its shape, a penalised sampler): its constraint kept, its usage recounted."""
    text = calls_text(answer.tool_calls) if answer.tool_calls else answer.content
    run = _Run(request, answer, settings, await tokenizer.chat_prompt(messages, tools=tools), text,
               await tokenizer.text_tokens(text), [], list(structured_findings(request, answer)),
               whitespace=whitespace_allowance(text) if answer.tool_calls or request.response_format else 0)
    usage = _check_usage(run)
    run.add("unscored", "soft", "structured output: checked against its constraint and recounted, not re-scored")
    return _conclude(run, [], usage, None, 0.0)


def _penalised(request: ChatCompletionRequest) -> bool:
    return bool(request.presence_penalty or request.frequency_penalty or request.logit_bias)


def _check_usage(run: _Run) -> RecountedUsage:
    """Recount prompt and completion tokens and judge the claims and the finish reason."""
    s, a = run.settings, run.answer
    ended_on_token = run.ended and not run.stops
    completion = len(run.tokens) + (1 if run.ended else 0)
    usage = RecountedUsage(len(run.prompt), completion, a.prompt_tokens, a.completion_tokens)
    if a.prompt_tokens > usage.prompt_tokens + s.prompt_slack_tokens:
        run.add("usage_inflated", "hard", f"usage claims {a.prompt_tokens} prompt tokens; the model counts "
                                          f"{usage.prompt_tokens}")
    elif a.prompt_tokens != usage.prompt_tokens:
        run.add("usage_miscount", "soft", f"usage claims {a.prompt_tokens} prompt tokens; the model counts "
                                          f"{usage.prompt_tokens}")
    slack = max(s.completion_slack_tokens, math.ceil(s.completion_slack * completion)) + run.whitespace
    stop_cost = 0 if ended_on_token else sum(len(x) for x in run.stops)  # a stop sequence's tokens, at most
    if a.completion_tokens > completion + slack + stop_cost:
        run.add("usage_inflated", "hard", f"usage claims {a.completion_tokens} completion tokens; the model "
                                          f"counts {completion} in the answer")
    elif a.completion_tokens != completion:
        run.add("usage_miscount", "soft", f"usage claims {a.completion_tokens} completion tokens; the model "
                                          f"counts {completion} in the answer")
    limit = run.max_tokens
    if limit is not None and len(run.tokens) > limit + slack:
        run.add("over_length", "hard", f"{len(run.tokens)} tokens of text for max_tokens {limit}")
    if a.finish_reason == "length" and limit is not None:
        room = s.min_context - len(run.prompt)  # a miner's context may end the answer first
        if len(run.tokens) + slack < min(limit, room):
            run.add("premature_length", "hard", f"finish_reason 'length' after {len(run.tokens)} tokens of text "
                                                f"for max_tokens {limit}")
        elif len(run.tokens) < limit - 1:
            run.add("length_miscount", "soft", f"finish_reason 'length' after {len(run.tokens)} recounted tokens "
                                               f"for max_tokens {limit}")
    return usage


def _positions(run: _Run, rng: random.Random, free: list[int] | None = None) -> list[int]:
    """The first position and a random sample of the rest, ascending (the reference's cache re-uses each
    prefix); at temperature 0, every position up to ``greedy_positions``. When the answer claims logprobs
    the sample is drawn from the positions where its claims line up (all of an honest answer's, bar merged
    characters), so every checked position also checks a claim: another model's claims cannot hide between
    the samples. ``free``: the only positions worth checking (those a grammar left to the model)."""
    eligible = list(range(len(run.tokens))) if free is None else sorted(free)
    if not eligible:
        return []
    first, chosen = eligible[0], set(eligible[1:])
    wanted = run.settings.greedy_positions if run.request.temperature == 0.0 else run.settings.positions
    lined_up = sorted(set(_aligned_claims(run) or ()) & chosen)
    rest = rng.sample(lined_up, min(wanted - 1, len(lined_up)))
    others = [i for i in eligible[1:] if i not in set(rest)]  # too few claims line up: fill from the rest
    rest += rng.sample(others, min(wanted - 1 - len(rest), len(others)))
    return sorted({first, *rest})


@dataclass(frozen=True)
class _Stop:
    probability: float  # the most an honest sampler gives to ending here
    gap: float  # nats between the argmax and the most likely way to end here (0: ending is the argmax)


async def _rescore(
    reference: ReferenceModel, tokenizer: Tokenizer, run: _Run, rng: random.Random,
    constraint: TokenConstraint | None, free: list[int] | None = None,
) -> tuple[list[PositionScore], _Stop | None]:
    """The checked positions' scores and, for a stopped answer, the probability of ending where it ends;
    under a ``constraint``, the reference's distribution renormalised over the tokens it allows."""
    model, top = run.request.model, run.settings.top
    raw = run.text.encode()
    offsets = [0]
    for token in run.tokens:
        offsets.append(offsets[-1] + len(token.bytes))
    ids, scores = run.ids, []
    for index in _positions(run, rng, free):
        token = run.tokens[index]
        # llama.cpp reports nothing for a drawn token that is not whole UTF-8: score the end token instead
        whole = _whole(token.bytes)
        found = await reference.next_tokens(model, run.prompt + ids[:index], top,
                                            score=token.id if whole else tokenizer.eos)
        logprob = _scored(found) if whole else _bound(found, token.id)
        seen = await _constrained(reference, tokenizer, run, found, constraint, ids[:index], token.id, logprob)
        if seen is not None:
            scores.append(score_position(index, seen.top, token, seen.logprob, raw[offsets[index]:], run.samplers,
                                         seen.vocab))
    if not run.ended:
        return scores, None
    return scores, await _rescore_stop(reference, tokenizer, run, constraint)


async def _rescore_stop(reference: ReferenceModel, tokenizer: Tokenizer, run: _Run,
                        constraint: TokenConstraint | None) -> _Stop:
    """How likely ending is right after the answer (certain under a grammar that allows nothing else)."""
    ids = run.ids
    if constraint is not None and (await asyncio.to_thread(constraint.allowed, ids)).only(tokenizer.end_of_generation):
        return _Stop(1.0, 0.0)
    found = await reference.next_tokens(run.request.model, run.prompt + ids, run.settings.top, score=tokenizer.eos)
    seen = await _constrained(reference, tokenizer, run, found, constraint, ids, tokenizer.eos, _scored(found))
    if seen is None:  # the grammar allows many tokens, none of them among the top-k: nothing to go on
        return _Stop(1.0, 0.0)
    candidates, eos = seen.top, seen.logprob
    stop = stop_probability(candidates, eos, tokenizer.eos, tokenizer.end_of_generation, run.stops,
                            run.samplers, seen.vocab)
    ends = [eos, *(t.logprob for t in candidates if t.id in tokenizer.end_of_generation
                   or any(s and (t.bytes.startswith(s) or (t.bytes and s.startswith(t.bytes))) for s in run.stops))]
    gap = max(0.0, candidates[0].logprob - max(ends)) if candidates else 0.0
    return _Stop(stop, gap)


def _check_stop(run: _Run, stop: _Stop | None) -> None:
    """A stopped answer must end where ending is plausible: under the request's sampling, and at
    temperature 0 where ending is (nearly) the argmax."""
    if stop is None:
        return
    where = f"the answer ends after {len(run.tokens)} tokens"
    if stop.probability < run.settings.stop_floor:
        run.add("implausible_stop", "hard", f"{where} where the model ends with probability {stop.probability:.1e}")
    elif run.request.temperature == 0.0 and stop.gap > run.settings.gross_gap:
        run.add("implausible_stop", "hard", f"temperature 0 but {where}, {stop.gap:.1f} nats below the argmax")
    elif run.request.temperature == 0.0 and stop.gap > run.settings.near_tie:
        run.add("not_argmax", "soft", f"temperature 0 but {where}, {stop.gap:.1f} nats below the argmax")


def _whole(piece: bytes) -> bool:
    try:
        piece.decode()
    except UnicodeDecodeError:
        return False
    return True


def _bound(found: NextTokens, token: int) -> float:
    """The token's log probability from the top-k, or the k-th's (an upper bound) when it is not there."""
    for candidate in found.top:
        if candidate.id == token:
            return candidate.logprob
    return found.top[-1].logprob if found.top else 0.0


def _scored(found: NextTokens) -> float:
    if found.scored is None:
        raise InvalidRequest("the reference scored no token")
    return found.scored


async def _constrained(reference: ReferenceModel, tokenizer: Tokenizer, run: _Run, found: NextTokens,
                       constraint: TokenConstraint | None, prefix: list[int], token: int,
                       logprob: float) -> Renormalised | None:
    """The reference's candidates and ``token``'s log probability, renormalised over what ``constraint``
    allows after ``prefix`` (as they are without one); ``None`` when the top-k holds no allowed token and
    the grammar allows too many to ask about each. When it allows at most ``exact_allowed`` tokens (``,`` or
    ``}`` after a value) each one's log probability is asked for: the distribution is then exact."""
    if constraint is None:
        return Renormalised(found.top, logprob, tokenizer.vocab_size)
    allowed = await asyncio.to_thread(constraint.allowed, prefix)
    if 0 < allowed.count <= run.settings.exact_allowed:
        known = {t.id: t for t in found.top if t.id in allowed}
        vocab = await reference.vocabulary(run.request.model)
        for missing in (i for i in allowed.ids() if i not in known):
            asked = await reference.next_tokens(run.request.model, run.prompt + prefix, 1,
                                                score=missing if _whole(vocab.tokens[missing]) else tokenizer.eos)
            piece = b"" if vocab.tokens[missing].startswith(b"\xff") else vocab.tokens[missing]
            # llama.cpp reports nothing for a drawn token that is not whole UTF-8: the k-th's bounds it
            known[missing] = TokenLogprob(missing, piece, _scored(asked) if _whole(piece) else _bound(found, missing))
        exact = sorted(known.values(), key=lambda t: t.logprob, reverse=True)
        scored = known[token].logprob if token in known else -math.inf
        return renormalise(exact, allowed, allowed.count, token, scored)
    return renormalise(found.top, allowed, allowed.count, token, logprob)


def _check_text(run: _Run, scores: list[PositionScore]) -> float:
    """Fisher's statistic over the checked positions; text far outside the model's is hard."""
    if not scores:
        return 0.0
    statistic = -2 * math.fsum(math.log(max(s.p_value, 1e-300)) for s in scores)
    combined = fisher_p_value(statistic, len(scores))
    if combined < run.settings.text_alpha:
        worst = sorted(scores, key=lambda s: s.p_value)[:3]
        run.add("implausible_text", "hard", f"the model would not write this text (combined p {combined:.1e}; "
                f"positions {', '.join(f'{s.index} p={s.p_value:.1e}' for s in worst)})")
    return statistic


def _check_argmax(run: _Run, scores: list[PositionScore]) -> GreedyEvidence | None:
    """Greedy requests must take the argmax (near ties are soft); sampled ones yield greedy-cache evidence."""
    if run.request.temperature == 0.0:
        for s in scores:
            if not s.argmax:
                near = s.argmax_gap <= run.settings.near_tie
                run.add("argmax_flip" if near else "not_argmax", "soft",
                        f"temperature 0 but position {s.index} is {s.argmax_gap:.2f} nats below the argmax")
        gross = [s for s in scores if s.argmax_gap > run.settings.gross_gap]
        misses = [s for s in scores if s.argmax_gap > run.settings.near_tie]
        worst = max((s.argmax_gap for s in scores), default=0.0)
        if run.compact and worst > run.settings.extreme_gap:
            run.add("not_greedy", "hard", f"temperature 0 but a position of the engine's own grammar is {worst:.1f} "
                                          f"nats below the argmax (more than {run.settings.extreme_gap})")
        elif len(gross) >= 2 or len(misses) >= run.settings.greedy_misses:
            run.add("not_greedy", "hard", f"temperature 0 but {len(misses)} of {len(scores)} positions are more "
                                          f"than {run.settings.near_tie} nats below the argmax ({len(gross)} more "
                                          f"than {run.settings.gross_gap})")
        return None
    return GreedyEvidence(sum(1 for s in scores if s.argmax), tuple(s.argmax_bound for s in scores))


def _aligned_claims(run: _Run) -> dict[int, ClaimedToken] | None:
    """The claimed logprobs entries that line up with the reference's tokens, by token position: the entry
    starts where the token starts and spells the same bytes (and id, when it names one). ``None`` when the
    answer claims none or its entries do not spell its text. An honest backend's entries line up everywhere
    but at merged multi-byte characters; another model's tokenizer lines up at few positions."""
    claimed = run.answer.claimed
    if claimed is None or not b"".join(c.raw for c in claimed).startswith(run.text.encode()):
        return None
    starts: dict[int, int] = {}
    offset = 0
    for index, entry in enumerate(claimed):
        starts.setdefault(offset, index)
        offset += len(entry.raw)
    aligned: dict[int, ClaimedToken] = {}
    offset = 0
    for position, token in enumerate(run.tokens):
        entry_index = starts.get(offset)
        offset += len(token.bytes)
        if entry_index is None:
            continue
        entry = claimed[entry_index]
        if entry.raw == token.bytes and (entry.id is None or entry.id == token.id):
            aligned[position] = entry
    return aligned


def _check_claimed(run: _Run, scores: list[PositionScore]) -> None:
    """Claimed logprobs against the reference's at the checked positions where they line up
    (:func:`_aligned_claims`; a merged multi-byte entry never lines up with a wrong token)."""
    if run.answer.claimed is None:
        if run.request.logprobs:
            run.add("logprobs_missing", "soft", "logprobs were asked for and not given")
        return
    aligned = _aligned_claims(run)
    if aligned is None:
        run.add("logprobs_mismatch", "soft", "the logprobs entries do not spell the answer's text")
        return
    compared, gross = 0, 0
    for s in scores:
        entry = aligned.get(s.index)
        if entry is None:
            continue
        compared += 1
        tempered = [s.logprob / t.temperature for t in run.samplers]  # a backend may report tempered logprobs
        off = min(abs(entry.logprob - v) for v in [s.logprob, *tempered])
        if off > run.settings.logprob_tolerance:
            gross += off > run.settings.gross_logprob
            run.add("logprob_mismatch", "soft", f"position {s.index}: claimed logprob {entry.logprob:.2f}, "
                                                f"the model's {s.logprob:.2f}")
    if gross >= 2:
        run.add("forged_logprobs", "hard", f"{gross} of {compared} claimed logprobs are more than "
                                           f"{run.settings.gross_logprob} nats from the model's")


#: What each soft finding costs in quality. A recount off by a few tokens costs nothing: re-tokenisation
#: explains it (it stays in the findings for the record).
SOFT_PENALTY = {"off_grammar": 0.5, "logprobs_missing": 0.2, "logprobs_mismatch": 0.2, "logprob_mismatch": 0.05,
                "argmax_flip": 0.02, "not_argmax": 0.15,
                # freely written calls: off the declared functions or their schemas (hard for forced calls), and
                # what re-scoring finds in them (hard elsewhere)
                "undeclared_tool": 0.5, "invalid_arguments": 0.5, "schema_violation": 0.5,
                "implausible_text": 0.5, "implausible_stop": 0.5, "not_greedy": 0.3, "forged_logprobs": 0.3}


def _conclude(run: _Run, scores: list[PositionScore], usage: RecountedUsage, greedy: GreedyEvidence | None,
              fisher: float) -> Verdict:
    checked = len(scores)
    plausible = sum(1 for s in scores if s.p_value >= run.settings.implausible)
    quality = plausible / checked if checked else 1.0
    quality -= math.fsum(SOFT_PENALTY.get(f.code, 0.0) for f in run.findings if f.severity == "soft")
    hard = [f for f in run.findings if f.severity == "hard"]
    shown = hard or run.findings
    return Verdict(
        ok=not hard,
        quality=0.0 if hard else max(0.0, min(1.0, quality)),
        reason="; ".join(f"{f.code}: {f.detail}" for f in shown[:3]) or None,
        checked=checked + (1 if run.ended else 0),
        findings=tuple(run.findings),
        usage=usage,
        greedy=greedy,
        fisher=fisher,
        text_positions=checked,
    )
