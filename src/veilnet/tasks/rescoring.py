"""How plausible an answer is at one position under the reference, by bytes (pure).

The answer is re-tokenised with the model's own tokenizer and fed back as token ids; at a checked position
the reference gives its top-k next tokens and the exact log probability of the answer's token there. The
miner may have generated another split of the same bytes (two ``"\\n"`` tokens where the tokenizer makes one
``"\\n\\n"``; an emoji as byte tokens that logprobs report as one entry), so a candidate counts as the
answer's token when its bytes begin what is left of the answer: the answer's *consistent mass* is the
probability of all such candidates. Comparing bytes, not strings of re-fed text, is what keeps honest answers
from failing.

Everything is computed under each sampler an honest miner may have used (:mod:`veilnet.tasks.sampling`)
and the most favourable one is kept.

Under a grammar (a JSON response format) the miner's backend masks the tokens the grammar forbids, so its
distribution is the model's renormalised over the allowed tokens; :func:`renormalise` turns the reference's
top-k into that distribution's (see there for why the bound on the unseen allowed mass keeps honest answers
passing).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Container, Sequence
from dataclasses import dataclass

from veilnet.models.engine import TokenLogprob
from veilnet.models.tokenizer import Token
from veilnet.tasks.sampling import Distribution, Sampler

__all__ = ["PositionScore", "Renormalised", "renormalise", "score_position", "stop_probability"]


@dataclass(frozen=True)
class PositionScore:
    index: int
    p_value: float  # chance an honest sampler draws something at most this likely (most favourable sampler)
    argmax: bool  # the reference's most likely token begins what is left of the answer
    argmax_gap: float  # plain log probability of the argmax minus that of the answer's consistent mass (>= 0)
    argmax_bound: float  # the most any honest sampler gives to drawing a token that counts as the argmax
    logprob: float  # exact plain log probability of the answer's own token here


@dataclass(frozen=True)
class Renormalised:
    """The reference's next tokens under a grammar: the allowed top-k candidates and the scored token's log
    probability, both renormalised over the allowed tokens, and how many tokens are allowed (the vocabulary
    the sampler draws from)."""

    top: list[TokenLogprob]
    logprob: float
    vocab: int


def renormalise(top: Sequence[TokenLogprob], allowed: Container[int], count: int, token: int,
                token_logprob: float) -> Renormalised | None:
    """The distribution over the ``count`` tokens in ``allowed`` from the plain top-k ``top`` and the exact
    plain log probability of ``token`` (minus infinity when the grammar forbids it); ``None`` when no
    candidate of the top-k is allowed (the position says nothing the bounds can use).

    The normaliser is the allowed top-k mass plus an upper bound on the allowed mass beyond the top-k: at
    most what the top-k leaves, and at most the k-th probability for each allowed token not among them. An
    over-estimated normaliser scales every top-k candidate down alike and over-states the unseen tail, and
    a p-value (the mass of tokens at most as likely as the answer's) only grows with the tail: an honest
    answer is never judged less likely than it is. (llama.cpp samples the free distribution first and
    resamples under the grammar only when the draw is forbidden: without truncation that is exactly this
    renormalised distribution.)"""
    kept = [t for t in top if t.id in allowed]
    if not kept:
        return None
    unseen = max(0, count - len(kept))
    rest = max(0.0, 1.0 - math.fsum(math.exp(t.logprob) for t in top))
    tail = min(rest, unseen * math.exp(top[-1].logprob))
    in_top = any(t.id == token for t in top)
    if token in allowed and not in_top:
        tail = max(tail, math.exp(token_logprob))  # the scored token is part of the unseen allowed mass
    log_z = math.log(math.fsum(math.exp(t.logprob) for t in kept) + tail)
    logprob = token_logprob - log_z if token in allowed else -math.inf
    return Renormalised([TokenLogprob(t.id, t.bytes, t.logprob - log_z) for t in kept], logprob, count)


def _begins(candidate: bytes, remainder: bytes) -> bool:
    return bool(candidate) and remainder.startswith(candidate)


def _related(candidate: bytes, argmax: bytes) -> bool:
    """Drawing ``candidate`` may leave text that starts like ``argmax`` (or the reverse)."""
    return bool(candidate) and (candidate.startswith(argmax) or argmax.startswith(candidate))


def score_position(
    index: int, top: Sequence[TokenLogprob], token: Token, token_logprob: float, remainder: bytes,
    samplers: Sequence[Sampler], vocab: int,
) -> PositionScore:
    """Score the answer at ``index``: ``token`` is its own token there (exact plain log probability
    ``token_logprob``), ``remainder`` the answer's bytes from here on, ``top`` the reference's top-k."""
    plain = [t.logprob for t in top]
    in_top = any(t.id == token.id for t in top)
    consistent = [t for t in top if t.id == token.id or _begins(t.bytes, remainder)]
    argmax_hit = bool(top) and (top[0].id == token.id or _begins(top[0].bytes, remainder))
    related = [t for t in top if t.id == top[0].id or _related(t.bytes, top[0].bytes)] if top else []
    p_value, bound = 0.0, 0.0
    for sampler in samplers:
        dist = Distribution(plain, vocab, sampler)
        mass = math.fsum(dist.q(t.logprob, in_top=True) for t in consistent)
        if not in_top:
            mass += dist.q(token_logprob, in_top=False)
        p_value = max(p_value, dist.mass_at_most(mass, plain))
        bound = max(bound, min(1.0, math.fsum(dist.q(t.logprob, in_top=True) for t in related) + dist.tail))
    plain_mass = math.log(math.fsum(math.exp(t.logprob) for t in consistent) + (0.0 if in_top else math.exp(token_logprob)))
    gap = 0.0 if argmax_hit or not top else max(0.0, top[0].logprob - plain_mass)
    return PositionScore(index, p_value, argmax_hit, gap, bound, token_logprob)


def stop_probability(
    top: Sequence[TokenLogprob], eos_logprob: float, eos: int, end_of_generation: Collection[int],
    stops: Sequence[bytes], samplers: Sequence[Sampler], vocab: int,
) -> float:
    """The most any honest sampler gives to the answer ending here: an end-of-generation token (``eos`` with
    exact plain log probability ``eos_logprob``, others when in the top-k) or a token that begins (or is
    begun by) one of the request's ``stops``."""
    plain = [t.logprob for t in top]
    ends = [t for t in top if t.id in end_of_generation or any(_related(t.bytes, s) for s in stops if s)]
    eos_in_top = any(t.id == eos for t in top)
    best = 0.0
    for sampler in samplers:
        dist = Distribution(plain, vocab, sampler)
        mass = math.fsum(dist.q(t.logprob, in_top=True) for t in ends)
        if not eos_in_top:
            mass += dist.q(eos_logprob, in_top=False)
        best = max(best, mass)
    return min(1.0, best)
