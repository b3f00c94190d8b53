"""gnn-trainer core: metrics, walk-forward splits, no look-ahead, determinism, ground truth."""

from __future__ import annotations

import dataclasses
import io
import itertools

import numpy as np
import pytest
import torch

from streamforge_pipelines.analytics.evaluation import (
    binary_metrics,
    curves_png,
    edge_sentence,
    mcc_margin_interval,
    walk_forward_splits,
)
from streamforge_pipelines.analytics.gnn import (
    GNNConfig,
    TemporalGNN,
    TrainingReport,
    snapshot_arrays,
    train_and_evaluate,
)
from streamforge_pipelines.analytics.snapshot import GraphSnapshot
from streamforge_pipelines.analytics.synthetic import synthetic_snapshots

#: Small enough for 2 CPU cores: 20 assets x 300 hourly snapshots, 3 walk-forward folds.
FAST = GNNConfig(hidden=16, epochs=30, window=4, seed=0, device="cpu")


@pytest.fixture(scope="module")
def planted() -> TrainingReport:
    snaps, _ = synthetic_snapshots(20, 300, planted=True, seed=1)
    return train_and_evaluate(snaps, FAST)


@pytest.fixture(scope="module")
def structureless() -> TrainingReport:
    snaps, _ = synthetic_snapshots(20, 300, planted=False, seed=1)
    return train_and_evaluate(snaps, FAST)


