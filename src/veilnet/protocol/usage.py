"""What a request used and how it ended, as the gateway bills and records it.

:class:`Usage` is OpenAI's ``usage`` object with OpenRouter's ``cost`` (USD): miners report token counts, the
gateway prices them at the miner's declared prices and hands the app the priced object (other fields a miner
adds, such as ``prompt_tokens_details``, pass through). :class:`LedgerStatus` is how a ledger row's request
ended; it is a ``str``, so stores keep plain strings.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LedgerStatus", "Usage"]


class LedgerStatus(StrEnum):
    OK = "ok"  # answered (billed from the miner's usage or the enclave's receipt)
    ERROR = "error"  # no usable answer: nothing billed
    CLIENT_DISCONNECTED = "client_disconnected"  # the app left first: billed for what was relayed


class Usage(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)
    cost: float | None = Field(default=None, ge=0)  # USD

    def priced(self, price_input_per_million: float, price_output_per_million: float, *,
               max_prompt_tokens: int | None = None, max_completion_tokens: int | None = None) -> Usage:
        """This usage with its ``cost`` at the given prices. Counts beyond what the request allowed (the
        ``max_*`` bounds: a model's context, a request's ``max_tokens``) are billed at the bound: a miner
        cannot bill more tokens than the request could use."""
        prompt = self.prompt_tokens if max_prompt_tokens is None else min(self.prompt_tokens, max_prompt_tokens)
        completion = (self.completion_tokens if max_completion_tokens is None
                      else min(self.completion_tokens, max_completion_tokens))
        cost = (prompt * price_input_per_million + completion * price_output_per_million) / 1_000_000
        return self.model_copy(update={"prompt_tokens": prompt, "completion_tokens": completion,
                                       "total_tokens": prompt + completion, "cost": cost})
