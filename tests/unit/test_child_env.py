"""Children of the local stack get only the settings their role needs (no secrets they do not use)."""

from __future__ import annotations

from pathlib import Path

from streamforge_pipelines.settings import Settings
from streamforge_pipelines.stack import child_env

SECRETS = {
    "arango_url": "http://root:arango-pw@db:8529",
    "arango_password": "arango-pw",
    "minio_endpoint": "minio:9000",
    "minio_access_key": "minio-user",
    "minio_secret_key": "minio-pw",
}


def _settings() -> Settings:
    return Settings.from_env(
        {}, data_dir=Path("/tmp/sf"), kafka_bootstrap_servers="127.0.0.1:9092", **SECRETS
    )


def test_the_simulator_sees_no_store_or_object_store_setting(monkeypatch) -> None:
    monkeypatch.setenv("ARANGO_PASSWORD", "inherited-pw")  # set in the parent's own environment too
    monkeypatch.setenv("SIMULATOR_SEED", "7")
    env = child_env(_settings(), "simulator")
    joined = "\n".join(f"{k}={v}" for k, v in env.items())
    for secret in ("arango-pw", "minio-user", "minio-pw", "inherited-pw"):
        assert secret not in joined
    assert not any(k.startswith(("ARANGO_", "MINIO_", "KAFKA_", "EXCHANGE_")) for k in env)
    assert env["SIMULATOR_SEED"] == "42"  # the settings' value, not the inherited variable
    assert "PATH" in env  # the rest of the environment is kept


def test_the_connector_sees_kafka_and_the_store_only() -> None:
    env = child_env(_settings(), "connector", {"METRICS_PORT": "9100"})
    assert env["ARANGO_PASSWORD"] == "arango-pw"
    assert env["ARANGO_URL"] == SECRETS["arango_url"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"
    assert env["STREAMFORGE_DATA_DIR"] == "/tmp/sf"
    assert env["METRICS_PORT"] == "9100"
    assert not any(k.startswith(("MINIO_", "EXCHANGE_", "SIMULATOR_")) for k in env)


def test_the_stream_worker_sees_kafka_the_exchange_and_its_live_settings_only() -> None:
    settings = _settings().model_copy(
        update={"exchange_url": "http://127.0.0.1:8090", "live_heartbeat_s": 2.0}
    )
    env = child_env(settings, "streams", {"METRICS_PORT": "9101"})
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"
    assert env["EXCHANGE_URL"] == "http://127.0.0.1:8090"
    assert env["LIVE_HEARTBEAT_S"] == "2.0" and env["METRICS_PORT"] == "9101"
    assert not any(k.startswith(("ARANGO_", "MINIO_", "SIMULATOR_", "STREAMFORGE_")) for k in env)
