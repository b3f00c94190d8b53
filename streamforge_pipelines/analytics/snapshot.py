"""The shape shared by the graph-builder and the gnn-trainer: one graph snapshot.

A snapshot describes the market at one instant ``as_of_ms`` (the end of its trailing window; every
number in it was computable at that instant and never uses a later candle): the assets (nodes, in a
fixed order), a feature vector per asset, the relation edges with their weights, and — kept apart,
because it is the future — the next period's log return of each asset, which is the training target
and is ``None`` for the latest snapshot until that period has closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass
class GraphSnapshot:
    """One correlation graph at ``as_of_ms`` (milliseconds since the epoch, UTC)."""

    snapshot_id: str
    as_of_ms: int
    #: Asset symbols, the node order of every array below.
    symbols: list[str]
    #: ``[N, F]`` node features, all computed from candles with ``open_time < as_of_ms``.
    features: FloatArray
    #: Names of the ``F`` feature columns.
    feature_names: list[str]
    #: ``[2, E]`` directed edge list (both directions for a symmetric relation), indices into ``symbols``.
    edge_index: IntArray
    #: ``[E]`` edge weights (the relation measure, e.g. a correlation).
    edge_weight: FloatArray
    #: ``[N]`` log return of each asset over the period after ``as_of_ms`` (the target); ``None``
    #: when that period has not closed yet.
    next_return: FloatArray | None = None
    #: How it was built (window, measure, threshold, top-k, cadence...).
    params: dict[str, Any] = field(default_factory=dict)
    #: ``[E]`` per edge: 0 for a contemporaneous (correlation) edge, ``k`` for a directed lead-lag
    #: edge source -> target at a lag of ``k`` candles; ``None`` when the builder made no such split.
    edge_lag: IntArray | None = None

    @property
    def num_nodes(self) -> int:
        return len(self.symbols)

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def density(self) -> float:
        """Directed edges over the ``N (N - 1)`` possible ones."""
        n = self.num_nodes
        return self.num_edges / (n * (n - 1)) if n > 1 else 0.0
