"""`veilnet confidential-proxy`: the local OpenAI-compatible proxy that seals every request end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from veilnet.cli.common import settings_from, veilnet_errors

__all__ = ["confidential_proxy"]


@veilnet_errors
def confidential_proxy(
    ctx: typer.Context,
    gateway: Annotated[str, typer.Option("--gateway", help="The gateway's OpenAI base URL, e.g. http://127.0.0.1:8080/v1")],
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="VEILNET_API_KEY",
                                                help="Gateway key to use when a caller sends none.")] = None,
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8787,
    policy: Annotated[Path | None, typer.Option("--policy", help="Measurement policy (TOML/JSON).")] = None,
    dev_key: Annotated[list[str] | None, typer.Option(
        "--dev-enclave-key", help="Pin a development enclave's public key (hex); repeatable.")] = None,
) -> None:
    """Serve /v1/chat/completions and /v1/completions locally; attestation is verified here, under this
    machine's policy, and requests are sealed so the gateway and the miner's operator cannot read them."""
    import asyncio

    from veilnet.client import ConfidentialClient, create_proxy_app
    from veilnet.confidential.config import verifier_from_settings
    from veilnet.connections import ConnectionTimeouts
    from veilnet.logs import configure_logging
    from veilnet.serving import serve as serve_app

    settings = settings_from(ctx)
    if policy is not None:
        settings.confidential.policy_file = policy
    if dev_key:
        settings.confidential.dev_enclave_public_keys = [*settings.confidential.dev_enclave_public_keys, *dev_key]
    configure_logging(settings.log)
    verifier = verifier_from_settings(settings.confidential)

    async def main() -> None:
        async with ConfidentialClient(gateway, api_key, verifier) as client:
            await serve_app(create_proxy_app(client), host=host, port=port,
                            timeouts=ConnectionTimeouts.from_settings(settings.http))

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
