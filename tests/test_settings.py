from pathlib import Path

import pytest

from veilnet.errors import ConfigError
from veilnet.settings import load_settings
from veilnet.validator.run import score_params


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


def test_the_score_ema_and_sharpening_are_validator_settings_with_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert score_params(load_settings(data_dir=tmp_path).validator).ema_alpha == 0.3
    monkeypatch.setenv("VEILNET_VALIDATOR__SCORE_EMA_ALPHA", "1")
    monkeypatch.setenv("VEILNET_VALIDATOR__SHARPEN_EXPONENT", "3")
    params = score_params(load_settings(data_dir=tmp_path).validator)
    assert (params.ema_alpha, params.sharpen) == (1.0, 3.0)
    monkeypatch.setenv("VEILNET_VALIDATOR__SCORE_EMA_ALPHA", "0")
    with pytest.raises(ConfigError, match="score_ema_alpha"):
        load_settings(data_dir=tmp_path)
    monkeypatch.setenv("VEILNET_VALIDATOR__SCORE_EMA_ALPHA", "0.5")
    monkeypatch.setenv("VEILNET_VALIDATOR__SHARPEN_EXPONENT", "-1")  # would pay worse service more
    with pytest.raises(ConfigError, match="sharpen_exponent"):
        load_settings(data_dir=tmp_path)
