"""Credit held for requests in flight, so that concurrent requests of one key cannot spend more than it has.

Without holds, each of 50 concurrent requests of a key sees the whole remaining credit (nothing is charged
until a request ends) and all are served: the key spends far past its credit. With holds, a request reserves
the most it can cost before it is served (:func:`reservation_usd`), the hold counts against the key's credit
and budget at once, and the request is refused (402) when the key cannot cover it. When the request ends, the
hold is settled to the actual cost (its ledger row) or released (the request failed or was refused).

Holds live in the gateway process (:class:`Holds`): they cost nothing on the hot path, and a process that dies
takes its holds with it (nothing to expire). What a process knows about a key and the database does not yet —
its holds and the cost of its ledger rows not written yet — is counted here too, per key.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from veilnet.store.ledger import UsageRow

__all__ = ["TEMPLATE_TOKENS_PER_MESSAGE", "TEMPLATE_TOKENS_PER_REQUEST", "Holds", "Reservation", "reservation_usd"]

# A chat template wraps each message in a few special tokens (role markers, separators); 16 covers the
# templates of the models veilnet serves (SmolLM2's ChatML adds 5 per message, Gemma's 6).
TEMPLATE_TOKENS_PER_MESSAGE = 16
# Once per request, what a template adds on its own: a default system prompt when the request has none
# (SmolLM2's makes a 2-byte "hi" 31 prompt tokens), a beginning-of-text token, the assistant's opening.
TEMPLATE_TOKENS_PER_REQUEST = 64


def reservation_usd(*, prompt_bytes: int, max_tokens: int, price_input_per_million: float,
                    price_output_per_million: float, messages: int = 1) -> float:
    """The most a request can cost: a prompt token per byte of its prompt's UTF-8 text (a byte-level BPE token,
    as every model veilnet serves uses, covers at least one byte) plus ``TEMPLATE_TOKENS_PER_MESSAGE`` per
    message and ``TEMPLATE_TOKENS_PER_REQUEST``, and ``max_tokens`` completion tokens (the caller passes the limit the miner enforces: the request's
    max_tokens, else the model's context length), at the prices per million tokens."""
    for name, value in (("prompt_bytes", prompt_bytes), ("max_tokens", max_tokens), ("messages", messages)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, not {value}")
    for name, price in (("price_input_per_million", price_input_per_million),
                        ("price_output_per_million", price_output_per_million)):
        if not (math.isfinite(price) and price >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, not {price}")
    prompt_tokens = prompt_bytes + TEMPLATE_TOKENS_PER_MESSAGE * max(messages, 1) + TEMPLATE_TOKENS_PER_REQUEST
    return (prompt_tokens * price_input_per_million + max_tokens * price_output_per_million) / 1_000_000


class Holds:
    """Per key: the credit held for requests in flight, and the cost of ledger rows not yet written."""

    def __init__(self) -> None:
        self._reserved: dict[int, float] = {}
        self._unwritten: dict[int, float] = {}

    def reserved(self, key_id: int) -> float:
        return self._reserved.get(key_id, 0.0)

    def unwritten(self, key_id: int) -> float:
        return self._unwritten.get(key_id, 0.0)

    def hold(self, key_id: int, amount_usd: float) -> None:
        self._reserved[key_id] = self._reserved.get(key_id, 0.0) + amount_usd

    def drop(self, key_id: int, amount_usd: float) -> None:
        _subtract(self._reserved, key_id, amount_usd)

    def recorded(self, key_id: int, cost_usd: float) -> None:
        """A ledger row's cost, counted until its row is written."""
        if cost_usd:
            self._unwritten[key_id] = self._unwritten.get(key_id, 0.0) + cost_usd

    def written(self, key_id: int, cost_usd: float) -> None:
        """Rows of this cost are in the database now (its spend counts them)."""
        _subtract(self._unwritten, key_id, cost_usd)


def _subtract(amounts: dict[int, float], key_id: int, amount: float) -> None:
    left = amounts.pop(key_id, 0.0) - amount
    if left > 1e-12:  # float dust from many additions and subtractions is no hold
        amounts[key_id] = left


class Reservation:
    """Credit held for one request: :meth:`settle` it with the request's ledger row, or :meth:`release` it.
    As a context manager it releases on exit unless settled (an error or a cancelled request frees its hold)."""

    def __init__(self, key_id: int, amount_usd: float, holds: Holds, record: Callable[[UsageRow], None]) -> None:
        self.key_id = key_id
        self.amount_usd = amount_usd
        self._holds = holds
        self._record = record
        self.state = "held"  # held | settled | released

    def settle(self, row: UsageRow) -> None:
        """Replace the hold by the request's actual cost: record its ledger row (the key is charged the row's
        cost, which may be more or less than was held)."""
        if self.state != "held":
            raise RuntimeError(f"this reservation is already {self.state}")
        if row.key_id != self.key_id:
            raise ValueError(f"the row is for key {row.key_id}, the reservation for key {self.key_id}")
        self._holds.drop(self.key_id, self.amount_usd)
        self.state = "settled"
        self._record(row)

    def release(self) -> None:
        """Free the hold without a charge (the request failed); after :meth:`settle`, nothing happens."""
        if self.state == "held":
            self._holds.drop(self.key_id, self.amount_usd)
            self.state = "released"

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
