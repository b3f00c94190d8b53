"""Seeded synthetic graph snapshots with known structure, for the gnn-trainer's tests and benchmarks.

:func:`synthetic_snapshots` draws per-period log returns for ``num_assets`` assets grouped into
clusters. With ``planted=True`` each cluster has one *leader* and its *followers* move, one period
later, with the leader: ``r[t+1, follower] = beta * r[t, leader] / sd + noise``, so a follower's
next-period direction is predictable from a NEIGHBOUR's current return and from nothing of its own.
With ``planted=False`` (the control) every return is independent noise of the same scale.

Both versions carry the same kind of graph: each snapshot links every follower to its leader
(weights around 0.7, both directions) plus ``noise_edges`` random edges per node (weights around
0.2), so a model cannot tell the structured graph from the control by its shape alone; in the
control the cluster edges simply carry no information. Node features are computed, as the
graph-builder does, from the returns up to and including the snapshot's period only: the last
period's return ``ret_1``, the trailing mean ``ret_mean`` and volatility ``vol`` over ``window``
periods, and a volume z-score ``volume_z`` (noise). ``next_return`` is the following period's return
(``None`` for the last snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamforge_pipelines.analytics.snapshot import FloatArray, GraphSnapshot

FEATURE_NAMES = ["ret_1", "ret_mean", "vol", "volume_z"]


@dataclass(frozen=True)
class PlantedTruth:
    """The structure :func:`synthetic_snapshots` planted (empty ``leaders`` for the control)."""

    #: follower index -> leader index.
    leaders: dict[int, int]
    #: The ``(source, target)`` pairs present in every snapshot because of a cluster.
    cluster_edges: frozenset[tuple[int, int]]


def synthetic_returns(
    num_assets: int, num_periods: int, *, planted: bool, clusters: int, beta: float, seed: int
) -> tuple[FloatArray, dict[int, int]]:
    """``[num_periods, num_assets]`` log returns and the follower -> leader map."""
    rng = np.random.default_rng(seed)
    sd = 0.01
    noise = rng.normal(0.0, sd, size=(num_periods, num_assets))
    leaders: dict[int, int] = {}
    groups = np.array_split(np.arange(num_assets), max(1, clusters))
    for group in groups:
        for follower in group[1:]:
            leaders[int(follower)] = int(group[0])
    if not planted:
        return noise, leaders
    returns = noise.copy()
    # Followers: beta of the leader's previous return plus noise scaled so every asset keeps sd.
    keep = float(np.sqrt(max(1e-6, 1.0 - beta**2)))
    for follower, leader in leaders.items():
        returns[1:, follower] = beta * returns[:-1, leader] + keep * noise[1:, follower]
    return returns, leaders


def synthetic_snapshots(
    num_assets: int = 20,
    num_snapshots: int = 300,
    *,
    planted: bool = True,
    clusters: int = 4,
    beta: float = 0.6,
    window: int = 12,
    noise_edges: int = 2,
    period_ms: int = 3_600_000,
    start_ms: int = 1_735_689_600_000,
    seed: int = 0,
) -> tuple[list[GraphSnapshot], PlantedTruth]:
    """``num_snapshots`` time-ordered snapshots (one per period) and the planted truth."""
    periods = num_snapshots + window + 1
    returns, leaders = synthetic_returns(
        num_assets, periods, planted=planted, clusters=clusters, beta=beta, seed=seed
    )
    rng = np.random.default_rng(seed + 1)
    volume = rng.normal(0.0, 1.0, size=(periods, num_assets))
    cluster_edges: set[tuple[int, int]] = set()
    for follower, leader in leaders.items():
        cluster_edges.add((leader, follower))
        cluster_edges.add((follower, leader))
    symbols = [f"SYN{i:03d}USDT" for i in range(num_assets)]
    snapshots: list[GraphSnapshot] = []
    for k in range(num_snapshots):
        t = window + k  # the snapshot's last closed period
        past = returns[t - window + 1 : t + 1]
        features = np.stack([returns[t], past.mean(axis=0), past.std(axis=0), volume[t]], axis=1).astype(
            np.float64
        )
        pairs: dict[tuple[int, int], float] = {
            edge: float(rng.uniform(0.55, 0.85)) for edge in sorted(cluster_edges)
        }
        for node in range(num_assets):
            others = rng.choice(num_assets - 1, size=min(noise_edges, num_assets - 1), replace=False)
            for other in others:
                j = int(other) + (1 if other >= node else 0)
                w = float(rng.uniform(0.1, 0.3))
                pairs.setdefault((node, j), w)
                pairs.setdefault((j, node), w)
        edges = sorted(pairs)
        edge_index = np.array(edges, dtype=np.int64).T.reshape(2, -1)
        edge_weight = np.array([pairs[e] for e in edges], dtype=np.float64)
        next_return = returns[t + 1].copy() if k < num_snapshots - 1 else None
        snapshots.append(
            GraphSnapshot(
                snapshot_id=f"synthetic-{seed}-{k:05d}",
                as_of_ms=start_ms + (t + 1) * period_ms,
                symbols=list(symbols),
                features=features,
                feature_names=list(FEATURE_NAMES),
                edge_index=edge_index,
                edge_weight=edge_weight,
                next_return=next_return,
                params={"synthetic": True, "planted": planted, "window": window, "seed": seed},
            )
        )
    truth = PlantedTruth(
        leaders=leaders if planted else {},
        cluster_edges=frozenset(cluster_edges),
    )
    return snapshots, truth
