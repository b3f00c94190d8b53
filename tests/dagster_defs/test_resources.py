"""The resources: settings resolved once per step (from the environment, or the runner's Settings
object as it is), a store that is open while a step runs and closed after it, the model store the
settings describe, and secrets that Dagster shows as environment variable names, never as values."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from dagster._core.remote_representation.external_data import RepositorySnap  # what the UI is sent

from streamforge_pipelines.definitions import build_definitions
from streamforge_pipelines.models import LocalModelStore, ModelStore
from streamforge_pipelines.resources import SECRETS, SettingsResource, resources_for, secret_refs
from streamforge_pipelines.settings import ENV_VARS, Settings
from streamforge_pipelines.store import SqliteStore, Store, StoreError

SECRET_VARS = {"arango_password": "ARANGO_PASSWORD", "minio_access_key": "MINIO_ACCESS_KEY"}


def _seen_by_a_step(resources: dict[str, object]) -> dict[str, object]:
    """What an asset's step receives as ``settings``, ``store`` and ``models``, and whether the store
    was still open in the step (and is closed after it)."""
    seen: dict[str, object] = {}

    @dg.asset
    def probe(
        settings: dg.ResourceParam[Settings],
        store: dg.ResourceParam[Store],
        models: dg.ResourceParam[ModelStore],
    ) -> None:
        seen.update(settings=settings, store=store, models=models, tasks=store.list_tasks())

    assert dg.materialize([probe], resources=resources).success
    return seen


def test_the_runner_hands_its_settings_object_to_the_steps(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path / "data", universe="BTCUSDT", task_stall_s=7.0)
    seen = _seen_by_a_step(resources_for(settings))
    assert seen["settings"] == settings  # as it is: nothing went through os.environ
    store = seen["store"]
    assert isinstance(store, SqliteStore) and seen["tasks"] == []
    assert Path(store.path) == settings.sqlite_path
    with pytest.raises(StoreError, match="closed"):
        store.list_tasks()  # closed after the step
    models = seen["models"]
    assert isinstance(models, LocalModelStore) and models.root == settings.models_dir.resolve()


def test_from_the_environment_with_explicit_config_on_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARANGO_URL", raising=False)
    monkeypatch.setenv("STREAMFORGE_DATA_DIR", str(tmp_path / "env-data"))
    monkeypatch.setenv("STREAMFORGE_UNIVERSE", "ETHUSDT,SOLUSDT")
    monkeypatch.setenv("KAFKA_TOPIC_EVENTS", "events-from-env")
    resources = resources_for()
    seen = _seen_by_a_step(resources)
    settings = seen["settings"]
    assert isinstance(settings, Settings)
    assert settings.universe == ("ETHUSDT", "SOLUSDT") and settings.topic_events == "events-from-env"
    assert settings.data_dir == tmp_path / "env-data"
    # Explicit config (a deployment's, or the UI's launchpad) wins over the environment.
    explicit = SettingsResource(data_dir=str(tmp_path / "cfg-data"), topic_events="events-from-config")
    resources = {**resources, "settings": explicit}
    resources["store"] = type(resources["store"])(settings=explicit)
    seen = _seen_by_a_step(resources)
    settings = seen["settings"]
    assert isinstance(settings, Settings)
    assert settings.topic_events == "events-from-config" and settings.universe == ("ETHUSDT", "SOLUSDT")
    assert Path(seen["store"].path) == tmp_path / "cfg-data" / "streamforge.db"  # type: ignore[attr-defined]


def test_secrets_are_shown_as_environment_variable_names_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARANGO_URL", raising=False)
    monkeypatch.setenv("STREAMFORGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ARANGO_PASSWORD", "hunter2-arango")
    monkeypatch.setenv("MINIO_ACCESS_KEY", "hunter2-minio")
    monkeypatch.delenv("MINIO_SECRET_KEY", raising=False)
    refs = secret_refs()
    # Set secrets become references; an unset one is left out (Dagster fails a run on an unset EnvVar).
    assert {k: v.env_var_name for k, v in refs.items()} == SECRET_VARS
    snap = RepositorySnap.from_def(build_definitions(resources_for()).get_repository_def())
    (shown,) = [r.configured_values for r in snap.resources if r.name == "settings"]
    for name, var in SECRET_VARS.items():
        assert getattr(shown[name], "name", None) == var, shown[name]
    assert "hunter2" not in repr(snap.resources)
    # In the step, the reference is the secret's value.
    seen = _seen_by_a_step(resources_for())
    settings = seen["settings"]
    assert isinstance(settings, Settings)
    assert settings.arango_password == "hunter2-arango" and settings.minio_access_key == "hunter2-minio"
    # The runner's Settings object is handed over as a value: none of its fields is shown as config.
    runner = Settings.from_env({}, data_dir=tmp_path / "data", arango_password="hunter2-runner")
    snap = RepositorySnap.from_def(build_definitions(resources_for(runner)).get_repository_def())
    assert "hunter2" not in repr(snap.resources)


def test_the_settings_resource_fields_are_settings() -> None:
    """Each config field is a setting of the same name (so it overrides exactly that setting), and
    every secret is one of them."""
    fields = set(SettingsResource.model_fields)
    assert fields <= set(Settings.model_fields)
    assert set(SECRETS) <= fields
    assert {field for field, _ in ENV_VARS.values()} >= fields
