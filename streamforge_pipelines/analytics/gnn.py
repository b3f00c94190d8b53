"""gnn-trainer core: a temporal GNN over graph snapshots, walk-forward evaluated against baselines.

:func:`train_and_evaluate` takes a time-ordered list of :class:`GraphSnapshot` and predicts, for each
asset and snapshot ``t``, whether its ``next_return`` is positive (up = 1). The model
(:class:`TemporalGNN`) runs a graph convolution over each of the last ``window`` snapshots (edge
weights used), a GRU over those per-node embeddings and a linear classifier per node. With
``relations`` (the default) correlation edges (``edge_lag`` 0: co-movement) and directed lead-lag
edges (``edge_lag`` > 0: a leader's past moves a follower) get a convolution each, summed, as in a
relational GCN: the two kinds of edge carry different information, and one shared weight would
blur the lead-lag signal with the much more numerous correlation edges.

In every walk-forward fold (:func:`~.evaluation.walk_forward_splits`: train, gap, validation, gap,
test, in time order) it trains and scores, on the same samples:

* ``gnn`` — the temporal GNN;
* ``nograph`` — the same network with the graph convolution replaced by a per-node linear layer
  (exactly the convolution's root term: the only difference is the neighbours);
* ``persistence`` — next direction = sign of the current period's return;
* ``majority`` — the majority class of the fold's training targets.

Features are standardised with statistics of the snapshots the training samples read only; the
validation block picks the epoch (early stopping) and never trains. Snapshots whose
``next_return`` is ``None`` are never trained on or scored. Deterministic on CPU for a seed; runs on
CUDA when available (``device="auto"``).
"""

from __future__ import annotations

import io
import itertools
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, GraphConv

from streamforge_pipelines.analytics.evaluation import (
    Split,
    binary_metrics,
    curves_png,
    mcc_margin_interval,
    walk_forward_splits,
)
from streamforge_pipelines.analytics.snapshot import GraphSnapshot

MODELS = ("gnn", "nograph", "persistence", "majority")
#: Feature names tried, in order, for the persistence baseline's "current period return".
RETURN_FEATURE_CANDIDATES = ("ret_1", "return_1", "log_return", "last_return", "return", "ret")


@dataclass
class GNNConfig:
    """Everything that shapes a training run (stored with the model)."""

    window: int = 4  # snapshots per sample fed to the GRU
    hidden: int = 32
    conv: str = "graph"  # graph (GraphConv) | gcn (GCNConv, |weight|) | gat (GATConv, weight as edge attr)
    dropout: float = 0.1
    epochs: int = 40
    batch_size: int = 32  # target snapshots per batch
    lr: float = 5e-3
    weight_decay: float = 1e-4
    patience: int | None = 8  # early stopping on validation loss; None = train all epochs
    folds: int = 3
    test_fraction: float = 0.4
    val_size: int | None = None  # samples; None = one test block
    gap: int | None = None  # samples between train/val and val/test; None = window
    rolling: int | None = None  # training window in samples; None = expanding
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda[:n]
    persistence_feature: str | None = None  # None = first of RETURN_FEATURE_CANDIDATES present, else column 0
    relations: bool = True  # one convolution for correlation edges, one for lead-lag edges

    def resolved_gap(self) -> int:
        return self.window if self.gap is None else self.gap


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# --------------------------------------------------------------------------------------------- data


@dataclass
class SnapshotArrays:
    """The snapshots aligned on one node order (the union of their symbols, first-seen order)."""

    symbols: list[str]
    feature_names: list[str]
    as_of_ms: list[int]
    x: np.ndarray  # [T, N, F] float64, NaN where a node is absent
    present: np.ndarray  # [T, N] bool
    y: np.ndarray  # [T, N] float32 1 = up
    labelled: np.ndarray  # [T, N] bool: present with a finite next_return
    edge_index: list[np.ndarray]  # per snapshot [2, E] into ``symbols``
    edge_weight: list[np.ndarray]  # per snapshot [E]
    edge_type: list[np.ndarray]  # per snapshot [E]: 0 correlation, 1 lead-lag (edge_lag > 0)

    @property
    def num_snapshots(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[1])


