"""llama.cpp's error documents as veilnet's errors: what it refuses in a request is the caller's fault (400),
anything else the engine's (pure)."""

from __future__ import annotations

from veilnet.errors import InvalidRequest, UpstreamError
from veilnet.models.llamacpp import llamacpp_error
from veilnet.protocol.errors import status_for


def test_a_prompt_past_the_context_is_the_callers_400_naming_the_limit() -> None:
    error = llamacpp_error({"code": 400, "message": "request (20031 tokens) exceeds the available context size "
                            "(4096 tokens), try increasing it", "type": "exceed_context_size_error",
                            "n_prompt_tokens": 20031, "n_ctx": 4096})
    assert isinstance(error, InvalidRequest) and error.code == "context_length_exceeded"
    assert "4096 tokens" in error.message and status_for(error)[0] == 400


def test_other_refusals_are_400_and_failures_stay_the_engines() -> None:
    for refused in ({"code": 400, "message": "bad grammar", "type": "invalid_request_error"},
                    {"code": 501, "message": "image input is not supported", "type": "not_supported_error"}):
        error = llamacpp_error(refused)
        assert isinstance(error, InvalidRequest) and refused["message"] in error.message
    for failed in ({"code": 500, "message": "kv cache full", "type": "server_error"}, "crashed", None):
        assert isinstance(llamacpp_error(failed), UpstreamError)
