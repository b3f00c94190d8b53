"""Graph snapshots in the store, and candles out of it: what the graph-builder writes and the
gnn-trainer reads back.

A snapshot is written with :meth:`Store.write_graph_snapshot` under its id
(``corr:<interval>:<measure>:YYYYMMDDTHHMMZ``):

* one node per asset: ``{key: symbol, features: {name: value}, next_return, as_of_ms, as_of,
  date, params}`` — the target ``next_return`` (``None`` until its period closed) is its own
  attribute, never among ``features``; ``params`` carry the builder's settings and
  ``feature_names`` (the column order);
* one edge per relation: a correlation once per pair (``source < target``, ``kind: "corr"``,
  ``lag: 0``; :class:`GraphSnapshot` holds it in both directions) and a lead-lag edge leader ->
  follower (``kind: "lead_lag"``, ``lag`` in candles), each stamped with ``as_of_ms``, ``date``
  and ``measure``. In ArangoDB these are the ``relations`` edges of the ``correlations`` named
  graph over the ``assets`` vertices.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from ..datasets import CANDLES, DatasetSpec
from ..intervals import MINUTE_MS
from ..store import Store
from .graph_builder import (
    FEATURE_NAMES,
    GraphParams,
    build_snapshots,
    candle_range,
    day_snapshot_times,
    format_stamp,
    snapshot_prefix,
)
from .snapshot import GraphSnapshot


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def edge_rows(snap: GraphSnapshot) -> list[tuple[int, int, float, int]]:
    """``(source, target, weight, lag)`` of every edge (lag 0 when ``snap`` has no ``edge_lag``)."""
    lags = snap.edge_lag if snap.edge_lag is not None else np.zeros(snap.num_edges, dtype=np.int64)
    src, dst = snap.edge_index.tolist()
    return list(zip(src, dst, snap.edge_weight.tolist(), lags.tolist(), strict=True))


def snapshot_documents(snap: GraphSnapshot) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(nodes, edges)`` documents of a snapshot (see the module docstring)."""
    as_of = _iso(snap.as_of_ms)
    day = as_of[:10]
    params = {**snap.params, "feature_names": list(snap.feature_names)}
    measure = snap.params.get("measure")
    nodes = []
    for i, symbol in enumerate(snap.symbols):
        nodes.append(
            {
                "key": symbol,
                "features": {
                    name: float(v) for name, v in zip(snap.feature_names, snap.features[i], strict=True)
                },
                "next_return": None if snap.next_return is None else float(snap.next_return[i]),
                "as_of_ms": snap.as_of_ms,
                "as_of": as_of,
                "date": day,
                "params": params,
            }
        )
    edges = []
    for s, t, w, lag in edge_rows(snap):
        if lag == 0 and s > t:
            continue  # the reverse of a stored undirected edge
        edges.append(
            {
                "source": snap.symbols[s],
                "target": snap.symbols[t],
                "weight": w,
                "kind": "corr" if lag == 0 else "lead_lag",
                "lag": lag,
                "measure": measure,
                "as_of_ms": snap.as_of_ms,
                "date": day,
            }
        )
    return nodes, edges


def write_snapshot(store: Store, snap: GraphSnapshot) -> None:
    nodes, edges = snapshot_documents(snap)
    store.write_graph_snapshot(snap.snapshot_id, nodes, edges)


def snapshot_from_documents(
    snapshot_id: str, nodes: Sequence[dict[str, Any]], edges: Sequence[dict[str, Any]]
) -> GraphSnapshot | None:
    """Rebuild a :class:`GraphSnapshot` from its stored documents (None when there are no nodes)."""
    if not nodes:
        return None
    symbols = [n["key"] for n in nodes]
    params = dict(nodes[0].get("params") or {})
    names = list(params.pop("feature_names", None) or FEATURE_NAMES)
    features = np.array([[float(n["features"][name]) for name in names] for n in nodes], dtype=np.float64)
    targets = [n.get("next_return") for n in nodes]
    next_return = None if any(v is None for v in targets) else np.array(targets, dtype=np.float64)
    index = {s: i for i, s in enumerate(symbols)}
    src: list[int] = []
    dst: list[int] = []
    weight: list[float] = []
    lags: list[int] = []
    for e in edges:
        s, t, w, lag = index[e["source"]], index[e["target"]], float(e["weight"]), int(e.get("lag", 0))
        src.append(s)
        dst.append(t)
        weight.append(w)
        lags.append(lag)
        if lag == 0:
            src.append(t)
            dst.append(s)
            weight.append(w)
            lags.append(0)
    ei = np.array([src, dst], dtype=np.int64).reshape(2, -1)
    ew = np.array(weight, dtype=np.float64)
    el = np.array(lags, dtype=np.int64)
    order = np.lexsort((el, ei[1], ei[0]))
    return GraphSnapshot(
        snapshot_id=snapshot_id,
        as_of_ms=int(nodes[0]["as_of_ms"]),
        symbols=symbols,
        features=features,
        feature_names=names,
        edge_index=ei[:, order],
        edge_weight=ew[order],
        next_return=next_return,
        params=params,
        edge_lag=el[order],
    )


def read_snapshot(store: Store, snapshot_id: str) -> GraphSnapshot | None:
    """The stored snapshot ``snapshot_id`` as a :class:`GraphSnapshot`, or None."""
    nodes, edges = store.read_graph_snapshot(snapshot_id)
    return snapshot_from_documents(snapshot_id, nodes, edges)


