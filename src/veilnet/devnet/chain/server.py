"""The devnet chain over HTTP (``veilnet chain serve``), so miners and validators in other processes share it.

Reads are plain GETs. Extrinsics are ``POST /extrinsic`` with a JSON body ``{"call", "signer", "nonce",
"args"}`` and the header ``X-Veilnet-Signature``: the hex sr25519 signature by ``signer`` over the exact body
bytes. ``nonce`` must grow per signer (replays are refused). Errors are ``{"error": {"code", "message"}}``
with the Subtensor error name as code. ``POST /admin/{fund|sudo_set_hyperparameter}`` is devnet-only.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from bittensor_wallet import Keypair
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from veilnet.chain import errors as ce
from veilnet.devnet.chain.local import CALLS, DevnetChain

__all__ = ["SIGNATURE_HEADER", "create_chain_app"]

SIGNATURE_HEADER = "X-Veilnet-Signature"
MAX_BODY = 1 << 20


def _status(error: ce.ChainError) -> int:
    if isinstance(error, ce.InvalidSignature | ce.BadOrigin):
        return 401
    if isinstance(error, ce.SubnetNotExists):
        return 404
    if isinstance(error, ce.ChainUnavailable):
        return 503
    return 400


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def create_chain_app(chain: DevnetChain) -> FastAPI:
    """The ASGI app serving ``chain`` (whose lifecycle the caller owns)."""
    app = FastAPI(title="veilnet devnet chain", docs_url=None, redoc_url=None)

    @app.exception_handler(ce.ChainError)
    async def chain_error(_: Request, exc: ce.ChainError) -> JSONResponse:
        return _error(_status(exc), exc.code, exc.message)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "block": await chain.get_current_block()}

    @app.get("/block")
    async def block() -> dict[str, int]:
        return {"block": await chain.get_current_block()}

    @app.get("/wait")
    async def wait(block: int | None = None, timeout: float = 30.0) -> dict[str, int]:
        return {"block": await chain.wait_for_block(block, timeout=min(max(timeout, 0.0), 60.0))}

    @app.get("/subnets/{netuid}/exists")
    async def exists(netuid: int) -> dict[str, bool]:
        return {"exists": await chain.subnet_exists(netuid)}

    @app.get("/subnets/{netuid}/hyperparameters")
    async def hyperparameters(netuid: int) -> dict[str, Any]:
        return dataclasses.asdict(await chain.get_hyperparameters(netuid))

    @app.get("/subnets/{netuid}/metagraph")
    async def metagraph(netuid: int) -> dict[str, Any]:
        return dataclasses.asdict(await chain.get_metagraph(netuid))

    @app.get("/subnets/{netuid}/burn")
    async def burn(netuid: int) -> dict[str, int]:
        return {"burn": await chain.get_burn(netuid)}

    @app.get("/subnets/{netuid}/next_epoch")
    async def next_epoch(netuid: int) -> dict[str, int]:
        return {"block": await chain.get_next_epoch_block(netuid)}

    @app.get("/subnets/{netuid}/axons/{hotkey}")
    async def axon(netuid: int, hotkey: str) -> dict[str, Any]:
        info = await chain.get_axon(netuid, hotkey)
        return {"axon": None if info is None else dataclasses.asdict(info)}

    @app.get("/balances/{ss58}")
    async def balance(ss58: str) -> dict[str, int]:
        return {"balance": await chain.get_balance(ss58)}

    @app.post("/extrinsic")
    async def extrinsic(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(413, "PayloadTooLarge", f"extrinsic body over {MAX_BODY} bytes")
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "InvalidArgument", "extrinsic body is not valid JSON")
        if not isinstance(payload, dict):
            return _error(400, "InvalidArgument", "extrinsic body must be a JSON object")
        call, signer, nonce, args = (payload.get(k) for k in ("call", "signer", "nonce", "args"))
        if call not in CALLS:
            return _error(400, "UnknownCall", f"unknown call {call!r}; known: {', '.join(sorted(CALLS))}")
        if not isinstance(signer, str) or not isinstance(nonce, int) or not isinstance(args, dict):
            return _error(400, "InvalidArgument", "extrinsic needs signer (ss58), nonce (int) and args (object)")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        try:
            valid = Keypair(ss58_address=signer).verify(body, bytes.fromhex(signature.removeprefix("0x")))
        except Exception:  # malformed address or signature: refuse, never crash
            valid = False
        if not valid:
            return _error(401, "InvalidSignature", f"{SIGNATURE_HEADER} is not {signer}'s signature of the body")
        result = await chain.apply(call, signer, args, nonce=nonce)
        return JSONResponse({"result": result})

    @app.post("/admin/{call}")
    async def admin(call: str, request: Request) -> dict[str, bool]:
        try:
            args = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ce.ChainError("admin body is not valid JSON", code="InvalidArgument") from None
        if not isinstance(args, dict):
            raise ce.ChainError("admin body must be a JSON object", code="InvalidArgument")
        await chain.admin(call, args)
        return {"ok": True}

    return app
