"""The instance configuration StreamForge writes into ``DAGSTER_HOME``: Dagster reads it as the
pool ``binance`` limited to ``EXCHANGE_LOAD_SLOTS`` at run granularity behind the queued
coordinator; a ``dagster.yaml`` of the user's own is left alone."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from streamforge_pipelines.instance_config import MARKER, write_instance_config
from streamforge_pipelines.settings import Settings


def test_dagster_reads_the_pool_limit_and_the_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert write_instance_config(tmp_path, Settings(exchange_load_slots=3))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 3 and pools.pool_granularity.value == "run"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.event_log_storage.supports_global_concurrency_limits


def test_ours_is_rewritten_and_the_users_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "dagster.yaml"
    path.write_text("telemetry:\n  enabled: false\n")  # what earlier versions wrote
    assert write_instance_config(tmp_path, Settings(exchange_load_slots=5))
    assert path.read_text().startswith(MARKER) and "default_limit: 5" in path.read_text()
    assert write_instance_config(tmp_path, Settings(exchange_load_slots=1))
    assert "default_limit: 1" in path.read_text()
    own = "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
    path.write_text(own)
    assert not write_instance_config(tmp_path, Settings())
    assert path.read_text() == own
