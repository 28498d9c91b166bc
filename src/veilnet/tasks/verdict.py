"""What verifying one answer concludes (pure).

``ok`` is False only for a *hard* finding: something no honest miner produces (an answer that ends where the
model would not stop, inflated usage, text the model would not write, a malformed answer). What an honest
miner can produce (a near-tie argmax flip under another quantisation, a token count off by a few, a missing
logprobs field) is a *soft* finding: it lowers ``quality`` and never bans.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Finding", "GreedyEvidence", "RecountedUsage", "Severity", "Verdict", "failed"]

Severity = Literal["soft", "hard"]


@dataclass(frozen=True)
class Finding:
    """One thing verification noticed: a stable ``code`` (e.g. ``implausible_stop``), its severity, and
    what exactly was wrong."""

    code: str
    severity: Severity
    detail: str


@dataclass(frozen=True)
class RecountedUsage:
    """The reference's own token counts for the answer, beside what the miner claimed (None: not given).
    ``completion_tokens`` counts the answer's text in the model's tokenization, plus the end-of-generation
    token when the answer ended on one; scorers measure speed and throughput from these, not from claims."""

    prompt_tokens: int
    completion_tokens: int
    claimed_prompt_tokens: int | None
    claimed_completion_tokens: int | None


@dataclass(frozen=True)
class GreedyEvidence:
    """Whether a sampled answer (temperature > 0) was the reference's argmax at its checked positions.

    ``hit_bounds[i]``: the most any honest sampler gives to the argmax being drawn at checked position i;
    ``hits``: positions where the answer took the argmax. Honest answers hit about ``expected`` (the sum of
    the bounds) times, with at most ``variance``; a cache of greedy answers hits every time.
    :func:`veilnet.tasks.greedy.greedy_cache_test` decides over a miner's recent answers."""

    hits: int
    hit_bounds: tuple[float, ...]

    @property
    def positions(self) -> int:
        return len(self.hit_bounds)

    @property
    def expected(self) -> float:
        return sum(self.hit_bounds)

    @property
    def variance(self) -> float:
        return sum(p * (1 - p) for p in self.hit_bounds)


@dataclass(frozen=True)
class Verdict:
    ok: bool  # no hard finding
    quality: float  # in [0, 1]: how close the answer came to the reference (1.0: indistinguishable)
    reason: str | None  # the first findings, for logs
    checked: int  # positions (chat) or inputs (embeddings) compared with the reference
    findings: tuple[Finding, ...] = ()
    usage: RecountedUsage | None = None  # chat: the reference's recount
    greedy: GreedyEvidence | None = None  # chat at temperature > 0
    # chat: Fisher's statistic (-2 sum of log p-values) over the checked positions, ``2 * checked`` degrees of
    # freedom; summed over a miner's answers it tests "this is another model" with far more power than one answer
    fisher: float = 0.0
    text_positions: int = 0  # the positions Fisher's statistic covers

    @property
    def hard(self) -> bool:
        return not self.ok


def failed(reason: str, quality: float = 0.0, checked: int = 0, *, code: str = "failed") -> Verdict:
    """A hard failure with one finding."""
    return Verdict(ok=False, quality=quality, reason=reason, checked=checked,
                   findings=(Finding(code, "hard", reason),))
