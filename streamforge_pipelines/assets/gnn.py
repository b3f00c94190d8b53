"""``gnn_model``: the temporal GNN trained over a range of correlation-graph snapshots.

A daily-partitioned asset downstream of ``correlation_graph`` whose backfill of a date range is one
run (``BackfillPolicy.single_run``): the range of the run's partitions is the training data. It
trains the GNN and its baselines on the walk-forward splits, saves the GNN in the model store
(local directory, or MinIO when ``MINIO_ENDPOINT`` is set) and registers it in the store. The logic
lives in :mod:`streamforge_pipelines.analytics.training`; this is the Dagster wrapper.
"""

import base64
import math
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from ..analytics.evaluation import edge_sentence
from ..analytics.graph_builder import MEASURES
from ..models import ModelStore
from ..names import ANALYTICS_GROUP, CORRELATION_GRAPH, GNN_MODEL
from ..partitions import CANDLE_INTERVALS, DAILY, partition_span
from ..store import Store

if TYPE_CHECKING:  # torch is imported when the asset runs, not when the definitions load
    from ..analytics.training import TrainingOutcome, TrainingSpec


class GNNTrainConfig(dg.Config):
    interval: str = Field(default="1m", description=f"Snapshots of interval {', '.join(CANDLE_INTERVALS)}")
    measure: str = Field(default="pearson", description=f"Snapshots of this measure: {', '.join(MEASURES)}")
    model_name: str = Field(default="gnn", description="Name of the model in the model store")
    window: int = Field(default=4, description="Snapshots per sample fed to the GRU")
    hidden: int = Field(default=32, description="Hidden size of the convolution and the GRU")
    epochs: int = Field(default=40, description="Maximum epochs per fold (early stopping on validation)")
    conv: str = Field(default="graph", description="graph (GraphConv), gcn (GCNConv) or gat (GATConv)")
    folds: int = Field(default=3, description="Walk-forward folds")
    test_fraction: float = Field(default=0.4, description="Share of the samples in the test blocks")
    seed: int = Field(default=0, description="Seed (deterministic on CPU)")
    device: str = Field(default="auto", description="auto (CUDA when available), cpu or cuda[:n]")
    relations: bool = Field(
        default=True, description="One convolution for correlation edges and one for lead-lag edges"
    )

    def spec(self) -> "TrainingSpec":
        from ..analytics.gnn import GNNConfig
        from ..analytics.training import TrainingSpec

        gnn = GNNConfig(
            window=self.window,
            hidden=self.hidden,
            epochs=self.epochs,
            conv=self.conv,
            folds=self.folds,
            test_fraction=self.test_fraction,
            seed=self.seed,
            device=self.device,
            relations=self.relations,
        )
        return TrainingSpec(interval=self.interval, measure=self.measure, model_name=self.model_name, gnn=gnn)


def gnn_metadata(outcome: "TrainingOutcome") -> dict[str, dg.MetadataValue]:
    """The materialization's metadata: the model's URI, test metrics beside the baselines, the MCC
    margin, timing and the training curves."""
    from ..analytics.training import metrics_table, per_asset_table

    report = outcome.report
    png = base64.b64encode(report.curves_png()).decode()
    gnn = report.test_metrics().get("gnn", {})
    edge = outcome.edge
    nograph = edge.get("vs_nograph", {})
    return {
        "model_uri": dg.MetadataValue.text(outcome.uri),
        "model_version": dg.MetadataValue.text(outcome.ref.version),
        "metrics": dg.MetadataValue.md(metrics_table(report)),
        "per_asset": dg.MetadataValue.md(per_asset_table(report)),
        "gnn_mcc": dg.MetadataValue.float(float(gnn.get("mcc", math.nan))),
        "mcc_margin": dg.MetadataValue.float(round(outcome.margin, 4)),
        "best_baseline": dg.MetadataValue.text(outcome.best_baseline),
        "edge_claimed": dg.MetadataValue.bool(bool(edge.get("claimed", False))),
        "mcc_margin_low": dg.MetadataValue.float(round(float(edge.get("low", math.nan)), 4)),
        "mcc_margin_high": dg.MetadataValue.float(round(float(edge.get("high", math.nan)), 4)),
        "mcc_margin_nograph": dg.MetadataValue.float(round(float(nograph.get("margin", math.nan)), 4)),
        "mcc_margin_nograph_low": dg.MetadataValue.float(round(float(nograph.get("low", math.nan)), 4)),
        "mcc_margin_nograph_high": dg.MetadataValue.float(round(float(nograph.get("high", math.nan)), 4)),
        "epochs": dg.MetadataValue.int(sum(report.epochs.get("gnn", []))),
        "seconds_per_epoch": dg.MetadataValue.float(round(report.seconds_per_epoch.get("gnn", 0.0), 4)),
        "device": dg.MetadataValue.text(report.device),
        "snapshots": dg.MetadataValue.int(outcome.snapshots),
        "nodes": dg.MetadataValue.int(report.num_nodes),
        "test_samples": dg.MetadataValue.int(report.num_samples),
        "training_curves": dg.MetadataValue.md(f"![training curves](data:image/png;base64,{png})"),
    }


@dg.asset(
    name=GNN_MODEL,
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=ANALYTICS_GROUP,
    deps=[dg.AssetKey(CORRELATION_GRAPH)],
    kinds={"pytorch"},
    description="Temporal GNN (graph convolution per snapshot + GRU) predicting each asset's next-period "
    "direction, trained over the snapshots of the run's date range with walk-forward splits, scored "
    "beside the majority, persistence and no-graph baselines; saved in the model store and registered.",
)
def gnn_model(
    context: dg.AssetExecutionContext,
    config: GNNTrainConfig,
    store: dg.ResourceParam[Store],
    models: dg.ResourceParam[ModelStore],
) -> dg.MaterializeResult:
    span = partition_span(context)
    start_ms, end_ms = span.range_ms
    from ..analytics.training import train_range

    try:
        outcome = train_range(
            store,
            models,
            start_ms,
            end_ms,
            config.spec(),
            extra_range={"partitions": [span.first.isoformat(), span.last.isoformat()]},
        )
    except ValueError as exc:  # a bad config or too few snapshots: one clear line
        raise dg.Failure(f"{GNN_MODEL} {span.label}: {exc}") from exc
    context.log.info(
        f"{outcome.uri}: {outcome.snapshots} snapshots, gnn MCC margin {outcome.margin:+.3f} over "
        f"{outcome.best_baseline} on {outcome.report.num_samples} test samples ({outcome.report.device}); "
        + edge_sentence(outcome.edge)
    )
    return dg.MaterializeResult(metadata=gnn_metadata(outcome))
