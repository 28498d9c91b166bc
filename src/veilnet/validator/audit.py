"""Organic answers the gateway passed to the scorers (:mod:`veilnet.gateway.verification`), read back from the
bytes the miner signed: the signature is checked against the request's uuid and the gateway's hotkey, then the
answer is the JSON body, or the SSE stream reassembled into the answer it stands for
(:func:`veilnet.tasks.stream.assemble_sse_body`). What does not check out is never verified (nor held
against the miner): only what the miner provably sent can convict it.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from multidict import CIMultiDict

from veilnet.protocol.epistula import EpistulaError, verify_response, verify_stream
from veilnet.store.validator_pipeline import SignedAnswer
from veilnet.tasks.stream import assemble_sse_body

__all__ = ["signed_answer_document"]


def signed_answer_document(signed: SignedAnswer, miner: str) -> dict[str, Any] | str:
    """The answer ``miner`` signed, or why it cannot be attributed to it (a string)."""
    try:
        body = base64.b64decode(signed.body, validate=True)
    except (binascii.Error, ValueError):
        return "the signed answer is not base64"
    try:
        if signed.format == "stream":
            content = verify_stream(body, request_uuid=signed.request_uuid, caller=signed.caller, signer=miner)
            return assemble_sse_body(content)
        verify_response(CIMultiDict(signed.headers), body, request_uuid=signed.request_uuid, caller=signed.caller,
                        expected_signer=miner)
    except EpistulaError as exc:
        return f"the miner's signature does not check: {exc}"
    try:
        answer = json.loads(body)
    except ValueError:
        return {"malformed": True}  # signed, yet not JSON: the verifier fails it
    return answer if isinstance(answer, dict) else {"malformed": True}