def snapshot_arrays(snapshots: Sequence[GraphSnapshot]) -> SnapshotArrays:
    """Align ``snapshots`` (strictly increasing ``as_of_ms``, same feature names)."""
    if not snapshots:
        raise ValueError("no snapshots")
    names = list(snapshots[0].feature_names)
    as_of = [s.as_of_ms for s in snapshots]
    if any(b <= a for a, b in itertools.pairwise(as_of)):
        raise ValueError("snapshots must be in strictly increasing as_of_ms order")
    symbols: list[str] = []
    pos: dict[str, int] = {}
    for s in snapshots:
        if list(s.feature_names) != names:
            raise ValueError(f"snapshot {s.snapshot_id}: feature names differ from the first snapshot's")
        for sym in s.symbols:
            if sym not in pos:
                pos[sym] = len(symbols)
                symbols.append(sym)
    t_count, n, f = len(snapshots), len(symbols), len(names)
    x = np.full((t_count, n, f), np.nan)
    present = np.zeros((t_count, n), dtype=bool)
    y = np.zeros((t_count, n), dtype=np.float32)
    labelled = np.zeros((t_count, n), dtype=bool)
    edge_index: list[np.ndarray] = []
    edge_weight: list[np.ndarray] = []
    edge_type: list[np.ndarray] = []
    for t, s in enumerate(snapshots):
        idx = np.array([pos[sym] for sym in s.symbols], dtype=np.int64)
        x[t, idx] = np.asarray(s.features, dtype=np.float64).reshape(len(idx), f)
        present[t, idx] = True
        if s.next_return is not None:
            r = np.asarray(s.next_return, dtype=np.float64)
            finite = np.isfinite(r)
            y[t, idx] = (r > 0).astype(np.float32)
            labelled[t, idx] = finite
        ei = np.asarray(s.edge_index, dtype=np.int64).reshape(2, -1)
        edge_index.append(idx[ei] if ei.size else ei)
        edge_weight.append(np.asarray(s.edge_weight, dtype=np.float64).reshape(-1))
        lag = np.zeros(edge_weight[-1].shape, dtype=np.int64) if s.edge_lag is None else s.edge_lag
        edge_type.append((np.asarray(lag).reshape(-1) > 0).astype(np.int64))
    return SnapshotArrays(symbols, names, as_of, x, present, y, labelled, edge_index, edge_weight, edge_type)


def persistence_column(feature_names: Sequence[str], configured: str | None) -> int:
    if configured is not None:
        return list(feature_names).index(configured)
    for name in RETURN_FEATURE_CANDIDATES:
        if name in feature_names:
            return list(feature_names).index(name)
    return 0


# -------------------------------------------------------------------------------------------- model


