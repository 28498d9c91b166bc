"""What an honest miner's sampler could have done at one position, from the reference's top-k (pure).

The reference gives the ``k`` most likely next tokens with their plain-softmax log probabilities and, for a
token it is asked about, that token's exact log probability. The miner sampled under the request's
temperature, ``top_p`` and ``top_k`` with whatever its backend does for parameters the request left unset:
llama.cpp truncates with ``top_k`` 40, ``top_p`` 0.95 and ``min_p`` 0.05 before the temperature and samples
at 0.8 when none is asked; vLLM-style backends sample at 1.0 untruncated and apply the temperature first.
Each is a :class:`Sampler`; :func:`honest_samplers` lists those a request allows. The tail beyond the top-k
is unknown, so every probability here is a bound in the direction that favours the miner: the tail's mass is
bounded from above (Hölder for temperatures above 1, the k-th probability for those below).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Distribution", "Sampler", "honest_samplers"]

LLAMACPP_DEFAULTS = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05}
OPENAI_DEFAULT_TEMPERATURE = 1.0


@dataclass(frozen=True)
class Sampler:
    """One way to sample: ``temperature`` (> 0), truncations (0 / 1.0 / 0.0 mean none), and whether the
    truncations see the tempered distribution (vLLM) or the plain one (llama.cpp)."""

    temperature: float
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    truncate_after_temperature: bool = False

    @property
    def truncates(self) -> bool:
        return self.top_k > 0 or self.top_p < 1.0 or self.min_p > 0.0


def honest_samplers(temperature: float | None, top_p: float | None, top_k: int | None,
                    *, top_p_margin: float = 0.05) -> list[Sampler]:
    """The samplers an honest backend may use for a request with these fields (None: unset). Temperature 0
    (greedy) is scored at temperature 1: greedy answers are checked against the argmax on their own. A
    ``top_p`` the request sets binds every sampler, widened by ``top_p_margin`` (another quantisation moves
    the nucleus' edge a little)."""
    llama_t = LLAMACPP_DEFAULTS["temperature"] if temperature is None else temperature
    other_t = OPENAI_DEFAULT_TEMPERATURE if temperature is None else temperature
    llama_t, other_t = (t if t > 0 else 1.0 for t in (llama_t, other_t))
    nucleus = 1.0 if top_p is None else min(1.0, top_p + top_p_margin)
    llama = Sampler(
        llama_t,
        top_k=int(LLAMACPP_DEFAULTS["top_k"]) if top_k is None else top_k,
        top_p=LLAMACPP_DEFAULTS["top_p"] if top_p is None else nucleus,
        min_p=LLAMACPP_DEFAULTS["min_p"],
    )
    other = Sampler(other_t, top_k=top_k or 0, top_p=nucleus, truncate_after_temperature=True)
    # the widest an honest sampler is: the highest temperature, no truncation the request did not ask for
    widest_t = max(llama_t, other_t)
    widest = [Sampler(widest_t, top_k=top_k or 0, top_p=nucleus),
              Sampler(widest_t, top_k=top_k or 0, top_p=nucleus, truncate_after_temperature=True)]
    return [*widest, llama, other]


def _logsumexp(values: Sequence[float]) -> float:
    if not values:
        return -math.inf
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(math.fsum(math.exp(v - top) for v in values))


class Distribution:
    """A sampler's distribution over the reference's top-k at one position, with a bound on the rest.

    ``logprobs`` are the top-k plain log probabilities (most likely first), ``vocab`` the vocabulary size.
    ``q(lp)`` is the probability (a lower bound when the tail matters) the sampler gives a token of plain log
    probability ``lp``; ``tail`` bounds the probability of drawing any token outside the top-k from above.
    """

    def __init__(self, logprobs: Sequence[float], vocab: int, sampler: Sampler) -> None:
        self.sampler = sampler
        plain = sorted(logprobs, reverse=True)
        self._k = len(plain)
        self._others = max(0, vocab - len(plain))
        t = sampler.temperature
        rest = max(0.0, 1.0 - math.fsum(math.exp(lp) for lp in plain))
        kept = self._kept(plain, rest)
        self._floor = plain[kept - 1] if kept else -math.inf  # smallest plain logprob kept
        truncated = kept < self._k or (sampler.truncates and self._k < vocab and self._tail_cut(plain, rest))
        tempered = [lp / t for lp in plain[:kept]]
        log_tail = -math.inf if truncated else self._log_tail(plain, rest, vocab, t)
        self._log_z = _logsumexp([*tempered, log_tail])  # an upper bound on the normaliser
        self.tail = 0.0 if log_tail == -math.inf else math.exp(log_tail - self._log_z)
        self._log_tail_each = (plain[-1] / t if plain else 0.0) - self._log_z  # any one tail token, at most

    def _kept(self, plain: list[float], rest: float) -> int:
        """How many of the top-k survive the sampler's truncations."""
        s = self.sampler
        kept = len(plain) if s.top_k <= 0 else min(len(plain), s.top_k)
        if not plain:
            return 0
        base = [lp / s.temperature for lp in plain[:kept]] if s.truncate_after_temperature else plain[:kept]
        log_total = _logsumexp(base) if s.truncate_after_temperature else 0.0  # tempered mass of the kept ones
        if s.min_p > 0.0:
            floor = base[0] + math.log(s.min_p)
            kept = sum(1 for lp in base if lp >= floor)
        if s.top_p < 1.0:
            cumulative = 0.0
            for index, lp in enumerate(base[:kept]):
                cumulative += math.exp(lp - log_total)
                if cumulative >= s.top_p:
                    return index + 1
        return kept

    def _tail_cut(self, plain: list[float], rest: float) -> bool:
        """Whether the truncation surely cuts everything beyond the top-k (top_k within k, or the nucleus
        closed inside the top-k on the plain distribution)."""
        s = self.sampler
        if 0 < s.top_k <= len(plain):
            return True
        if s.min_p > 0.0 and plain and plain[-1] < plain[0] + math.log(s.min_p):
            return True
        return s.top_p < 1.0 and not s.truncate_after_temperature and 1.0 - rest >= s.top_p

    def _log_tail(self, plain: list[float], rest: float, vocab: int, t: float) -> float:
        """An upper bound on log(sum over the tail of p^(1/t))."""
        others = vocab - len(plain)
        if others <= 0 or rest <= 0.0:
            return -math.inf
        if t >= 1.0:  # Hölder: sum p^(1/t) <= n^(1-1/t) (sum p)^(1/t)
            bound = (1 - 1 / t) * math.log(others) + math.log(rest) / t
        else:  # each tail p <= p_k: sum p^(1/t) <= p_k^(1/t - 1) sum p
            bound = (1 / t - 1) * plain[-1] + math.log(rest)
        return min(bound, math.log(others) + plain[-1] / t)

    def q(self, plain_logprob: float, *, in_top: bool) -> float:
        """The sampler's probability of a token with this plain log probability (0 when truncated away; a
        token outside the top-k under a truncating sampler is cut unless the tail survived)."""
        if plain_logprob < self._floor and (in_top or self.tail == 0.0):
            return 0.0
        if not in_top and self.tail == 0.0:
            return 0.0
        return math.exp(plain_logprob / self.sampler.temperature - self._log_z)

    def mass_at_most(self, probability: float, top: Sequence[float]) -> float:
        """An upper bound on the chance of drawing a token the sampler gives at most ``probability``
        (the p-value of having drawn a token that unlikely). ``top``: the top-k plain logprobs."""
        below = math.fsum(p for p in (self.q(lp, in_top=True) for lp in top) if p <= probability)
        if self.tail > 0.0:
            each = math.exp(self._log_tail_each)
            below += self.tail if probability >= each else min(self.tail, probability * self._others)
        return min(1.0, below)
