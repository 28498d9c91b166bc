"""Pick the chain backend named by the settings.

Subtensor (``finney``, ``test``, ``local`` or a ws(s) URL) is part of ``chain/``. Other backends register
themselves here (:func:`register_chain_backend`) from their own package: the devnet's embedded chain does in
:mod:`veilnet.devnet.chain`. That keeps ``chain/`` free of any import of the packages built on it (imports
point inward, and a process that talks to Subtensor never loads the devnet chain or its HTTP server); the
process that runs a service imports the backends it may use (``veilnet.cli`` and the ``run`` modules do).
"""

from __future__ import annotations

from collections.abc import Callable

from veilnet.chain.interface import Chain
from veilnet.errors import ConfigError
from veilnet.settings import ChainSettings

__all__ = ["ChainFactory", "chain_from_settings", "register_chain_backend"]

ChainFactory = Callable[[ChainSettings], Chain]

_BACKENDS: dict[str, ChainFactory] = {}


def register_chain_backend(network: str, factory: ChainFactory) -> None:
    """Serve ``VEILNET_CHAIN__NETWORK=<network>`` with ``factory(settings)``."""
    _BACKENDS[network] = factory


def chain_from_settings(settings: ChainSettings) -> Chain:
    """A registered backend for ``settings.network`` (``devnet``: the devnet chain's HTTP client, once
    :mod:`veilnet.devnet.chain` is imported); otherwise Subtensor at ``finney``/``test``/``local``/a ws(s) URL."""
    factory = _BACKENDS.get(settings.network)
    if factory is not None:
        return factory(settings)
    if settings.network == "devnet":
        raise ConfigError("the devnet chain backend is not loaded: import veilnet.devnet.chain first "
                          "(veilnet's service commands do)")
    from veilnet.chain.subtensor import SubtensorChain, resolve_endpoint

    return SubtensorChain(
        resolve_endpoint(settings.network),
        block_time=settings.block_time,
        connect_attempts=settings.connect_attempts,
        connect_timeout=settings.connect_timeout,
    )
