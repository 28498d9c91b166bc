from __future__ import annotations

import json
from pathlib import Path

import pytest
from bittensor_wallet import Wallet
from typer.testing import CliRunner

from veilnet.cli import app
from veilnet.errors import WalletError
from veilnet.settings import WalletSettings
from veilnet.wallet import create_wallet, list_wallets, load_wallet


def test_created_wallet_has_btcli_layout_and_encrypted_coldkey(tmp_path: Path) -> None:
    created = create_wallet(tmp_path, "alice", "hot", password="secret-pw")
    root = tmp_path / "alice"
    assert (root / "coldkey").read_bytes().startswith(b"$NACL")
    assert (root / "coldkeypub.txt").is_file()
    assert (root / "hotkeys" / "hot").is_file()
    assert (root / "hotkeys" / "hotpub.txt").is_file()
    # bittensor_wallet (what btcli uses) reads what veilnet wrote.
    theirs = Wallet(name="alice", hotkey="hot", path=str(tmp_path))
    assert theirs.hotkey.ss58_address == created.wallet.hotkey.ss58_address
    assert theirs.coldkeypub.ss58_address == created.wallet.coldkeypub_ss58
    assert created.wallet.hotkey.ss58_address.startswith("5")


def test_veilnet_reads_a_btcli_wallet(tmp_path: Path) -> None:
    theirs = Wallet(name="bob", hotkey="default", path=str(tmp_path))
    theirs.create_new_coldkey(n_words=12, use_password=True, overwrite=True, suppress=True, coldkey_password="pw123456")
    theirs.create_new_hotkey(n_words=12, use_password=False, overwrite=True, suppress=True)
    ours = load_wallet(WalletSettings(name="bob", hotkey="default", path=tmp_path))
    assert ours.hotkey.ss58_address == theirs.hotkey.ss58_address
    coldkey = ours.unlock_coldkey("pw123456")
    assert coldkey.ss58_address == theirs.coldkeypub.ss58_address
    signature = coldkey.sign(b"payload")
    assert coldkey.verify(b"payload", signature)


def test_wrong_or_missing_password_and_missing_wallet(tmp_path: Path) -> None:
    created = create_wallet(tmp_path, "carol", password="right-pw")
    with pytest.raises(WalletError, match="encrypted"):
        created.wallet.unlock_coldkey(None)
    with pytest.raises(WalletError, match="cannot unlock"):
        created.wallet.unlock_coldkey("wrong-pw")
    with pytest.raises(WalletError, match="not found"):
        load_wallet(WalletSettings(name="nobody", path=tmp_path))
    with pytest.raises(WalletError, match="already exists"):
        create_wallet(tmp_path, "carol", password="right-pw")


def test_unencrypted_dev_wallet_unlocks_without_password(tmp_path: Path) -> None:
    created = create_wallet(tmp_path, "dev", password=None)
    assert created.wallet.unlock_coldkey(None).ss58_address == created.wallet.coldkeypub_ss58
    [info] = list_wallets(tmp_path)
    assert info.name == "dev" and info.hotkeys == {"default": created.wallet.hotkey.ss58_address}


def test_cli_create_list_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILNET_WALLET__PATH", str(tmp_path))
    monkeypatch.setenv("PW", "cli-secret")
    runner = CliRunner()
    result = runner.invoke(app, ["wallet", "create", "--name", "w1", "--password-env", "PW"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["wallet", "show", "--name", "w1", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["coldkey"].startswith("5") and shown["hotkey_name"] == "default"
    result = runner.invoke(app, ["wallet", "list", "--json"])
    assert json.loads(result.output)[0]["hotkeys"] == {"default": shown["hotkey"]}
    result = runner.invoke(app, ["wallet", "show", "--name", "missing"])
    assert result.exit_code == 1 and "not found" in result.output