class TemporalGNN(nn.Module):
    """Per-snapshot graph convolution -> GRU over the last ``window`` snapshots -> per-node logit.

    With ``use_graph=False`` the convolution becomes a per-node linear layer (the no-graph baseline).
    With ``relations`` a second convolution of the same kind runs over the lead-lag edges (edge type
    1) and is added to the first, which then sees the correlation edges (type 0) only.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        *,
        conv: str,
        use_graph: bool,
        dropout: float,
        relations: bool = True,
    ):
        super().__init__()
        self.conv_kind = conv
        self.use_graph = use_graph
        self.relations = relations and use_graph
        self.spatial: nn.Module
        self.lead: nn.Module | None = None
        if not use_graph:
            self.spatial = nn.Linear(in_features, hidden)
        else:
            self.spatial = _conv(conv, in_features, hidden)
            if self.relations:
                self.lead = _conv(conv, in_features, hidden)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def _convolve(self, layer: nn.Module, x: Tensor, edge_index: Tensor, edge_weight: Tensor) -> Tensor:
        if self.conv_kind == "gcn":
            return layer(x, edge_index, edge_weight.abs())
        if self.conv_kind == "gat":
            return layer(x, edge_index, edge_attr=edge_weight.view(-1, 1))
        return layer(x, edge_index, edge_weight)

    def embed(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor, edge_type: Tensor) -> Tensor:
        """``[S*N, F]`` node features of S stacked snapshots (a disjoint union) -> ``[S*N, H]``."""
        if not self.use_graph:
            h = self.spatial(x)
        elif self.lead is None:
            h = self._convolve(self.spatial, x, edge_index, edge_weight)
        else:
            corr, lead = edge_type == 0, edge_type > 0
            h = self._convolve(self.spatial, x, edge_index[:, corr], edge_weight[corr])
            h = h + self._convolve(self.lead, x, edge_index[:, lead], edge_weight[lead])
        return self.dropout(torch.relu(h))

    def forward(
        self, x: Tensor, edge_index: Tensor, edge_weight: Tensor, edge_type: Tensor, windows: Tensor, n: int
    ) -> Tensor:
        """Logits ``[B, N]``; ``windows`` ``[B, L]`` are positions into the S stacked snapshots."""
        h = self.embed(x, edge_index, edge_weight, edge_type).view(-1, n, self.head.in_features)  # [S, N, H]
        seq = h[windows]  # [B, L, N, H]
        b, length, _, hid = seq.shape
        seq = seq.permute(0, 2, 1, 3).reshape(b * n, length, hid)
        _, last = self.gru(seq)
        return self.head(self.dropout(last[-1])).view(b, n)


def _conv(kind: str, in_features: int, hidden: int) -> nn.Module:
    if kind == "graph":
        return GraphConv(in_features, hidden, aggr="add")
    if kind == "gcn":
        return GCNConv(in_features, hidden)
    if kind == "gat":
        return GATConv(in_features, hidden, heads=1, edge_dim=1)
    raise ValueError(f"unknown conv {kind!r} (graph, gcn, gat)")


class _DeviceData:
    """Standardised features and edges of one fold on the device, with the batch assembly."""

    def __init__(self, arrays: SnapshotArrays, mean: np.ndarray, std: np.ndarray, device: torch.device):
        x = (arrays.x - mean) / std
        x = np.where(np.isfinite(x), x, 0.0)
        self.n = arrays.num_nodes
        self.x = torch.tensor(x, dtype=torch.float32, device=device)  # [T, N, F]
        self.y = torch.tensor(arrays.y, device=device)
        self.labelled = torch.tensor(arrays.labelled, device=device)
        self.edge_index = [torch.tensor(e, dtype=torch.long, device=device) for e in arrays.edge_index]
        self.edge_weight = [torch.tensor(w, dtype=torch.float32, device=device) for w in arrays.edge_weight]
        self.edge_type = [torch.tensor(k, dtype=torch.long, device=device) for k in arrays.edge_type]
        self.device = device
        #: Snapshot indices read by :meth:`batch` (inputs and targets), for the no-look-ahead proof.
        self.touched: set[int] = set()

    def batch(
        self, targets: Sequence[int], window: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        needed = sorted({t - k for t in targets for k in range(window)})
        self.touched.update(needed)
        self.touched.update(targets)
        local = {s: i for i, s in enumerate(needed)}
        offsets = [self.edge_index[s] + i * self.n for i, s in enumerate(needed)]
        edge_index = torch.cat(offsets, dim=1)
        edge_weight = torch.cat([self.edge_weight[s] for s in needed])
        edge_type = torch.cat([self.edge_type[s] for s in needed])
        windows = torch.tensor(
            [[local[t - window + 1 + k] for k in range(window)] for t in targets],
            dtype=torch.long,
            device=self.device,
        )
        idx = torch.tensor(needed, dtype=torch.long, device=self.device)
        tgt = torch.tensor(list(targets), dtype=torch.long, device=self.device)
        x = self.x[idx].reshape(-1, self.x.shape[2])
        return x, edge_index, edge_weight, edge_type, windows, self.y[tgt], self.labelled[tgt]


@dataclass
class FitResult:
    state: dict[str, Tensor]
    train_loss: list[float]
    val_loss: list[float]
    best_epoch: int
    seconds: float
    epochs_run: int
    touched: set[int]


def _masked_bce(logits: Tensor, y: Tensor, mask: Tensor) -> Tensor:
    if not bool(mask.any()):
        return logits.sum() * 0.0
    return nn.functional.binary_cross_entropy_with_logits(logits[mask], y[mask])


def _loss_over(model: TemporalGNN, data: _DeviceData, samples: Sequence[int], cfg: GNNConfig) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(samples), max(cfg.batch_size, 64)):
            x, ei, ew, et, win, y, mask = data.batch(samples[i : i + max(cfg.batch_size, 64)], cfg.window)
            k = int(mask.sum())
            if k:
                total += float(_masked_bce(model(x, ei, ew, et, win, data.n), y, mask)) * k
                count += k
    return total / count if count else float("nan")


def fit_model(model: TemporalGNN, data: _DeviceData, split: Split, cfg: GNNConfig, seed: int) -> FitResult:
    """Train on ``split.train``; the validation loss picks the epoch (when ``cfg.patience``)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train = list(split.train)
    val = list(split.val)
    train_curve: list[float] = []
    val_curve: list[float] = []
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    best_val, best_epoch, since_best = float("inf"), 0, 0
    train_touched: set[int] = set()
    start = time.perf_counter()
    epochs_run = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=gen).tolist()
        total, count = 0.0, 0
        data.touched = set()
        for i in range(0, len(order), cfg.batch_size):
            targets = sorted(train[j] for j in order[i : i + cfg.batch_size])
            x, ei, ew, et, win, y, mask = data.batch(targets, cfg.window)
            k = int(mask.sum())
            if not k:
                continue
            loss = _masked_bce(model(x, ei, ew, et, win, data.n), y, mask)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * k
            count += k
        train_touched |= data.touched
        model.eval()
        train_curve.append(total / count if count else float("nan"))
        val_curve.append(_loss_over(model, data, val, cfg) if val else float("nan"))
        epochs_run = epoch
        if cfg.patience is None:
            continue
        if val_curve[-1] < best_val:
            best_val, best_epoch, since_best = val_curve[-1], epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            since_best += 1
            if since_best >= cfg.patience:
                break
    seconds = time.perf_counter() - start
    if cfg.patience is None:
        best_epoch = epochs_run
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(best_state, train_curve, val_curve, best_epoch, seconds, epochs_run, train_touched)


