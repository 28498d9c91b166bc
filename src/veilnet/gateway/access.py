"""Who may use the gateway: the API key a request names, its credit, budget and rate limits, and what
OpenRouter's key endpoint reports about them."""

from __future__ import annotations

from veilnet.errors import AuthenticationError, PaymentRequired
from veilnet.protocol.gateway import Budget, KeyInfo, KeyInfoData, RateLimit, RateLimitUsed
from veilnet.store.keys import ApiKey, KeyStore
from veilnet.store.ratelimit import KeyRateLimiter

__all__ = ["KeyGate"]


class KeyGate:
    def __init__(self, keys: KeyStore, ratelimit: KeyRateLimiter | None) -> None:
        self.keys = keys
        self.ratelimit = ratelimit

    async def bearer_key(self, authorization: str | None) -> ApiKey:
        """The API key an ``Authorization: Bearer`` header names (AuthenticationError when missing, unknown
        or revoked)."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
        return await self.keys.authenticate(authorization[7:].strip())

    async def admit(self, authorization: str | None) -> ApiKey:
        """The key of a request to serve: known, in credit and within its budget (PaymentRequired) and within
        its rate limits (RateLimited)."""
        key = await self.bearer_key(authorization)
        if key.remaining_usd <= 0:
            raise PaymentRequired(f"API key {key.prefix}… is out of credit; top it up")
        left = key.budget_remaining_usd
        if left is not None and left <= 0:
            raise PaymentRequired(f"API key {key.prefix}… spent its {key.budget_reset} budget of ${key.budget_usd:g}; "
                                  f"it resets at {key.budget_resets_at}", code="budget_exceeded")
        if self.ratelimit is not None:
            await self.ratelimit.admit(key.id)
        return key

    def info(self, key: ApiKey) -> KeyInfo:
        """OpenRouter's key document: credit (USD), the budget per period when the key has one, and rate
        limits, with this period's and this minute's use of them."""
        limiter = self.ratelimit
        requests_used, tokens_used = limiter.counts(key.id) if limiter is not None else (0, 0)
        budget = None
        if key.budget_usd is not None and key.budget_reset is not None:
            budget = Budget(limit=key.budget_usd, reset=key.budget_reset, usage=key.period_spent_usd,
                            remaining=key.budget_remaining_usd or 0.0, resets_at=key.budget_resets_at)
        return KeyInfo(data=KeyInfoData(
            label=key.name, limit=key.credit_usd, usage=key.spent_usd, limit_remaining=key.remaining_usd,
            budget=budget,
            rate_limit=RateLimit(requests=(limiter.rpm or None) if limiter else None,
                                 tokens=(limiter.tpm or None) if limiter else None),
            rate_limit_used=RateLimitUsed(requests=requests_used, tokens=tokens_used)))
