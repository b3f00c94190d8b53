"""How long the graph-builder takes per snapshot for 10, 100 and 500 assets, and the store write.

Synthetic 1m candles (seeded): log-price random walks of ``N`` assets, a weak market factor and
clusters of 5 assets sharing a factor (loading 0.8), as decimal-string documents like the store's.
For each size it measures, on this machine:

* **align** — parsing the candle documents of the whole range onto the minute grid (once per
  daily partition in the asset, shown per snapshot of the range too);
* **build** — one snapshot (window 240 minutes, Pearson and Spearman, lead-lag up to 5 lags,
  features, target): the median over the snapshots of the range;
* **write** — writing one snapshot to a fresh SQLite store (median);
* the planted intra-cluster pairs found as edges (recall) and edges found between clusters.

``python -m bench.graph_build [--sizes 10,100,500] [--snapshots 8] [--seed 0]``; prints a table and
one JSON line. The BLAS thread count matters on a busy machine (a 240 x N matrix product is small):
run it as is and with ``OPENBLAS_NUM_THREADS=1``; the JSON line says which.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from streamforge_pipelines.analytics.graph_builder import GraphParams, align_candles, build_snapshot
from streamforge_pipelines.analytics.graph_store import write_snapshot
from streamforge_pipelines.store import SqliteStore

T0 = 1_722_470_400_000  # 2024-08-01T00:00Z
MINUTE_MS = 60_000
CLUSTER = 5


def synthetic_candles(n: int, minutes: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    market = rng.normal(size=minutes)
    clusters = rng.normal(size=(n // CLUSTER + 1, minutes))
    own = rng.normal(size=(n, minutes))
    shocks = 0.8 * clusters[np.arange(n) // CLUSTER] + 0.6 * (0.2 * market + np.sqrt(1 - 0.04) * own)
    logp = np.log(100.0) + np.cumsum(0.001 * shocks, axis=1)
    close = np.exp(logp)
    opens = np.concatenate([np.full((n, 1), 100.0), close[:, :-1]], axis=1)
    volume = rng.lognormal(8.0, 0.5, size=(n, minutes))
    out: dict[str, list[dict[str, Any]]] = {}
    for i in range(n):
        out[f"A{i:04d}USDT"] = [
            {
                "open_time": T0 + k * MINUTE_MS,
                "open": f"{opens[i, k]:.8f}",
                "close": f"{close[i, k]:.8f}",
                "quote_volume": f"{volume[i, k]:.8f}",
            }
            for k in range(minutes)
        ]
    return out


def bench_size(n: int, snapshots: int, seed: int) -> dict[str, Any]:
    base = GraphParams()
    minutes = base.window_minutes + (snapshots + 1) * base.cadence_minutes
    candles = synthetic_candles(n, minutes, seed)
    symbols = sorted(candles)
    t = time.perf_counter()
    series = align_candles(candles, symbols, "1m", T0, T0 + minutes * MINUTE_MS)
    align_s = time.perf_counter() - t
    times = [T0 + (base.window_minutes + k * base.cadence_minutes) * MINUTE_MS for k in range(snapshots)]
    row: dict[str, Any] = {"assets": n, "snapshots": snapshots, "align_s": align_s}
    for measure in ("pearson", "spearman"):
        params = GraphParams(measure=measure)
        build = []
        snaps = []
        for at in times:
            t = time.perf_counter()
            snap = build_snapshot(series, at, params)
            build.append(time.perf_counter() - t)
            assert snap is not None
            snaps.append(snap)
        row[f"build_{measure}_ms"] = 1000 * statistics.median(build)
        if measure == "pearson":
            cluster = np.arange(n) // CLUSTER
            sizes = np.bincount(cluster)
            planted = int((sizes * (sizes - 1)).sum())
            found, cross = [], []
            for snap in snaps:
                lag0 = snap.edge_lag == 0 if snap.edge_lag is not None else np.ones(snap.num_edges, bool)
                s, d = snap.edge_index[:, lag0]
                same = cluster[s] == cluster[d]
                found.append(int(same.sum()) / planted if planted else 1.0)
                cross.append(int((~same).sum()))
            row["edges_mean"] = statistics.fmean(s.num_edges for s in snaps)
            row["planted_recall"] = statistics.fmean(found)
            row["cross_cluster_edges"] = statistics.fmean(cross)
            with tempfile.TemporaryDirectory() as tmp, SqliteStore(Path(tmp) / "bench.sqlite") as store:
                writes = []
                for snap in snaps:
                    t = time.perf_counter()
                    write_snapshot(store, snap)
                    writes.append(time.perf_counter() - t)
            row["write_ms"] = 1000 * statistics.median(writes)
    row["align_per_snapshot_ms"] = 1000 * align_s / snapshots
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,500")
    parser.add_argument("--snapshots", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = [bench_size(int(n), args.snapshots, args.seed) for n in args.sizes.split(",")]
    print(
        f"{'assets':>6} {'build pearson ms':>16} {'build spearman ms':>17} {'align ms/snap':>13} "
        f"{'write ms':>9} {'edges':>8} {'recall':>6} {'cross':>6}"
    )
    for r in rows:
        print(
            f"{r['assets']:>6} {r['build_pearson_ms']:>16.2f} {r['build_spearman_ms']:>17.2f} "
            f"{r['align_per_snapshot_ms']:>13.1f} {r['write_ms']:>9.1f} {r['edges_mean']:>8.0f} "
            f"{r['planted_recall']:>6.2f} {r['cross_cluster_edges']:>6.1f}"
        )
    blas = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default"
    report = {"bench": "graph_build", "window_minutes": 240, "blas_threads": blas, "cpus": os.cpu_count()}
    print(orjson.dumps({**report, "rows": rows}).decode())


if __name__ == "__main__":
    main()