def _predict(model: TemporalGNN, data: _DeviceData, samples: Sequence[int], cfg: GNNConfig) -> np.ndarray:
    out: list[np.ndarray] = []
    with torch.no_grad():
        for i in range(0, len(samples), 64):
            x, ei, ew, et, win, _, _ = data.batch(samples[i : i + 64], cfg.window)
            out.append((model(x, ei, ew, et, win, data.n) > 0).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, data.n), dtype=bool)


@contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic algorithms for the run (warn-only where an op has none), restored afterwards."""
    was = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was, warn_only=was_warn)


# ------------------------------------------------------------------------------------------- report


@dataclass
class TrainingReport:
    """What a training run produced: per model, per split metrics; curves; timing; the final model."""

    config: dict[str, Any]
    device: str
    splits: list[dict[str, Any]]
    #: ``metrics[model][key]`` with key ``<fold>/val``, ``<fold>/test`` and ``test`` (all test blocks
    #: pooled); values: accuracy, mcc, f1, n and the confusion counts.
    metrics: dict[str, dict[str, dict[str, float]]]
    #: ``curves[model][fold] = {"train": [...], "val": [...]}`` (BCE per epoch).
    curves: dict[str, dict[str, dict[str, list[float]]]]
    epochs: dict[str, list[int]]  # per trained model: epochs run per fold
    best_epochs: dict[str, list[int]]
    seconds_per_epoch: dict[str, float]
    num_snapshots: int
    num_nodes: int
    num_samples: int  # labelled (snapshot, asset) pairs scored on the test blocks
    data_range_ms: tuple[int, int]
    symbols: list[str]
    feature_names: list[str]
    #: The last fold's GNN (trained on the most data), its standardisation and node order.
    model_state: dict[str, Tensor] = field(default_factory=dict, repr=False)
    feature_mean: list[float] = field(default_factory=list)
    feature_std: list[float] = field(default_factory=list)
    #: Snapshot indices the training of each fold read, per model (the no-look-ahead trace).
    train_touched: dict[str, dict[str, list[int]]] = field(default_factory=dict, repr=False)
    #: Whether the GNN has an edge over its baselines on the pooled test blocks (:func:`edge_verdict`).
    edge: dict[str, Any] = field(default_factory=dict)
    #: Test metrics per model and asset (:func:`per_asset_metrics`).
    per_asset: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def test_metrics(self) -> dict[str, dict[str, float]]:
        """``{model: {"accuracy", "mcc", "f1"}}`` over all test blocks (the run summary's ``models``)."""
        return {
            m: {k: float(v[k]) for k in ("accuracy", "mcc", "f1")}
            for m, per in self.metrics.items()
            for v in [per["test"]]
        }

    def curves_png(self) -> bytes:
        return curves_png(self.curves, title=f"temporal GNN vs no-graph ({self.device})")

    def model_bytes(self) -> bytes:
        """``torch.save`` of the final GNN with what is needed to rebuild and feed it."""
        buf = io.BytesIO()
        torch.save(
            {
                "state_dict": {k: v.cpu() for k, v in self.model_state.items()},
                "config": self.config,
                "in_features": len(self.feature_names),
                "feature_names": self.feature_names,
                "feature_mean": self.feature_mean,
                "feature_std": self.feature_std,
                "symbols": self.symbols,
            },
            buf,
        )
        return buf.getvalue()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no tensors)."""
        d = asdict(self)
        d.pop("model_state")
        d.pop("train_touched")
        d["data_range_ms"] = list(self.data_range_ms)
        return d


def _standardisation(arrays: SnapshotArrays, split: Split, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean/std per feature over the snapshots the training samples read (never later ones)."""
    lo = max(0, split.train.start - window + 1)
    block = arrays.x[lo : split.train.stop][arrays.present[lo : split.train.stop]]  # [K, F]
    finite = np.where(np.isfinite(block), block, np.nan)
    with np.errstate(all="ignore"):
        mean = np.nanmean(finite, axis=0) if block.size else np.zeros(arrays.x.shape[2])
        std = np.nanstd(finite, axis=0) if block.size else np.ones(arrays.x.shape[2])
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
    return mean, std


