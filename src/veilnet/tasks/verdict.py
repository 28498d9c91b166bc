"""What verifying one answer concludes (pure)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Verdict", "failed"]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    quality: float  # in [0, 1]: how close the answer came to the reference (1.0: indistinguishable)
    reason: str | None
    checked: int  # positions (chat) or inputs (embeddings) compared with the reference


def failed(reason: str, quality: float = 0.0, checked: int = 0) -> Verdict:
    return Verdict(ok=False, quality=quality, reason=reason, checked=checked)
