"""Keys and wallets in the bittensor layout, through the ``bittensor-wallet`` library (no hand-written crypto).

``<path>/<name>/coldkey`` (encrypted unless created without a password), ``coldkeypub.txt``,
``hotkeys/<hotkey>`` and ``hotkeys/<hotkey>pub.txt`` — the files btcli reads and writes, so wallets made by
either tool work in the other. Addresses are SS58 format 42.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bittensor_wallet import Keypair, Wallet
from pydantic import SecretStr

from veilnet.errors import WalletError
from veilnet.settings import WalletSettings

__all__ = ["CreatedWallet", "VeilnetWallet", "WalletInfo", "create_wallet", "list_wallets", "load_wallet"]


@dataclass(frozen=True)
class VeilnetWallet:
    """A loaded wallet: the hotkey ready to sign, the coldkey's address, and the coldkey on request."""

    name: str
    hotkey_name: str
    path: Path
    hotkey: Keypair
    coldkeypub_ss58: str

    def coldkey_is_encrypted(self) -> bool:
        wallet = Wallet(name=self.name, hotkey=self.hotkey_name, path=str(self.path))
        try:
            return bool(wallet.coldkey_file.is_encrypted())
        except Exception as exc:  # bittensor_wallet raises its own KeyFileError types
            raise WalletError(f"cannot read coldkey of wallet {self.name!r}: {exc}") from exc

    def unlock_coldkey(self, password: SecretStr | str | None) -> Keypair:
        """The coldkey keypair; ``password`` is needed when the coldkey file is encrypted."""
        wallet = Wallet(name=self.name, hotkey=self.hotkey_name, path=str(self.path))
        secret = password.get_secret_value() if isinstance(password, SecretStr) else password
        encrypted = self.coldkey_is_encrypted()
        if encrypted and not secret:
            raise WalletError(
                f"the coldkey of wallet {self.name!r} is encrypted: give its password "
                "(VEILNET_WALLET__COLDKEY_PASSWORD for automation)"
            )
        try:
            with _quiet():
                return wallet.get_coldkey(password=secret) if encrypted else wallet.get_coldkey()
        except Exception as exc:
            raise WalletError(f"cannot unlock the coldkey of wallet {self.name!r}: {exc}") from exc


@dataclass(frozen=True)
class CreatedWallet:
    wallet: VeilnetWallet
    coldkey_mnemonic: str
    hotkey_mnemonic: str


@dataclass(frozen=True)
class WalletInfo:
    name: str
    coldkeypub_ss58: str | None
    hotkeys: dict[str, str | None]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # bittensor_wallet prints "Decrypting..." and similar to stdout; keep the CLI's output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def load_wallet(settings: WalletSettings) -> VeilnetWallet:
    """Load ``settings.name`` / ``settings.hotkey`` from ``settings.path``; clear WalletError when missing."""
    base = Path(settings.path).expanduser()
    wallet_dir = base / settings.name
    if not (wallet_dir / "coldkeypub.txt").is_file():
        raise WalletError(f"wallet {settings.name!r} not found in {base} (no coldkeypub.txt); create it with "
                          "`veilnet wallet create`")
    if not (wallet_dir / "hotkeys" / settings.hotkey).is_file():
        raise WalletError(f"hotkey {settings.hotkey!r} of wallet {settings.name!r} not found in {wallet_dir / 'hotkeys'}")
    wallet = Wallet(name=settings.name, hotkey=settings.hotkey, path=str(base))
    try:
        with _quiet():
            hotkey = wallet.get_hotkey()
            coldkeypub = wallet.get_coldkeypub()
    except Exception as exc:
        raise WalletError(f"cannot read wallet {settings.name!r}: {exc}") from exc
    return VeilnetWallet(
        name=settings.name,
        hotkey_name=settings.hotkey,
        path=base,
        hotkey=hotkey,
        coldkeypub_ss58=coldkeypub.ss58_address,
    )


def create_wallet(
    path: Path,
    name: str,
    hotkey: str = "default",
    *,
    password: str | None,
    overwrite: bool = False,
    n_words: int = 12,
) -> CreatedWallet:
    """Create a coldkey (encrypted with ``password``; plain when None) and a hotkey, in btcli's layout."""
    base = Path(path).expanduser()
    if n_words not in (12, 15, 18, 21, 24):
        raise WalletError(f"n_words must be one of 12, 15, 18, 21, 24, got {n_words}")
    if (base / name / "coldkeypub.txt").exists() and not overwrite:
        raise WalletError(f"wallet {name!r} already exists in {base}; pass overwrite to replace it")
    if password is not None and len(password) < 6:
        raise WalletError("the coldkey password must be at least 6 characters")
    coldkey_mnemonic = Keypair.generate_mnemonic(n_words)
    hotkey_mnemonic = Keypair.generate_mnemonic(n_words)
    wallet = Wallet(name=name, hotkey=hotkey, path=str(base))
    try:
        with _quiet():
            wallet.set_coldkey(Keypair.create_from_mnemonic(coldkey_mnemonic), encrypt=password is not None,
                               overwrite=True, coldkey_password=password)
            wallet.set_coldkeypub(Keypair.create_from_mnemonic(coldkey_mnemonic), encrypt=False, overwrite=True)
            wallet.set_hotkey(Keypair.create_from_mnemonic(hotkey_mnemonic), encrypt=False, overwrite=True)
            wallet.set_hotkeypub(Keypair.create_from_mnemonic(hotkey_mnemonic), encrypt=False, overwrite=True)
    except Exception as exc:
        raise WalletError(f"cannot create wallet {name!r} in {base}: {exc}") from exc
    loaded = load_wallet(WalletSettings(name=name, hotkey=hotkey, path=base))
    return CreatedWallet(wallet=loaded, coldkey_mnemonic=coldkey_mnemonic, hotkey_mnemonic=hotkey_mnemonic)


def _read_pub(path: Path) -> str | None:
    try:
        return Keypair(ss58_address=_ss58_from_pubfile(path)).ss58_address
    except Exception:
        return None


def _ss58_from_pubfile(path: Path) -> str:
    import json

    text = path.read_text().strip()
    if text.startswith("{"):
        data = json.loads(text)
        return str(data.get("ss58Address") or data["publicKey"])
    return text


def list_wallets(path: Path) -> list[WalletInfo]:
    """Every wallet under ``path`` with its coldkey address and hotkeys (address None when unreadable)."""
    base = Path(path).expanduser()
    if not base.is_dir():
        return []
    infos = []
    for wallet_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        hotkeys: dict[str, str | None] = {}
        hotkey_dir = wallet_dir / "hotkeys"
        if hotkey_dir.is_dir():
            for file in sorted(hotkey_dir.iterdir()):
                if file.is_file() and not file.name.endswith("pub.txt"):
                    pub = hotkey_dir / f"{file.name}pub.txt"
                    hotkeys[file.name] = _read_pub(pub) if pub.exists() else _read_hotkey_address(file)
        infos.append(WalletInfo(name=wallet_dir.name, coldkeypub_ss58=_read_pub(wallet_dir / "coldkeypub.txt")
                                if (wallet_dir / "coldkeypub.txt").exists() else None, hotkeys=hotkeys))
    return infos


def _read_hotkey_address(path: Path) -> str | None:
    import json

    try:
        return str(json.loads(path.read_text())["ss58Address"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