def list_snapshot_ids(
    store: Store,
    start_ms: int | None = None,
    end_ms: int | None = None,
    *,
    interval: str = "1m",
    measure: str = "pearson",
) -> list[str]:
    """Ids of the stored snapshots of ``interval`` and ``measure`` with ``start_ms <= as_of < end_ms``
    (either bound optional), in time order."""
    prefix = snapshot_prefix(interval, measure)
    start = None if start_ms is None else prefix + format_stamp(_ceil_minute(start_ms))
    end = None if end_ms is None else prefix + format_stamp(_ceil_minute(end_ms))
    return store.list_graph_snapshots(prefix, start, end)


def read_snapshots(
    store: Store,
    start_ms: int | None = None,
    end_ms: int | None = None,
    *,
    interval: str = "1m",
    measure: str = "pearson",
) -> list[GraphSnapshot]:
    """The stored snapshots of ``interval`` and ``measure`` in ``[start_ms, end_ms)``, in time order."""
    out = []
    for sid in list_snapshot_ids(store, start_ms, end_ms, interval=interval, measure=measure):
        snap = read_snapshot(store, sid)
        if snap is not None:
            out.append(snap)
    return out


def read_candles(
    store: Store,
    symbols: Sequence[str],
    interval: str,
    start_ms: int,
    end_ms: int,
    spec: DatasetSpec = CANDLES,
) -> dict[str, list[dict[str, Any]]]:
    """Stored candles (of the ``spec`` market) per symbol with ``start_ms <= open_time < end_ms``."""
    return {s: store.read(spec, (s, interval), start_ms, end_ms) for s in symbols}


def _ceil_minute(ms: int) -> int:
    return -(-ms // MINUTE_MS) * MINUTE_MS


@dataclass(slots=True)
class DayGraphs:
    """What :func:`build_day` built and stored for one UTC day."""

    day: date
    snapshots: list[GraphSnapshot] = field(default_factory=list)
    skipped_ms: list[int] = field(default_factory=list)
    build_seconds: float = 0.0
    write_seconds: float = 0.0

    @property
    def edges(self) -> list[int]:
        return [s.num_edges for s in self.snapshots]

    @property
    def lead_lag_edges(self) -> int:
        return sum(int((s.edge_lag > 0).sum()) for s in self.snapshots if s.edge_lag is not None)

    @property
    def with_target(self) -> int:
        return sum(s.next_return is not None for s in self.snapshots)


def build_day(store: Store, symbols: Sequence[str], day: date, params: GraphParams) -> DayGraphs:
    """Build the snapshots of one daily partition from the stored candles and write them."""
    times = day_snapshot_times(day, params)
    start, end = candle_range(times, params)
    out = DayGraphs(day=day)
    t0 = time.perf_counter()
    candles = read_candles(store, symbols, params.interval, start, end)
    out.snapshots, out.skipped_ms = build_snapshots(candles, times, params, symbols)
    out.build_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    for snap in out.snapshots:
        write_snapshot(store, snap)
    out.write_seconds = time.perf_counter() - t0
    return out


def render_png(snap: GraphSnapshot, *, size_in: float = 6.0, dpi: int = 80) -> bytes:
    """A picture of a snapshot: assets placed by a seeded spring layout, correlation edges solid
    (blue positive, red negative, width by |weight|), lead-lag edges dashed arrows. Labels are
    drawn up to 60 assets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    g = nx.DiGraph()
    g.add_nodes_from(range(snap.num_nodes))
    corr, lead = [], []
    for s, t, w, lag in edge_rows(snap):
        if lag == 0 and s < t:
            corr.append((s, t, w))
        elif lag > 0:
            lead.append((s, t, w))
    g.add_weighted_edges_from([(s, t, abs(w)) for s, t, w in corr + lead])
    spread = 3.0 / math.sqrt(max(snap.num_nodes, 1))
    pos = nx.spring_layout(g.to_undirected(), seed=0, weight="weight", k=spread)
    fig, ax = plt.subplots(figsize=(size_in, size_in), dpi=dpi)
    try:
        nx.draw_networkx_nodes(
            g, pos, ax=ax, node_size=300 if snap.num_nodes <= 60 else 20, node_color="#cfe3f5"
        )
        nx.draw_networkx_edges(
            g,
            pos,
            ax=ax,
            edgelist=[(s, t) for s, t, _ in corr],
            width=[0.5 + 3 * abs(w) for _, _, w in corr],
            edge_color=["#1f77b4" if w >= 0 else "#d62728" for _, _, w in corr],
            arrows=False,
        )
        if lead:
            nx.draw_networkx_edges(
                g, pos, ax=ax, edgelist=[(s, t) for s, t, _ in lead], style="dashed", arrows=True, width=1.5
            )
        if snap.num_nodes <= 60:
            labels = {i: s.removesuffix("USDT") for i, s in enumerate(snap.symbols)}
            nx.draw_networkx_labels(g, pos, labels=labels, ax=ax, font_size=8)
        ax.set_title(
            f"{snap.snapshot_id}: {snap.num_nodes} assets, {len(corr)} correlations (solid; blue +, red -), "
            f"{len(lead)} lead-lag (dashed)",
            fontsize=8,
        )
        ax.set_axis_off()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
    finally:
        plt.close(fig)
    return buf.getvalue()
