"""GNN training time per epoch: the temporal GNN and its no-graph twin on synthetic snapshots.

``python -m bench.gnn_train [--device auto|cpu|cuda] [--assets 10,100] [--snapshots 300] [--epochs 5]``
trains one walk-forward fold (early stopping off, so every epoch runs) per asset count on seeded
planted-lead-lag snapshots (:mod:`streamforge_pipelines.analytics.synthetic`) and prints, per
asset count, the seconds per epoch (one pass over the training samples plus the validation loss)
of ``gnn`` and ``nograph``, the test MCC of both, then one JSON line. The device line says whether a
GPU was used.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from streamforge_pipelines.analytics.gnn import GNNConfig, resolve_device, train_and_evaluate
from streamforge_pipelines.analytics.synthetic import synthetic_snapshots


def bench(assets: int, snapshots: int, epochs: int, cfg: GNNConfig) -> dict[str, object]:
    t0 = time.perf_counter()
    snaps, _ = synthetic_snapshots(assets, snapshots, planted=True, clusters=max(1, assets // 5), seed=0)
    gen_s = time.perf_counter() - t0
    run_cfg = dataclasses.replace(cfg, folds=1, test_fraction=0.2, epochs=epochs, patience=None)
    report = train_and_evaluate(snaps, run_cfg, models=("gnn", "nograph"))
    split = report.splits[0]
    test = report.test_metrics()
    return {
        "assets": assets,
        "snapshots": snapshots,
        "edges_per_snapshot": round(sum(s.num_edges for s in snaps) / len(snaps), 1),
        "train_samples": split["train"][1] - split["train"][0],
        "epochs": epochs,
        "gnn_s_per_epoch": round(report.seconds_per_epoch["gnn"], 4),
        "nograph_s_per_epoch": round(report.seconds_per_epoch["nograph"], 4),
        "gnn_test_mcc": round(test["gnn"]["mcc"], 3),
        "nograph_test_mcc": round(test["nograph"]["mcc"], 3),
        "generate_s": round(gen_s, 2),
        "device": report.device,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (cuda when available) | cpu | cuda")
    parser.add_argument("--assets", default="10,100", help="comma-separated asset counts")
    parser.add_argument("--snapshots", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--window", type=int, default=4)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(
        f"device: {device}{f' ({gpu})' if gpu else ' (no GPU used)'}; torch {torch.__version__}; "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    cfg = GNNConfig(hidden=args.hidden, window=args.window, device=str(device))
    rows = [bench(int(a), args.snapshots, args.epochs, cfg) for a in args.assets.split(",")]
    print(
        f"{'assets':>6} {'edges':>7} {'samples':>7} {'gnn s/ep':>9} {'nograph s/ep':>12} "
        f"{'gnn MCC':>8} {'ng MCC':>7}"
    )
    for r in rows:
        print(
            f"{r['assets']:>6} {r['edges_per_snapshot']:>7} {r['train_samples']:>7} "
            f"{r['gnn_s_per_epoch']:>9} "
            f"{r['nograph_s_per_epoch']:>12} {r['gnn_test_mcc']:>8} {r['nograph_test_mcc']:>7}"
        )
    print(json.dumps({"bench": "gnn_train", "device": str(device), "gpu": gpu, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