def train_and_evaluate(
    snapshots: Sequence[GraphSnapshot],
    config: GNNConfig | None = None,
    *,
    models: Sequence[str] = MODELS,
) -> TrainingReport:
    """Walk-forward train and score the GNN and the baselines on ``snapshots`` (time-ordered)."""
    cfg = config or GNNConfig()
    for m in models:
        if m not in MODELS:
            raise ValueError(f"unknown model {m!r}; known: {', '.join(MODELS)}")
    device = resolve_device(cfg.device)
    arrays = snapshot_arrays(snapshots)
    labelled_t = np.flatnonzero(arrays.labelled.any(axis=1))
    if labelled_t.size == 0:
        raise ValueError("no snapshot has a next_return")
    first, end = cfg.window - 1, int(labelled_t[-1]) + 1
    splits = walk_forward_splits(
        first,
        end,
        folds=cfg.folds,
        test_fraction=cfg.test_fraction,
        gap=cfg.resolved_gap(),
        val_size=cfg.val_size,
        rolling=cfg.rolling,
    )
    ret_col = persistence_column(arrays.feature_names, cfg.persistence_feature)
    metrics: dict[str, dict[str, dict[str, float]]] = {m: {} for m in models}
    pooled: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {m: ([], []) for m in models}
    pooled_blocks: list[np.ndarray] = []  # the snapshot of each pooled test sample
    pooled_nodes: list[np.ndarray] = []  # and its asset
    curves: dict[str, dict[str, dict[str, list[float]]]] = {}
    epochs: dict[str, list[int]] = {}
    best_epochs: dict[str, list[int]] = {}
    seconds: dict[str, float] = {}
    touched: dict[str, dict[str, list[int]]] = {}
    final_state: dict[str, Tensor] = {}
    mean = std = np.zeros(0)
    with deterministic(device):
        for fold_no, split in enumerate(splits):
            mean, std = _standardisation(arrays, split, cfg.window)
            data = _DeviceData(arrays, mean, std, device)
            train_y = arrays.y[split.train.start : split.train.stop][
                arrays.labelled[split.train.start : split.train.stop]
            ]
            majority = float(train_y.mean()) >= 0.5 if train_y.size else True
            test_t, test_n = np.nonzero(arrays.labelled[split.test.start : split.test.stop])
            pooled_blocks.append(test_t + split.test.start)
            pooled_nodes.append(test_n)
            for name in models:
                predictions: dict[str, np.ndarray] = {}
                if name in ("gnn", "nograph"):
                    torch.manual_seed(cfg.seed + fold_no)
                    model = TemporalGNN(
                        len(arrays.feature_names),
                        cfg.hidden,
                        conv=cfg.conv,
                        use_graph=name == "gnn",
                        dropout=cfg.dropout,
                        relations=cfg.relations,
                    ).to(device)
                    fit = fit_model(model, data, split, cfg, seed=cfg.seed + fold_no)
                    curves.setdefault(name, {})[split.name] = {"train": fit.train_loss, "val": fit.val_loss}
                    epochs.setdefault(name, []).append(fit.epochs_run)
                    best_epochs.setdefault(name, []).append(fit.best_epoch)
                    seconds[name] = seconds.get(name, 0.0) + fit.seconds
                    touched.setdefault(name, {})[split.name] = sorted(fit.touched)
                    if name == "gnn":
                        final_state = fit.state
                    for part in ("val", "test"):
                        predictions[part] = _predict(model, data, list(getattr(split, part)), cfg)
                for part in ("val", "test"):
                    rng = getattr(split, part)
                    if name == "persistence":
                        predictions[part] = arrays.x[rng.start : rng.stop, :, ret_col] > 0
                    elif name == "majority":
                        predictions[part] = np.full((len(rng), arrays.num_nodes), majority)
                    mask = arrays.labelled[rng.start : rng.stop]
                    truth = arrays.y[rng.start : rng.stop][mask]
                    pred = predictions[part][mask]
                    metrics[name][f"{split.name}/{part}"] = binary_metrics(truth, pred)
                    if part == "test":
                        pooled[name][0].append(truth)
                        pooled[name][1].append(pred)
    for name in models:
        metrics[name]["test"] = binary_metrics(
            np.concatenate(pooled[name][0]), np.concatenate(pooled[name][1])
        )
    pooled_arrays = {m: (np.concatenate(pooled[m][0]), np.concatenate(pooled[m][1])) for m in models}
    edge = edge_verdict(metrics, pooled_arrays, np.concatenate(pooled_blocks), seed=cfg.seed)
    per_asset = per_asset_metrics(pooled_arrays, np.concatenate(pooled_nodes), arrays.symbols)
    spe = {m: seconds[m] / max(1, sum(epochs[m])) for m in seconds}
    num_samples = int(sum(arrays.labelled[s.test.start : s.test.stop].sum() for s in splits))
    return TrainingReport(
        config=asdict(cfg),
        device=str(device),
        splits=[s.to_dict() for s in splits],
        metrics=metrics,
        curves=curves,
        epochs=epochs,
        best_epochs=best_epochs,
        seconds_per_epoch=spe,
        num_snapshots=arrays.num_snapshots,
        num_nodes=arrays.num_nodes,
        num_samples=num_samples,
        data_range_ms=(arrays.as_of_ms[0], arrays.as_of_ms[-1]),
        symbols=arrays.symbols,
        feature_names=arrays.feature_names,
        model_state=final_state,
        feature_mean=[float(v) for v in mean],
        feature_std=[float(v) for v in std],
        train_touched=touched,
        edge=edge,
        per_asset=per_asset,
    )


