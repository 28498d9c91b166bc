"""Where each named Subtensor network lives, and which runtimes veilnet was tested against."""

from __future__ import annotations

from veilnet.errors import ConfigError

__all__ = ["NETWORKS", "TESTED_SPEC_VERSIONS", "resolve_endpoint", "runtime_version_warning"]

NETWORKS: dict[str, str] = {
    "finney": "wss://entrypoint-finney.opentensor.ai:443",
    "test": "wss://test.finney.opentensor.ai:443",
    "local": "ws://127.0.0.1:9944",
}

# Oldest runtime whose metadata the offline tests decode (the recorded v15 blob) to the newest runtime whose
# pallet source (call indexes, storage, runtime APIs) this backend was checked against.
TESTED_SPEC_VERSIONS = range(320, 425 + 1)


def resolve_endpoint(network: str) -> str:
    """``finney`` / ``test`` / ``local`` or a ws:// / wss:// URL -> the websocket URL."""
    if network in NETWORKS:
        return NETWORKS[network]
    if network.startswith(("ws://", "wss://")):
        return network
    raise ConfigError(
        f"chain network {network!r} is not known: use devnet, finney, test, local or a ws:// / wss:// URL"
    )


def runtime_version_warning(spec_version: int) -> str | None:
    """A warning naming the versions when the node's runtime is outside the tested range, else None."""
    low, high = TESTED_SPEC_VERSIONS.start, TESTED_SPEC_VERSIONS.stop - 1
    if spec_version > high:
        return (
            f"the node runs Subtensor runtime spec {spec_version}, newer than the newest tested ({high}); "
            f"veilnet decodes by metadata so it should work, but check the release notes (tested {low}-{high})"
        )
    if spec_version < low:
        return f"the node runs Subtensor runtime spec {spec_version}, older than the oldest tested ({low})"
    return None
