"""`veilnet miner run` / `validator run` fail cleanly, naming the problem, when they cannot start."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from veilnet.cli import app


@pytest.mark.parametrize("command", [["miner", "run"], ["validator", "run"]])
def test_missing_wallet_is_a_clear_error(command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILNET_WALLET__PATH", str(tmp_path))
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1
    assert "wallet 'default' not found" in result.output
    assert "Traceback" not in result.output


def test_unreachable_subtensor_node_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import free_port

    from veilnet.wallet import create_wallet

    create_wallet(tmp_path, "default", password=None)
    monkeypatch.setenv("VEILNET_WALLET__PATH", str(tmp_path))
    port = free_port()
    monkeypatch.setenv("VEILNET_CHAIN__NETWORK", f"ws://127.0.0.1:{port}")
    monkeypatch.setenv("VEILNET_CHAIN__CONNECT_ATTEMPTS", "2")
    result = CliRunner().invoke(app, ["validator", "run"])
    assert result.exit_code == 1
    assert f"Subtensor node at ws://127.0.0.1:{port} unreachable after 2 attempts" in result.output
    assert "Traceback" not in result.output

    monkeypatch.setenv("VEILNET_CHAIN__NETWORK", "mainnet")
    result = CliRunner().invoke(app, ["validator", "run"])
    assert result.exit_code == 1 and "'mainnet' is not known" in result.output


def test_unreachable_devnet_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import free_port

    from veilnet.wallet import create_wallet

    create_wallet(tmp_path, "default", password=None)
    monkeypatch.setenv("VEILNET_WALLET__PATH", str(tmp_path))
    monkeypatch.setenv("VEILNET_CHAIN__DEVNET_URL", f"http://127.0.0.1:{free_port()}")
    result = CliRunner().invoke(app, ["miner", "run"])
    assert result.exit_code == 1
    assert "unreachable" in result.output


def test_keys_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.setenv("VEILNET_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "--name", "app", "--credit", "5"])
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("vn-")
    listed = json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)
    assert listed[0]["name"] == "app" and secret not in json.dumps(listed)
    assert runner.invoke(app, ["keys", "topup", "1", "2.5"]).exit_code == 0
    assert runner.invoke(app, ["keys", "revoke", "1"]).exit_code == 0
    listed = json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)
    assert listed[0]["credit_usd"] == 7.5 and listed[0]["revoked"] is True
    missing = runner.invoke(app, ["keys", "revoke", "42"])
    assert missing.exit_code == 1 and "no API key with id 42" in missing.stderr
    capped = runner.invoke(app, ["keys", "create", "--name", "capped", "--credit", "5", "--budget", "2",
                                 "--reset", "weekly"])
    assert capped.exit_code == 0 and "budget $2.00 weekly" in capped.stdout, capped.output
    assert runner.invoke(app, ["keys", "budget", "2", "1.5", "--reset", "daily"]).exit_code == 0
    listed = json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)
    assert (listed[1]["budget_usd"], listed[1]["budget_reset"]) == (1.5, "daily")
    half = runner.invoke(app, ["keys", "budget", "2", "1.5"])
    assert half.exit_code == 1 and "both an amount and a reset period" in half.stderr
    assert runner.invoke(app, ["keys", "budget", "2", "--clear"]).exit_code == 0
    listed = json.loads(runner.invoke(app, ["keys", "list", "--json"]).stdout)
    assert (listed[1]["budget_usd"], listed[1]["budget_reset"]) == (None, None)


def test_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"veilnet {version('veilnet')}"


@pytest.mark.parametrize("command", [["miner", "run"], ["validator", "run"], ["gateway", "run"]])
def test_wallet_flags_win_over_the_environment(command: list[str], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from veilnet.wallet import create_wallet

    create_wallet(tmp_path, "default", password=None)
    monkeypatch.setenv("VEILNET_WALLET__PATH", str(tmp_path))
    monkeypatch.setenv("VEILNET_WALLET__NAME", "default")
    result = CliRunner().invoke(app, [*command, "--wallet", "elsewhere"])
    assert result.exit_code == 1 and "wallet 'elsewhere' not found" in result.output
    result = CliRunner().invoke(app, [*command, "--hotkey", "spare"])
    assert result.exit_code == 1 and "hotkey 'spare' of wallet 'default' not found" in result.output


def test_network_and_netuid_flags_win_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import free_port, in_thread, serve_asgi

    from veilnet.devnet.chain import DevnetChain
    from veilnet.devnet.chain.server import create_chain_app
    from veilnet.wallet import create_wallet

    create_wallet(tmp_path, "default", password=None)
    monkeypatch.setenv("VEILNET_WALLET__PATH", str(tmp_path))
    port = free_port()
    monkeypatch.setenv("VEILNET_CHAIN__NETWORK", "devnet")
    result = CliRunner().invoke(app, ["validator", "run", "--network", f"ws://127.0.0.1:{port}"])
    assert result.exit_code == 1 and f"Subtensor node at ws://127.0.0.1:{port} unreachable" in result.output

    @contextlib.asynccontextmanager
    async def chain_server() -> AsyncIterator[str]:
        async with DevnetChain(tmp_path / "chain.sqlite3", block_time=0.05) as chain:
            async with serve_asgi(create_chain_app(chain), lifespan="off") as url:
                yield url

    with in_thread(chain_server) as url:  # a devnet chain with no subnet 7
        monkeypatch.setenv("VEILNET_CHAIN__DEVNET_URL", url)
        monkeypatch.setenv("VEILNET_CHAIN__NETUID", "1")
        result = CliRunner().invoke(app, ["miner", "run", "--netuid", "7"])
    assert result.exit_code == 1 and "subnet 7 does not exist" in result.output
