"""Starting a llama.cpp server in this process (``xllamacpp.Server``) so that it can always be stopped.

An ``xllamacpp.Server`` runs llama.cpp's task loop in a thread of its own; collecting the object stops the loop
and joins that thread. The loop marks itself running when it starts, so a server collected before its thread
got that far has its stop overwritten and waits in the join for ever (seen: a test's engine opened and closed
within a few milliseconds hung the process). :func:`start_server` returns a server only once a request has
gone through its loop, which the loop answers only when it runs.

A server with a loopback port (``params.port = 0``: llama.cpp picks a free one) can lose that port to another
process starting at the same moment (a devnet's validator and gateway): its start is tried up to three times.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["start_server"]

_TRIES = 3


def start_server(params: Any) -> Any:
    """An ``xllamacpp.Server`` for ``params`` (``xllamacpp.CommonParams``) whose task loop runs (blocking)."""
    import xllamacpp

    for attempt in range(_TRIES):
        try:
            server = xllamacpp.Server(params)
            break
        except RuntimeError:
            if params.port != 0 or attempt == _TRIES - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    server.handle_completions({"prompt": "", "max_tokens": 0})  # answered by the loop, so it runs
    return server
