"""Honest evaluation for the gnn-trainer: walk-forward splits, binary metrics, training-curve picture.

Plain numpy (no scikit-learn). Sample indices are snapshot positions in time order; a sample ``t``
uses the snapshots ``t - window + 1 .. t`` as input and the direction of ``next_return`` of
snapshot ``t`` (the period right after it) as target.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Split:
    """One walk-forward fold: sample-index ranges in time order, separated by ``gap`` samples."""

    name: str
    train: range
    val: range
    test: range

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "train": [self.train.start, self.train.stop],
            "val": [self.val.start, self.val.stop],
            "test": [self.test.start, self.test.stop],
        }


def walk_forward_splits(
    first: int,
    end: int,
    *,
    folds: int,
    test_fraction: float,
    gap: int,
    val_size: int | None = None,
    rolling: int | None = None,
    min_train: int = 16,
) -> list[Split]:
    """``folds`` consecutive test blocks covering the last ``test_fraction`` of ``[first, end)``.

    Fold ``k`` tests on block ``k``; its validation block (``val_size`` samples, default one test
    block) ends ``gap`` samples before the test block, and its training range ends ``gap`` samples
    before the validation block and starts at ``first`` (expanding window) or ``rolling`` samples
    earlier (rolling window). Every index of a later range is greater than every index of an
    earlier one, so a model never trains on a sample from its own future.
    """
    if folds < 1 or not 0.0 < test_fraction < 1.0 or gap < 0:
        raise ValueError("folds >= 1, 0 < test_fraction < 1 and gap >= 0 are required")
    total = end - first
    test_size = int(total * test_fraction) // folds
    if test_size < 1:
        raise ValueError(f"too few samples ({total}) for {folds} test blocks")
    val_len = test_size if val_size is None else val_size
    splits: list[Split] = []
    for k in range(folds):
        test_start = end - (folds - k) * test_size
        val_stop = test_start - gap
        val_start = val_stop - val_len
        train_stop = val_start - gap
        train_start = first if rolling is None else max(first, train_stop - rolling)
        if train_stop - train_start < min_train:
            raise ValueError(
                f"fold {k}: {max(0, train_stop - train_start)} training samples (< {min_train}); "
                "use more snapshots, fewer folds or a smaller test_fraction"
            )
        splits.append(
            Split(
                name=f"fold{k}",
                train=range(train_start, train_stop),
                val=range(val_start, val_stop),
                test=range(test_start, test_start + test_size),
            )
        )
    return splits


def binary_metrics(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> dict[str, float]:
    """Accuracy, Matthews correlation and F1 (positive class = 1 = up) plus the counts.

    MCC is 0 when a row or column of the confusion matrix is empty (e.g. a constant prediction);
    F1 is 0 when there is no true or predicted positive.
    """
    t = np.asarray(y_true).astype(bool).ravel()
    p = np.asarray(y_pred).astype(bool).ravel()
    if t.shape != p.shape:
        raise ValueError("y_true and y_pred differ in length")
    tp = int(np.sum(t & p))
    tn = int(np.sum(~t & ~p))
    fp = int(np.sum(~t & p))
    fn = int(np.sum(t & ~p))
    n = tp + tn + fp + fn
    accuracy = (tp + tn) / n if n else 0.0
    denom = math.sqrt(float(tp + fp) * float(tp + fn) * float(tn + fp) * float(tn + fn))
    mcc = (tp * tn - fp * fn) / denom if denom > 0 else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"accuracy": accuracy, "mcc": mcc, "f1": f1, "n": float(n), "tp": tp, "tn": tn, "fp": fp, "fn": fn}


def _mcc(tp: np.ndarray, tn: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    with np.errstate(all="ignore"):
        return np.where(denom > 0, (tp * tn - fp * fn) / np.where(denom > 0, denom, 1.0), 0.0)


def _group_counts(truth: np.ndarray, pred: np.ndarray, inverse: np.ndarray, groups: int) -> np.ndarray:
    """``[G, 4]`` confusion counts (tp, tn, fp, fn) per group."""
    cells = np.stack([truth & pred, ~truth & ~pred, ~truth & pred, truth & ~pred], axis=1).astype(np.float64)
    out = np.zeros((groups, 4))
    np.add.at(out, inverse, cells)
    return out


@dataclass(frozen=True)
class MarginInterval:
    """MCC of a model minus a baseline's on the same samples, with a block-bootstrap interval."""

    margin: float
    low: float
    high: float
    level: float
    rounds: int
    blocks: int

    @property
    def significant(self) -> bool:
        """The whole interval lies above zero: the model has an edge over the baseline."""
        return self.low > 0.0

    def to_dict(self) -> dict[str, float | int | bool]:
        return {
            "margin": self.margin,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "rounds": self.rounds,
            "blocks": self.blocks,
            "significant": self.significant,
        }


