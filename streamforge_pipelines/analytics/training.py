"""gnn-trainer over a range of stored snapshots: read, check, train with baselines, save, register.

:func:`train_range` is what the ``gnn_model`` Dagster asset (and any other caller) runs: it reads
the correlation-graph snapshots of ``[start_ms, end_ms)`` from the store
(:func:`~.graph_store.read_snapshots`), refuses with :class:`TooFewSnapshots` (one line: how many
exist, how many the walk-forward splits need) when there are too few, trains the temporal GNN and
its baselines in the same run (:func:`~.gnn.train_and_evaluate`), saves the GNN through the model
store with its config, metrics, data range and code version and writes the registry record
(:func:`~streamforge_pipelines.models.save_and_register`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import torch

from ..models import ModelRef, ModelStore, save_and_register
from ..store import Store
from .evaluation import walk_forward_splits
from .gnn import MODELS, GNNConfig, TrainingReport, resolve_device, train_and_evaluate
from .graph_builder import MEASURES, snapshot_prefix
from .graph_store import read_snapshots
from .snapshot import GraphSnapshot

CONVS = ("graph", "gcn", "gat")
GNN = "gnn"


class TooFewSnapshots(ValueError):
    """The range holds too few labelled snapshots for the walk-forward splits."""


@dataclass(frozen=True)
class TrainingSpec:
    """Which snapshots to train on, how, and under which model name."""

    interval: str = "1m"
    measure: str = "pearson"
    model_name: str = GNN
    gnn: GNNConfig = field(default_factory=GNNConfig)

    def validate(self) -> None:
        """ValueError with the first bad field."""
        cfg = self.gnn
        if self.measure not in MEASURES:
            raise ValueError(f"measure must be one of {', '.join(MEASURES)}, not {self.measure!r}")
        if cfg.conv not in CONVS:
            raise ValueError(f"conv must be one of {', '.join(CONVS)}, not {cfg.conv!r}")
        for name in ("window", "hidden", "epochs", "folds", "batch_size"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(cfg, name)}")
        if not 0.0 < cfg.test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), not {cfg.test_fraction}")
        try:
            device = resolve_device(cfg.device)
        except RuntimeError as exc:
            raise ValueError(f"device {cfg.device!r}: {exc}") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {cfg.device!r}: CUDA is not available here (use auto or cpu)")


def _splits_fit(cfg: GNNConfig, end: int) -> bool:
    try:
        walk_forward_splits(
            cfg.window - 1,
            end,
            folds=cfg.folds,
            test_fraction=cfg.test_fraction,
            gap=cfg.resolved_gap(),
            val_size=cfg.val_size,
            rolling=cfg.rolling,
        )
    except ValueError:
        return False
    return True


def required_snapshots(cfg: GNNConfig) -> int:
    """The least ``K`` such that the splits of :func:`train_and_evaluate` fit whenever the last
    labelled snapshot is at position ``K - 1`` or later (the fit is not monotone near the minimum:
    a longer range may enlarge the test blocks by more than it adds, so this scans past it)."""
    first_fit = next(end for end in range(1, 1_000_000) if _splits_fit(cfg, end))
    upper = 4 * first_fit + 100
    failing = [end for end in range(first_fit, upper) if not _splits_fit(cfg, end)]
    return (failing[-1] if failing else first_fit - 1) + 1


def usable_span(snapshots: list[GraphSnapshot]) -> int:
    """Position of the last snapshot with a target, plus one (what the splits are cut from)."""
    labelled = [i for i, s in enumerate(snapshots) if s.next_return is not None]
    return labelled[-1] + 1 if labelled else 0


def check_enough(snapshots: list[GraphSnapshot], spec: TrainingSpec) -> None:
    """:class:`TooFewSnapshots` (one line; the caller names the range) unless the splits fit."""
    cfg = spec.gnn
    span = usable_span(snapshots)
    if span and _splits_fit(cfg, span):
        return
    need = required_snapshots(cfg)
    raise TooFewSnapshots(
        f"{len(snapshots)} {snapshot_prefix(spec.interval, spec.measure)}* snapshots "
        f"({span} up to the last one with a next-period target), but the walk-forward splits "
        f"(window {cfg.window}, {cfg.folds} folds, test_fraction {cfg.test_fraction}) need at least "
        f"{need}: materialize correlation_graph for more days, a finer cadence, or fewer folds"
    )


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def mcc_margin(report: TrainingReport, model: str = GNN) -> tuple[float, str]:
    """``(mcc of model - best baseline mcc, best baseline)`` over the pooled test blocks."""
    test = report.test_metrics()
    baselines = {m: v["mcc"] for m, v in test.items() if m != model}
    if model not in test or not baselines:
        return float("nan"), ""
    best = max(baselines, key=lambda m: baselines[m])
    return test[model]["mcc"] - baselines[best], best


def per_asset_table(report: TrainingReport) -> str:
    """Markdown table of the test MCC of the GNN and the no-graph network per asset, best first."""
    gnn, nograph = report.per_asset.get(GNN, {}), report.per_asset.get("nograph", {})
    rows = ["| asset | gnn MCC | nograph MCC | samples |", "|---|---:|---:|---:|"]
    for symbol in sorted(gnn, key=lambda s: -gnn[s]["mcc"]):
        other = f"{nograph[symbol]['mcc']:+.3f}" if symbol in nograph else "-"
        rows.append(f"| {symbol} | {gnn[symbol]['mcc']:+.3f} | {other} | {int(gnn[symbol]['n'])} |")
    return "\n".join(rows)


def metrics_table(report: TrainingReport) -> str:
    """Markdown table of the test accuracy / MCC / F1 of every model, the GNN first."""
    test = report.test_metrics()
    order = [m for m in MODELS if m in test] + sorted(m for m in test if m not in MODELS)
    rows = ["| model | accuracy | MCC | F1 |", "|---|---:|---:|---:|"]
    for m in order:
        v = test[m]
        rows.append(f"| {m} | {v['accuracy']:.3f} | {v['mcc']:+.3f} | {v['f1']:.3f} |")
    return "\n".join(rows)


@dataclass
class TrainingOutcome:
    """What :func:`train_range` produced."""

    ref: ModelRef
    report: TrainingReport
    snapshots: int
    start_ms: int
    end_ms: int
    margin: float
    best_baseline: str

    @property
    def uri(self) -> str:
        return self.ref.uri

    @property
    def edge(self) -> dict[str, Any]:
        """The verdict on the GNN against its baselines (:func:`~.gnn.edge_verdict`)."""
        return self.report.edge

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the run summary's ``model_uri`` and ``models`` and what goes with them."""
        return {
            "model_uri": self.uri,
            "models": self.report.test_metrics(),
            "mcc_margin": self.margin,
            "best_baseline": self.best_baseline,
            "edge": self.edge,
            "snapshots": self.snapshots,
            "device": self.report.device,
        }