def per_asset_metrics(
    pooled: dict[str, tuple[np.ndarray, np.ndarray]], nodes: np.ndarray, symbols: Sequence[str]
) -> dict[str, dict[str, dict[str, float]]]:
    """``{model: {symbol: {"accuracy", "mcc", "f1", "n"}}}`` over the pooled test samples of each
    asset: where a model's skill lies (on planted data: the followers, not their leaders)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for model, (truth, pred) in pooled.items():
        out[model] = {}
        for i, symbol in enumerate(symbols):
            mine = nodes == i
            if mine.any():
                m = binary_metrics(truth[mine], pred[mine])
                out[model][symbol] = {k: float(m[k]) for k in ("accuracy", "mcc", "f1", "n")}
    return out


def edge_verdict(
    metrics: dict[str, dict[str, dict[str, float]]],
    pooled: dict[str, tuple[np.ndarray, np.ndarray]],
    blocks: np.ndarray,
    *,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Does the GNN beat its baselines on the pooled test blocks? ``claimed`` only when the block
    bootstrap's interval of ``MCC(gnn) - MCC(best baseline)`` lies wholly above zero; the margin over
    the no-graph network (what the graph adds) is reported beside it."""
    if "gnn" not in pooled or len(pooled) < 2:
        return {}
    baselines = {m: metrics[m]["test"]["mcc"] for m in pooled if m != "gnn"}
    best = max(baselines, key=lambda m: baselines[m])
    truth, gnn_pred = pooled["gnn"]
    out: dict[str, Any] = {"baseline": best}
    vs_best = mcc_margin_interval(truth, gnn_pred, pooled[best][1], blocks, level=level, seed=seed)
    out.update(vs_best.to_dict())
    if "nograph" in pooled:
        out["vs_nograph"] = mcc_margin_interval(
            truth, gnn_pred, pooled["nograph"][1], blocks, level=level, seed=seed
        ).to_dict()
    out["claimed"] = vs_best.significant
    return out