def test_metrics_against_hand_computed_values() -> None:
    # tp = 3, fn = 2, fp = 1, tn = 2
    m = binary_metrics([1, 1, 0, 0, 1, 0, 1, 1], [1, 0, 0, 1, 1, 0, 1, 0])
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (3, 2, 1, 2)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["mcc"] == pytest.approx((3 * 2 - 1 * 2) / np.sqrt(4 * 5 * 3 * 4))
    assert m["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))
    perfect = binary_metrics([0, 1, 1, 0], [0, 1, 1, 0])
    assert (perfect["accuracy"], perfect["mcc"], perfect["f1"]) == (1.0, 1.0, 1.0)
    inverted = binary_metrics([0, 1, 1, 0], [1, 0, 0, 1])
    assert (inverted["mcc"], inverted["f1"]) == (-1.0, 0.0)
    constant = binary_metrics([0, 1, 1, 0, 1], [1, 1, 1, 1, 1])
    assert constant["mcc"] == 0.0 and constant["accuracy"] == pytest.approx(0.6)
    assert constant["f1"] == pytest.approx(2 * 3 / (2 * 3 + 2))


def test_walk_forward_splits_are_time_ordered_with_gaps() -> None:
    splits = walk_forward_splits(3, 299, folds=3, test_fraction=0.4, gap=4)
    assert [s.name for s in splits] == ["fold0", "fold1", "fold2"]
    for s in splits:
        assert s.train.start == 3
        assert s.val.start - s.train.stop == 4 and s.test.start - s.val.stop == 4
        assert len(s.val) == len(s.test) > 0
    assert [s.test.stop for s in splits][-1] <= 299
    assert all(a.test.stop == b.test.start for a, b in itertools.pairwise(splits))
    rolling = walk_forward_splits(3, 299, folds=2, test_fraction=0.4, gap=4, rolling=50)
    assert all(len(s.train) == 50 for s in rolling)
    with pytest.raises(ValueError, match="training samples"):
        walk_forward_splits(3, 40, folds=3, test_fraction=0.9, gap=4)


def _perturbed(snaps: list[GraphSnapshot], start: int, seed: int = 99) -> list[GraphSnapshot]:
    """Every snapshot from ``start`` on with other features, edges, weights and flipped targets."""
    rng = np.random.default_rng(seed)
    out = list(snaps[:start])
    for s in snaps[start:]:
        n = s.num_nodes
        edges = rng.integers(0, n, size=(2, 3 * n))
        out.append(
            dataclasses.replace(
                s,
                features=rng.normal(5.0, 3.0, size=s.features.shape),
                edge_index=edges,
                edge_weight=rng.uniform(-1, 1, size=edges.shape[1]),
                next_return=None if s.next_return is None else -s.next_return,
            )
        )
    return out


def _same_state(a: TrainingReport, b: TrainingReport) -> bool:
    return a.model_state.keys() == b.model_state.keys() and all(
        torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state
    )


@pytest.mark.parametrize("patience", [None, 3])
def test_no_future_data_reaches_a_training_sample(patience: int | None) -> None:
    """Change everything after the data a fold may use: the trained GNN stays bit-identical.

    Without early stopping only the training range may matter; with it the validation block picks
    the epoch, so only the test block (and later) must not matter. Changing the last training
    target shows the check is sensitive.
    """
    snaps, _ = synthetic_snapshots(12, 160, planted=True, seed=3)
    cfg = dataclasses.replace(FAST, folds=1, epochs=6, patience=patience, test_fraction=0.3)
    base = train_and_evaluate(snaps, cfg, models=("gnn",))
    split = base.splits[0]
    train_stop, val_stop = split["train"][1], split["val"][1]
    horizon = train_stop if patience is None else val_stop
    touched = base.train_touched["gnn"]["fold0"]
    assert touched and max(touched) == train_stop - 1  # inputs and targets of training batches only

    future = train_and_evaluate(_perturbed(snaps, horizon), cfg, models=("gnn",))
    assert future.splits == base.splits
    assert _same_state(base, future)
    assert future.feature_mean == base.feature_mean and future.feature_std == base.feature_std

    last_target = list(snaps)
    s = last_target[train_stop - 1]
    assert s.next_return is not None
    last_target[train_stop - 1] = dataclasses.replace(s, next_return=-s.next_return)
    assert not _same_state(base, train_and_evaluate(last_target, cfg, models=("gnn",)))


def test_deterministic_for_a_seed() -> None:
    snaps, _ = synthetic_snapshots(10, 120, planted=True, seed=4)
    cfg = dataclasses.replace(FAST, folds=1, epochs=4, test_fraction=0.3)
    a, b = train_and_evaluate(snaps, cfg), train_and_evaluate(snaps, cfg)
    assert a.metrics == b.metrics and a.curves == b.curves and _same_state(a, b)
    c = train_and_evaluate(snaps, dataclasses.replace(cfg, seed=1))
    assert not _same_state(a, c)


def test_gnn_beats_no_graph_baseline_on_planted_lead_lag(planted: TrainingReport) -> None:
    """Followers move one period after their leader: only a model that sees neighbours can know.

    Measured (seeds 1..7): GNN test MCC 0.24-0.29, no-graph -0.03..0.03, persistence -0.02..0.04;
    the assertions leave about half of that margin.
    """
    t = planted.test_metrics()
    assert set(t) == {"gnn", "nograph", "persistence", "majority"}
    assert t["gnn"]["mcc"] >= 0.15
    assert t["gnn"]["mcc"] - t["nograph"]["mcc"] >= 0.12
    assert t["gnn"]["mcc"] - max(t["persistence"]["mcc"], t["majority"]["mcc"]) >= 0.12
    assert t["gnn"]["accuracy"] > t["nograph"]["accuracy"] + 0.05
    for fold in ("fold0", "fold1", "fold2"):  # every walk-forward block, not just the pool
        per = planted.metrics
        assert per["gnn"][f"{fold}/test"]["mcc"] - per["nograph"][f"{fold}/test"]["mcc"] >= 0.08
    assert abs(t["nograph"]["mcc"]) < 0.1
    assert planted.num_samples == sum(int(planted.metrics["gnn"][f"fold{i}/test"]["n"]) for i in range(3))
    # The verdict: the bootstrap interval of the margin over the best baseline lies above zero.
    edge = planted.edge
    best = max((m for m in t if m != "gnn"), key=lambda m: t[m]["mcc"])
    assert edge["claimed"] is True and edge["baseline"] == best and edge["low"] > 0
    assert edge["margin"] == pytest.approx(t["gnn"]["mcc"] - t[best]["mcc"])
    assert edge["low"] <= edge["margin"] <= edge["high"] and edge["blocks"] < planted.num_samples
    assert edge["vs_nograph"]["low"] > 0
    assert edge_sentence(edge).startswith(f"edge claimed: MCC margin {edge['margin']:+.3f} over {best}")
    # Per asset: the followers carry the skill, their leaders (nothing leads them) none of it.
    per = planted.per_asset["gnn"]
    assert sum(v["n"] for v in per.values()) == planted.num_samples
    _, truth = synthetic_snapshots(20, 300, planted=True, seed=1)
    leaders = {planted.symbols[i] for i in set(truth.leaders.values())}
    followers = {planted.symbols[i] for i in truth.leaders}
    assert max(per[s]["mcc"] for s in leaders) < min(per[s]["mcc"] for s in followers), per


def test_no_edge_claimed_on_structureless_data(structureless: TrainingReport) -> None:
    """Independent returns: nobody beats chance, and the graph adds nothing (measured |MCC| < 0.04)."""
    t = structureless.test_metrics()
    for name, m in t.items():
        assert abs(m["mcc"]) < 0.08, name
        assert 0.42 < m["accuracy"] < 0.58, name
    assert t["gnn"]["mcc"] - t["nograph"]["mcc"] < 0.06
    assert t["gnn"]["mcc"] - max(t["persistence"]["mcc"], t["majority"]["mcc"]) < 0.06
    edge = structureless.edge
    assert edge["claimed"] is False and edge["low"] <= 0 and edge["vs_nograph"]["significant"] is False
    assert edge_sentence(edge).startswith("no edge claimed: MCC margin")


def test_report_contents(planted: TrainingReport) -> None:
    png = planted.curves_png()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert set(planted.curves) == {"gnn", "nograph"} and set(planted.curves["gnn"]) == {
        "fold0",
        "fold1",
        "fold2",
    }
    assert planted.device == "cpu" and planted.seconds_per_epoch["gnn"] > 0
    assert all(1 <= e <= FAST.epochs for e in planted.epochs["gnn"])
    d = planted.to_dict()
    assert d["config"]["conv"] == "graph" and d["data_range_ms"][0] < d["data_range_ms"][1]
    blob = torch.load(io.BytesIO(planted.model_bytes()), weights_only=False)
    assert blob["symbols"] == planted.symbols and set(blob["state_dict"]) == set(planted.model_state)
    assert curves_png({"m": {"f": {"train": [1.0, 0.5], "val": [1.1, 0.9]}}}).startswith(b"\x89PNG")


def test_unlabelled_snapshots_are_never_trained_or_scored() -> None:
    snaps, _ = synthetic_snapshots(8, 100, planted=True, seed=5)
    assert snaps[-1].next_return is None
    snaps[80] = dataclasses.replace(snaps[80], next_return=None)
    cfg = dataclasses.replace(FAST, folds=1, epochs=2, test_fraction=0.3)
    report = train_and_evaluate(snaps, cfg, models=("gnn", "majority"))
    split = report.splits[0]
    assert split["test"][1] <= len(snaps) - 1  # the last snapshot has no target
    labelled = {k for k in range(split["test"][0], split["test"][1]) if snaps[k].next_return is not None}
    assert report.metrics["gnn"]["test"]["n"] == 8 * len(labelled)


@pytest.mark.parametrize("conv", ["gcn", "gat"])
def test_other_convolutions_train(conv: str) -> None:
    snaps, _ = synthetic_snapshots(8, 80, planted=True, seed=6)
    cfg = dataclasses.replace(FAST, conv=conv, folds=1, epochs=2, test_fraction=0.3)
    report = train_and_evaluate(snaps, cfg, models=("gnn",))
    assert np.isfinite(report.curves["gnn"]["fold0"]["train"]).all()


def test_margin_interval_is_a_paired_block_bootstrap() -> None:
    rng = np.random.default_rng(3)
    blocks = np.repeat(np.arange(200), 10)  # 200 snapshots of 10 assets
    truth = rng.random(2000) < 0.5
    coin = rng.random(2000) < 0.5
    # The same predictions: margin 0 and an interval of exactly zero, whatever the resample.
    same = mcc_margin_interval(truth, coin, coin, blocks, rounds=300)
    assert (same.margin, same.low, same.high, same.significant) == (0.0, 0.0, 0.0, False)
    # A model right 70 % of the time against a coin: a clear margin, its interval around it.
    good = np.where(rng.random(2000) < 0.7, truth, ~truth)
    r = mcc_margin_interval(truth, good, coin, blocks, rounds=500, seed=1)
    expected = binary_metrics(truth, good)["mcc"] - binary_metrics(truth, coin)["mcc"]
    assert r.margin == pytest.approx(expected) and r.significant and r.blocks == 200
    assert 0 < r.low < r.margin < r.high < 1 and r.high - r.low < 0.25
    assert r == mcc_margin_interval(truth, good, coin, blocks, rounds=500, seed=1)  # seeded
    # The interval is over blocks: with one block per sample it is narrower than with whole
    # snapshots whose samples share one outcome (the assets of a snapshot move together).
    shared_truth = np.repeat(rng.random(200) < 0.5, 10)
    shared_pred = np.where(np.repeat(rng.random(200) < 0.6, 10), shared_truth, ~shared_truth)
    by_snapshot = mcc_margin_interval(shared_truth, shared_pred, coin, blocks, rounds=500)
    by_sample = mcc_margin_interval(shared_truth, shared_pred, coin, np.arange(2000), rounds=500)
    assert by_snapshot.high - by_snapshot.low > 1.5 * (by_sample.high - by_sample.low)
    with pytest.raises(ValueError, match="differ in length"):
        mcc_margin_interval(truth, good, coin, blocks[:-1])


def test_lead_lag_edges_get_their_own_convolution() -> None:
    snaps, _ = synthetic_snapshots(6, 10, planted=True, seed=2)
    lagged = dataclasses.replace(snaps[0], edge_lag=np.arange(snaps[0].num_edges) % 2)
    arrays = snapshot_arrays([lagged, *snaps[1:]])
    assert arrays.edge_type[0].tolist() == (np.arange(snaps[0].num_edges) % 2).tolist()
    assert all(not t.any() for t in arrays.edge_type[1:])  # no edge_lag: every edge a correlation
    torch.manual_seed(0)
    model = TemporalGNN(4, 8, conv="graph", use_graph=True, dropout=0.0)
    x = torch.randn(6, 4)
    ei = torch.tensor(lagged.edge_index, dtype=torch.long)
    ew = torch.tensor(lagged.edge_weight, dtype=torch.float32)
    et = torch.tensor(arrays.edge_type[0])
    # Relabelling the edges changes the embedding: the two kinds go through different weights.
    assert not torch.allclose(model.embed(x, ei, ew, et), model.embed(x, ei, ew, torch.zeros_like(et)))
    flat = TemporalGNN(4, 8, conv="graph", use_graph=True, dropout=0.0, relations=False)
    assert flat.lead is None and torch.equal(flat.embed(x, ei, ew, et), flat.embed(x, ei, ew, 0 * et))
