"""The ``gnn_model`` Dagster asset: a partition range of stored snapshots -> a trained, saved and
registered GNN with its baselines' metrics; too few snapshots -> one clear line."""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import torch

from streamforge_pipelines.analytics.gnn import GNNConfig, TemporalGNN
from streamforge_pipelines.analytics.graph_builder import GraphParams, snapshot_id
from streamforge_pipelines.analytics.graph_store import list_snapshot_ids, write_snapshot
from streamforge_pipelines.analytics.synthetic import synthetic_snapshots
from streamforge_pipelines.analytics.training import _splits_fit, required_snapshots
from streamforge_pipelines.assets.gnn import gnn_model
from streamforge_pipelines.intervals import day_start_ms
from streamforge_pipelines.models import ModelIntegrityError, from_settings
from streamforge_pipelines.resources import resources_for
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.store import store_from_settings

DAY = date(2025, 3, 1)
DAYS = 4  # snapshots stored for four days; the asset trains on the first three
HOUR_MS = 3_600_000
ASSETS = 10
#: Small and fast on 2 CPU cores; the GNN's ground truth is tested in test_gnn.py.
TRAIN = {"hidden": 8, "epochs": 12, "window": 4, "seed": 0, "device": "cpu"}


def range_tags(first: date, last: date) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A SQLite store with hourly planted snapshots (``as_of`` every hour of DAYS days), stored as
    the graph-builder stores them, and the local model store under the same data directory."""
    monkeypatch.delenv("ARANGO_URL", raising=False)
    monkeypatch.delenv("MINIO_ENDPOINT", raising=False)
    window = 12
    start = day_start_ms(DAY) - (window + 1) * HOUR_MS  # the first snapshot is at DAY 00:00
    snaps, _ = synthetic_snapshots(
        ASSETS, DAYS * 24, planted=True, window=window, start_ms=start, period_ms=HOUR_MS, seed=3
    )
    params = GraphParams(interval="1m", measure="pearson")
    settings = Settings.from_env(data_dir=tmp_path / "data")
    with store_from_settings(settings) as db:
        for s in snaps:
            sid = snapshot_id(params, s.as_of_ms)
            write_snapshot(
                db, dataclasses.replace(s, snapshot_id=sid, params={**s.params, "measure": "pearson"})
            )
        assert len(list_snapshot_ids(db)) == DAYS * 24
    yield settings


def materialize(
    settings: Settings, first: date, last: date, instance: dg.DagsterInstance, **config: Any
) -> dg.ExecuteInJobResult:
    return dg.materialize(
        [gnn_model],
        resources=resources_for(settings),
        run_config={"ops": {"gnn_model": {"config": {**TRAIN, **config}}}},
        tags=range_tags(first, last),
        instance=instance,
        raise_on_error=False,
    )


def failure_message(result: dg.ExecuteInJobResult) -> str:
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    data = failure.event_specific_data
    assert data is not None and data.error is not None
    return str(data.error.message).removeprefix("dagster._core.definitions.events.Failure: ").strip()


def test_a_range_trains_saves_and_registers_the_gnn(stored: Settings) -> None:
    settings = stored
    last = DAY + timedelta(days=2)
    with dg.instance_for_test() as instance:
        result = materialize(settings, DAY, last, instance)
        assert result.success, failure_message(result)
        # One run for the range: a materialization of every partition, with the same metadata.
        mats = result.asset_materializations_for_node("gnn_model")
        assert [m.partition for m in mats] == [(DAY + timedelta(days=k)).isoformat() for k in range(3)]
        meta = {k: v.value for k, v in mats[0].metadata.items()}
        assert all({k: v.value for k, v in m.metadata.items()} == meta for m in mats)

    # Only the snapshots of the three days (the fourth day is outside the range).
    assert meta["snapshots"] == 72 and meta["nodes"] == ASSETS
    assert meta["device"] == "cpu" and meta["epochs"] >= 3 and meta["seconds_per_epoch"] > 0
    table = meta["metrics"]
    assert isinstance(table, str) and table.startswith("| model | accuracy | MCC | F1 |")
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert list(rows) == ["gnn", "nograph", "persistence", "majority"]
    per_asset = meta["per_asset"]
    assert isinstance(per_asset, str) and per_asset.startswith("| asset | gnn MCC | nograph MCC | samples |")
    mccs = [float(line.split("|")[2]) for line in per_asset.splitlines()[2:]]
    assert len(mccs) == ASSETS and mccs == sorted(mccs, reverse=True)  # one row per asset, best first
    pic = meta["training_curves"]
    assert isinstance(pic, str) and pic.startswith("![training curves](data:image/png;base64,")
    png = base64.b64decode(pic.split("base64,", 1)[1].rstrip(")"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000

    # The model is in the local model store under the data dir, loadable, its sha checked.
    model_store = from_settings(settings)
    uri = meta["model_uri"]
    assert isinstance(uri, str) and uri.startswith("file://")
    assert Path(settings.models_dir).resolve() in Path(uri.removeprefix("file://")).resolve().parents
    payload, manifest = model_store.load(uri)
    assert manifest.name == "gnn" and manifest.version == meta["model_version"]
    assert (
        manifest.code_version and manifest.config["hidden"] == 8 and manifest.config["measure"] == "pearson"
    )
    assert manifest.data_range["partitions"] == [DAY.isoformat(), last.isoformat()]
    assert manifest.data_range["snapshots"] == 72
    assert manifest.data_range["first_snapshot"] == "2025-03-01T00:00:00Z"
    assert manifest.data_range["last_snapshot"] == "2025-03-03T23:00:00Z"
    test = manifest.metrics["test"]
    assert set(test) == {"gnn", "nograph", "persistence", "majority"}
    best = max(v["mcc"] for m, v in test.items() if m != "gnn")
    assert manifest.metrics["mcc_margin"] == pytest.approx(test["gnn"]["mcc"] - best)
    assert meta["mcc_margin"] == pytest.approx(manifest.metrics["mcc_margin"], abs=1e-4)
    assert (
        f"{test['gnn']['mcc']:+.3f}" in rows["gnn"] and f"{test['majority']['mcc']:+.3f}" in rows["majority"]
    )

    saved = torch.load(io.BytesIO(payload), weights_only=True)
    model = TemporalGNN(saved["in_features"], 8, conv="graph", use_graph=True, dropout=0.0)
    model.load_state_dict(saved["state_dict"])  # strict: the saved GNN rebuilds exactly
    assert len(saved["symbols"]) == ASSETS and len(saved["feature_mean"]) == saved["in_features"]

    # The registry record in the store carries the same metrics and data range.
    with store_from_settings(settings) as db:
        (record,) = db.list_model_records("gnn")
    assert record.uri == uri and record.sha256 == manifest.sha256
    assert record.metrics["test"] == test and record.data_range == manifest.data_range

    # A corrupted payload is refused on load (the manifest's sha256 is checked).
    path = Path(uri.removeprefix("file://")) / "model.pt"
    path.chmod(0o644)
    path.write_bytes(payload[:-1] + bytes([payload[-1] ^ 1]))
    with pytest.raises(ModelIntegrityError):
        model_store.load(uri)


def test_too_few_snapshots_fail_with_one_clear_line(stored: Settings) -> None:
    settings = stored
    need = required_snapshots(GNNConfig(window=4))
    assert need > 24
    with dg.instance_for_test() as instance:
        result = materialize(settings, DAY, DAY, instance)
        message = failure_message(result)
        assert "\n" not in message, message
        assert message.startswith(f"gnn_model {DAY.isoformat()}: 24 corr:1m:pearson:* snapshots")
        assert f"need at least {need}" in message
        # An empty range (no snapshots of spearman) says so too; a bad config is one line as well.
        last = DAY + timedelta(days=2)
        empty = failure_message(materialize(settings, DAY, last, instance, measure="spearman"))
        assert "\n" not in empty and ": 0 corr:1m:spearman:* snapshots" in empty
        bad = failure_message(materialize(settings, DAY, last, instance, conv="cheb"))
        assert bad == f"gnn_model {DAY.isoformat()}..{last.isoformat()}: " + (
            "conv must be one of graph, gcn, gat, not 'cheb'"
        )
    with store_from_settings(settings) as db:
        assert db.list_model_records("gnn") == []


@pytest.mark.parametrize("window, folds", [(4, 3), (2, 1), (8, 5)])
def test_required_snapshots_is_a_floor_above_which_the_splits_always_fit(window: int, folds: int) -> None:
    cfg = GNNConfig(window=window, folds=folds)
    need = required_snapshots(cfg)
    assert not _splits_fit(cfg, need - 1)
    assert all(_splits_fit(cfg, end) for end in range(need, 10 * need))
