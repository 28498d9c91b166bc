from pathlib import Path

import pytest

from veilnet.errors import ConfigError
from veilnet.settings import load_settings


def test_env_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "veilnet.toml"
    config.write_text('[miner]\nport = 9001\nhost = "0.0.0.0"\n[chain]\nnetuid = 7\n')
    monkeypatch.setenv("VEILNET_MINER__PORT", "9002")
    settings = load_settings(config)
    assert settings.miner.port == 9002
    assert settings.miner.host == "0.0.0.0"
    assert settings.chain.netuid == 7


def test_unknown_key_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "veilnet.toml"
    config.write_text("[miner]\nprot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings(config)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_default_database_is_sqlite_in_data_dir(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.database_url() == f"sqlite+aiosqlite:///{tmp_path / 'veilnet.sqlite3'}"