def mcc_margin_interval(
    y_true: npt.ArrayLike,
    pred_model: npt.ArrayLike,
    pred_baseline: npt.ArrayLike,
    blocks: npt.ArrayLike,
    *,
    rounds: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> MarginInterval:
    """``MCC(model) - MCC(baseline)`` and its percentile interval from a paired block bootstrap.

    Samples of one block (a snapshot: its assets move together, so they are not independent) are
    resampled together, and both models are scored on the same resample. Seeded: the same inputs
    give the same interval.
    """
    t = np.asarray(y_true).astype(bool).ravel()
    a = np.asarray(pred_model).astype(bool).ravel()
    b = np.asarray(pred_baseline).astype(bool).ravel()
    keys = np.asarray(blocks).ravel()
    if not t.shape == a.shape == b.shape == keys.shape:
        raise ValueError("y_true, the predictions and blocks differ in length")
    margin = binary_metrics(t, a)["mcc"] - binary_metrics(t, b)["mcc"]
    if t.size == 0:
        return MarginInterval(0.0, 0.0, 0.0, level, 0, 0)
    _, inverse = np.unique(keys, return_inverse=True)
    g = int(inverse.max()) + 1
    ca, cb = _group_counts(t, a, inverse, g), _group_counts(t, b, inverse, g)
    weights = np.random.default_rng(seed).multinomial(g, np.full(g, 1.0 / g), size=rounds).astype(np.float64)
    wa, wb = weights @ ca, weights @ cb  # [rounds, 4]
    diff = _mcc(*wa.T) - _mcc(*wb.T)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(diff, [tail, 1.0 - tail])
    return MarginInterval(float(margin), float(low), float(high), level, rounds, g)


def edge_sentence(edge: Mapping[str, Any]) -> str:
    """One line: whether the GNN claims an edge over its baselines, with the bootstrap interval."""
    if not edge:
        return "no baseline to compare with"
    pct = round(100 * float(edge["level"]))
    verdict = "edge claimed" if edge["claimed"] else "no edge claimed"
    return (
        f"{verdict}: MCC margin {edge['margin']:+.3f} over {edge['baseline']}, {pct}% interval "
        f"[{edge['low']:+.3f}, {edge['high']:+.3f}]"
    )


def curves_png(curves: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]], title: str = "") -> bytes:
    """Loss per epoch as a PNG: one panel per split, a train (solid) and val (dashed) line per model.

    ``curves[model][split] = {"train": [...], "val": [...]}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split_names = sorted({s for per_model in curves.values() for s in per_model})
    fig, axes = plt.subplots(
        1, max(1, len(split_names)), figsize=(4.2 * max(1, len(split_names)), 3.4), squeeze=False
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for col, split in enumerate(split_names):
        ax = axes[0][col]
        for i, (model, per_split) in enumerate(sorted(curves.items())):
            c = per_split.get(split)
            if not c:
                continue
            colour = colours[i % len(colours)]
            ax.plot(range(1, len(c["train"]) + 1), c["train"], color=colour, label=f"{model} train")
            ax.plot(range(1, len(c["val"]) + 1), c["val"], color=colour, ls="--", label=f"{model} val")
        ax.set_title(split)
        ax.set_xlabel("epoch")
        if col == 0:
            ax.set_ylabel("BCE loss")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
