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
        "sf.book.v1": 4,
        "sf.book.v1.dlq": 1,
        "sf.book-diffs.v1": 4,
        "sf.book-diffs.v1.dlq": 1,
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


def test_simulator_config_is_a_path_read_where_the_simulator_starts(tmp_path: Path) -> None:
    """Settings keep ``SIMULATOR_CONFIG`` as a path (empty: unset) and never read the file: the
    check is :func:`~streamforge_pipelines.preflight.check_simulator_config` (tests/e2e/
    test_ground_truth.py, tests/cli/test_run_errors.py); the bottom layer imports no simulator."""
    import subprocess
    import sys

    assert Settings.from_env({}, simulator_config="").simulator_config is None
    assert Settings.from_env({"SIMULATOR_CONFIG": " "}).simulator_config is None
    missing = tmp_path / "missing.yaml"
    assert Settings.from_env({"SIMULATOR_CONFIG": str(missing)}).simulator_config == missing
    code = (
        "import sys; import streamforge_pipelines.settings; "
        "sys.exit(any(m.startswith('streamforge_pipelines.simulator') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
