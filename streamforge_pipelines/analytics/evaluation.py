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
