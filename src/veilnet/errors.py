"""veilnet's error tree. Every error veilnet raises on purpose derives from :class:`VeilnetError`.

    VeilnetError
    ├── ConfigError                 settings or files that cannot be used
    ├── WalletError                 missing / undecryptable keys
    ├── InvalidRequest              bad input from a caller (maps to 400)
    │   └── PayloadTooLarge         (413)
    ├── AuthenticationError         bad or missing credentials / signatures (401)
    ├── PermissionDenied            authenticated but not allowed (403)
    ├── NotFound                    unknown model / resource (404)
    ├── PaymentRequired             out of credit (402)
    ├── RateLimited                 quota or rate limit spent; carries retry_after (429)
    ├── Overloaded                  backend full, try later (503)
    ├── UpstreamError               a miner / upstream failed (502)
    │   └── UpstreamTimeout         a miner / upstream took too long (504)
    │       └── RequestTimeout      no miner answered within the request's time (408, at the gateway)
    ├── StoreError                  Redis / SQL failures (503 with Retry-After)
    ├── ChainError                  see veilnet.chain.errors (typed after Subtensor's errors)
    └── ConfidentialError           see veilnet.confidential (attestation, decryption)

Each error's HTTP status and OpenAI error type live in one registry, :mod:`veilnet.protocol.errors`, which
the services' edge (:mod:`veilnet.edge`) uses to answer and every client uses to turn an answer back into
the same error (:meth:`VeilnetError.from_wire`). Library code never raises HTTP errors and never classifies
an error by its message.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ChainError",
    "ConfidentialError",
    "ConfigError",
    "InvalidRequest",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PaymentRequired",
    "PermissionDenied",
    "RateLimited",
    "RequestTimeout",
    "StoreError",
    "UpstreamError",
    "UpstreamTimeout",
    "VeilnetError",
    "WalletError",
]


class VeilnetError(Exception):
    """Root of veilnet's errors. ``code`` is a short stable machine-readable name."""

    code: str = "veilnet_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @classmethod
    def from_wire(cls, message: str, *, code: str | None, param: str | None = None,
                  retry_after: float | None = None) -> VeilnetError:
        """The error a peer answered with (its OpenAI-shaped body and Retry-After), as this class."""
        return cls(message, code=code)


class ConfigError(VeilnetError):
    code = "config_error"


class WalletError(VeilnetError):
    code = "wallet_error"


class InvalidRequest(VeilnetError):
    """The caller sent something unusable; ``param`` names the offending field when known."""

    code = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.param = param

    @classmethod
    def from_wire(cls, message: str, *, code: str | None, param: str | None = None,
                  retry_after: float | None = None) -> VeilnetError:
        return cls(message, param=param, code=code)


class PayloadTooLarge(InvalidRequest):
    code = "payload_too_large"


class AuthenticationError(VeilnetError):
    code = "authentication_failed"


class PermissionDenied(VeilnetError):
    code = "permission_denied"


class NotFound(VeilnetError):
    code = "not_found"


class PaymentRequired(VeilnetError):
    code = "insufficient_credits"


class RateLimited(VeilnetError):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after

    @classmethod
    def from_wire(cls, message: str, *, code: str | None, param: str | None = None,
                  retry_after: float | None = None) -> VeilnetError:
        return cls(message, retry_after=1.0 if retry_after is None else retry_after, code=code)


class Overloaded(VeilnetError):
    code = "overloaded"

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after

    @classmethod
    def from_wire(cls, message: str, *, code: str | None, param: str | None = None,
                  retry_after: float | None = None) -> VeilnetError:
        return cls(message, retry_after=retry_after, code=code)


class UpstreamError(VeilnetError):
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"


class RequestTimeout(UpstreamTimeout):
    code = "request_timeout"


class StoreError(VeilnetError):
    """A store (Redis, SQL) failed or is out of reach: a dependency outage, worth asking again shortly
    (``retry_after`` seconds, answered as ``Retry-After``)."""

    code = "store_error"

    def __init__(self, message: str, *, retry_after: float | None = 1.0, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after

    @classmethod
    def from_wire(cls, message: str, *, code: str | None, param: str | None = None,
                  retry_after: float | None = None) -> VeilnetError:
        return cls(message, retry_after=retry_after, code=code)


class ChainError(VeilnetError):
    """Root of chain errors; concrete classes live in :mod:`veilnet.chain.errors`."""

    code = "chain_error"


class ConfidentialError(VeilnetError):
    """Root of confidential-computing errors; concrete classes live in :mod:`veilnet.confidential`."""

    code = "confidential_error"
