"""Settings from the environment: defaults are embedded, errors name the variable, secrets redacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamforge_pipelines.settings import ENV_VARS, Settings, SettingsError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_are_embedded() -> None:
    s = Settings.from_env({})
    assert s.kafka_bootstrap_servers is None and s.arango_url is None and s.exchange_url is None
    assert s.topics() == {
        "queue-control": 1,
        "queue-events": 1,
        "sf.checkpoints.v1": 1,
        "sf.candles.v1": 4,
        "sf.candles.v1.dlq": 1,
        "sf.candles-usdm.v1": 4,
        "sf.candles-usdm.v1.dlq": 1,
        "sf.trades.v1": 4,
        "sf.trades.v1.dlq": 1,
    }


def test_env_parsed_and_round_trips() -> None:
    env = {"STREAMFORGE_UNIVERSE": "btcusdt, ethusdt", "KAFKA_DATA_PARTITIONS": "8", "ARANGO_URL": ""}
    s = Settings.from_env(env)
    assert s.universe == ("BTCUSDT", "ETHUSDT") and s.data_partitions == 8 and s.arango_url is None
    assert Settings.from_env(s.to_env()) == s


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"^KAFKA_DATA_PARTITIONS: ") as err:
        Settings.from_env({"KAFKA_DATA_PARTITIONS": "many"})
    assert "\n" not in str(err.value)


def test_password_never_printed() -> None:
    s = Settings.from_env({"ARANGO_PASSWORD": "hunter2"})
    assert "hunter2" not in repr(s)
    assert s.redacted()["arango_password"] == "***"


def test_every_setting_documented_in_readme() -> None:
    text = README.read_text()
    missing = [var for var in ENV_VARS if f"`{var}`" not in text]
    assert missing == []