def train_range(
    store: Store,
    model_store: ModelStore,
    start_ms: int,
    end_ms: int,
    spec: TrainingSpec,
    *,
    extra_range: dict[str, Any] | None = None,
) -> TrainingOutcome:
    """Train on the stored snapshots of ``[start_ms, end_ms)``, save and register the GNN.

    ValueError for a bad ``spec``; :class:`TooFewSnapshots` when the range cannot be split.
    """
    spec.validate()
    snapshots = read_snapshots(store, start_ms, end_ms, interval=spec.interval, measure=spec.measure)
    check_enough(snapshots, spec)
    report = train_and_evaluate(snapshots, spec.gnn)
    margin, best = mcc_margin(report)
    config = {
        **report.config,
        "interval": spec.interval,
        "measure": spec.measure,
        "feature_names": report.feature_names,
        "symbols": report.symbols,
        "num_nodes": report.num_nodes,
        "device_used": report.device,
    }
    metrics = {
        "test": report.test_metrics(),
        "mcc_margin": margin,
        "best_baseline": best,
        "edge": report.edge,
        "per_asset": report.per_asset,
        "num_samples": report.num_samples,
        "epochs": report.epochs,
        "best_epochs": report.best_epochs,
        "seconds_per_epoch": report.seconds_per_epoch,
        "per_split": report.metrics,
    }
    first_ms, last_ms = report.data_range_ms
    data_range = {
        "start": iso(start_ms),
        "end": iso(end_ms),
        "start_ms": start_ms,
        "end_ms": end_ms,
        "first_snapshot": iso(first_ms),
        "last_snapshot": iso(last_ms),
        "snapshots": len(snapshots),
        "snapshot_prefix": snapshot_prefix(spec.interval, spec.measure),
        "splits": report.splits,
        **(extra_range or {}),
    }
    ref = save_and_register(
        model_store,
        store,
        spec.model_name,
        report.model_bytes(),
        config=config,
        metrics=metrics,
        data_range=data_range,
    )
    return TrainingOutcome(ref, report, len(snapshots), start_ms, end_ms, margin, best)
