"""graph-builder: planted structure is recovered, nothing after a snapshot reaches its features,
edge semantics, the store round trip, and the Dagster asset on a store of simulator candles."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import date
from itertools import combinations
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pytest

from streamforge_pipelines.analytics.graph_builder import (
    FEATURE_NAMES,
    GraphParams,
    align_candles,
    average_ranks,
    build_snapshot,
    build_snapshots,
    candle_range,
    correlation_edges,
    day_snapshot_times,
    relation_matrix,
)
from streamforge_pipelines.analytics.graph_store import (
    build_day,
    list_snapshot_ids,
    read_snapshot,
    read_snapshots,
    snapshot_documents,
)
from streamforge_pipelines.analytics.snapshot import GraphSnapshot
from streamforge_pipelines.assets.graph import correlation_graph
from streamforge_pipelines.datasets import CANDLES
from streamforge_pipelines.intervals import day_start_ms
from streamforge_pipelines.protocol import page_docs
from streamforge_pipelines.queue_manager.ledger import build_ledger, save_ledger
from streamforge_pipelines.resources import resources_for
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.simulator.config import config_from_mapping
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.store import SqliteStore, store_from_settings

DAY = date(2024, 8, 1)
D0 = day_start_ms(DAY)
DAY_MS = 86_400_000
SYMBOLS = [f"{c}USDT" for c in ("AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH")]
LEADER, FOLLOWER = "GGGUSDT", "HHHUSDT"

Candles = dict[str, list[dict[str, Any]]]


def planted_market(seed: int = 7, *, structure: bool = True) -> Market:
    """Eight assets with a weak market factor; two clusters and a lead-lag pair when ``structure``."""
    symbols = [
        {
            "name": s,
            "base_price": 100.0 + 10 * i,
            "tick_size": "0.01",
            "step_size": "0.001",
            "market_beta": 0.2,
            "listing": "2020-01-01",
        }
        for i, s in enumerate(SYMBOLS)
    ]
    config: dict[str, Any] = {"seed": seed, "symbols": symbols}
    if structure:
        config["clusters"] = [
            {"name": "one", "symbols": SYMBOLS[0:3], "loading": 0.8},
            {"name": "two", "symbols": SYMBOLS[3:6], "loading": 0.8},
        ]
        config["lead_lags"] = [{"leader": LEADER, "follower": FOLLOWER, "lag_minutes": 2, "strength": 0.7}]
    return Market.from_config(config_from_mapping(config))


def market_candles(market: Market, symbols: Sequence[str], start_ms: int, end_ms: int) -> Candles:
    """1m candle documents as the store holds them (decimal strings), generated in-process."""
    out: Candles = {}
    for symbol in symbols:
        docs: list[dict[str, Any]] = []
        t = start_ms
        while t < end_ms:
            rows = market.klines(symbol, "1m", t, end_ms - 1, 1000, now_ms=end_ms + DAY_MS)
            if not rows:
                break
            docs += page_docs(symbol, "1m", "sim", "test", rows)
            t = rows[-1][0] + 60_000
        out[symbol] = docs
    return out


@pytest.fixture(scope="module")
def planted() -> tuple[Market, Candles]:
    market = planted_market()
    return market, market_candles(market, SYMBOLS, D0 - DAY_MS, D0 + DAY_MS)


def edge_set(snap: GraphSnapshot, *, lagged: bool) -> set[tuple[str, str]]:
    assert snap.edge_lag is not None
    ei, lag = snap.edge_index, snap.edge_lag
    keep = lag > 0 if lagged else lag == 0
    return {(snap.symbols[s], snap.symbols[t]) for s, t in ei[:, keep].T.tolist()}


# -- (a) planted structure --------------------------------------------------------------------------


@pytest.mark.parametrize("measure", ["pearson", "spearman"])
def test_planted_clusters_and_lead_lag_are_the_edges(planted: tuple[Market, Candles], measure: str) -> None:
    market, candles = planted
    truth = market.truth()  # what GET /_sim/truth serves
    params = GraphParams(measure=measure)
    snaps, skipped = build_snapshots(candles, day_snapshot_times(DAY, params), params)
    assert len(snaps) == 24 and skipped == []
    assert all(s.next_return is not None for s in snaps)

    planted_pairs = {(a, b) for c in truth["clusters"] for a, b in combinations(c["symbols"], 2)} | {
        (b, a) for c in truth["clusters"] for a, b in combinations(c["symbols"], 2)
    }
    all_pairs = {(a, b) for a in SYMBOLS for b in SYMBOLS if a != b}
    hits = {p: 0 for p in all_pairs}
    lead_hits: dict[tuple[str, str], int] = {}
    for snap in snaps:
        for p in edge_set(snap, lagged=False):
            hits[p] += 1
        for p in edge_set(snap, lagged=True):
            lead_hits[p] = lead_hits.get(p, 0) + 1
        # Correlation edges are symmetric: (a, b) with the weight of (b, a).
        ends = [(snap.symbols[s], snap.symbols[t]) for s, t in snap.edge_index.T.tolist()]
        w = dict(zip(ends, snap.edge_weight.tolist(), strict=True))
        assert all(w[(b, a)] == pytest.approx(x) for (a, b), x in w.items() if (b, a) in w)
    # Every planted intra-cluster pair is an edge in (nearly) every snapshot, no other pair ever is.
    assert min(hits[p] for p in planted_pairs) >= 23
    assert max(hits[p] for p in all_pairs - planted_pairs) == 0
    # The lead-lag pair is a directed edge leader -> follower at its lag (2 minutes = 2 candles).
    (ll,) = truth["leadLags"]
    assert lead_hits.pop((ll["leader"], ll["follower"]), 0) >= 22
    assert sum(lead_hits.values()) <= 1
    lags = {
        int(s.edge_lag[k])
        for s in snaps
        for k in range(s.num_edges)
        if s.edge_lag is not None and s.edge_lag[k] > 0
    }
    assert ll["lagMinutes"] in lags


def test_structureless_market_gives_no_edges() -> None:
    market = planted_market(seed=11, structure=False)
    candles = market_candles(market, SYMBOLS, D0 - DAY_MS, D0 + DAY_MS)
    params = GraphParams()
    snaps, _ = build_snapshots(candles, day_snapshot_times(DAY, params), params)
    assert len(snaps) == 24
    assert sum(s.num_edges for s in snaps) == 0


# -- (b) no look-ahead ------------------------------------------------------------------------------


def perturbed(candles: Mapping[str, Sequence[dict[str, Any]]], from_ms: int, seed: int = 1) -> Candles:
    """Every candle with ``open_time >= from_ms`` changed: prices scaled by a random factor per candle
    (so returns change too), volumes multiplied."""
    rng = np.random.default_rng(seed)
    out: Candles = {}
    for symbol, docs in candles.items():
        new = []
        for d in docs:
            if d["open_time"] >= from_ms:
                f = float(np.exp(rng.normal(0, 0.01)))
                d = {**d, **{k: f"{float(d[k]) * f:.8f}" for k in ("open", "high", "low", "close")}}
                d["quote_volume"] = f"{float(d['quote_volume']) * 3.7:.8f}"
            new.append(d)
        out[symbol] = new
    return out


def test_nothing_at_or_after_the_snapshot_time_reaches_its_features(planted: tuple[Market, Candles]) -> None:
    _, candles = planted
    params = GraphParams()
    times = day_snapshot_times(DAY, params)
    t = times[10]
    base, _ = build_snapshots(candles, times, params)
    changed, _ = build_snapshots(perturbed(candles, t), times, params)
    truncated, _ = build_snapshots(
        {s: [d for d in docs if d["open_time"] < t] for s, docs in candles.items()}, times[:11], params
    )
    assert len(base) == len(changed) == 24
    for a, b in zip(base, changed, strict=True):
        if a.as_of_ms <= t:  # everything known at the snapshot time is unchanged ...
            np.testing.assert_array_equal(a.features, b.features)
            np.testing.assert_array_equal(a.edge_index, b.edge_index)
            np.testing.assert_array_equal(a.edge_weight, b.edge_weight)
        else:
            assert not np.array_equal(a.features, b.features)
    # ... the target of the snapshot at t is the future, so it changes; the one before does not.
    assert base[10].next_return is not None and changed[10].next_return is not None
    assert not np.allclose(base[10].next_return, changed[10].next_return)
    np.testing.assert_array_equal(base[9].next_return, changed[9].next_return)
    # Without any candle from t on, the snapshot at t has the same features and no target.
    np.testing.assert_array_equal(truncated[10].features, base[10].features)
    assert truncated[10].next_return is None and truncated[9].next_return is not None


def test_features_are_the_documented_window_statistics() -> None:
    # Two symbols, closes 100 * exp(cumsum(r)); the second misses a candle (forward-filled).
    r = np.array([0.01, -0.02, 0.03, 0.0, 0.01, -0.01])
    closes = 100 * np.exp(np.cumsum(r))
    opens = np.concatenate([[100.0], closes[:-1]])
    docs = [
        {
            "open_time": D0 + k * 60_000,
            "open": str(opens[k]),
            "close": str(closes[k]),
            "quote_volume": str(k + 1),
        }
        for k in range(6)
    ]
    candles = {"AUSDT": docs, "BUSDT": [d for d in docs if d["open_time"] != D0 + 2 * 60_000]}
    params = GraphParams(window_minutes=4, cadence_minutes=2, max_lag=0, threshold=0.0)
    series = align_candles(candles, ["AUSDT", "BUSDT"], "1m", D0, D0 + 6 * 60_000)
    np.testing.assert_allclose(series.returns[0], r, atol=1e-12)
    np.testing.assert_allclose(series.returns[1], [0.01, -0.02, 0.0, 0.03, 0.01, -0.01], atol=1e-12)
    snap = build_snapshot(series, D0 + 4 * 60_000, params)
    assert snap is not None and snap.feature_names == list(FEATURE_NAMES)
    f = dict(zip(FEATURE_NAMES, snap.features[0], strict=True))
    w = r[:4]
    assert f["ret_window"] == pytest.approx(w.sum())
    assert f["vol_window"] == pytest.approx(np.sqrt((w**2).sum()))
    assert f["ret_period"] == pytest.approx(w[2:].sum())
    assert f["log_volume_mean"] == pytest.approx(np.log1p([1, 2, 3, 4]).mean())
    assert f["log_volume_std"] == pytest.approx(np.log1p([1, 2, 3, 4]).std())
    assert snap.features[1][FEATURE_NAMES.index("coverage")] == pytest.approx(0.75)
    assert snap.next_return is not None
    np.testing.assert_allclose(snap.next_return, [r[4:6].sum()] * 2)


# -- (c) relations and edges ------------------------------------------------------------------------


def test_pearson_and_spearman_match_their_definitions() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(240, 6))
    x[:, 5] = 0.0  # a flat asset correlates with nothing
    x[::7, 2] = 0.0  # ties
    rho = relation_matrix(x)
    np.testing.assert_allclose(rho[:5, :5], np.corrcoef(x[:, :5].T), atol=1e-12)
    assert (rho[5] == 0).all()
    ranks = average_ranks(x)
    col = x[:, 2]
    naive = np.array([(col < v).sum() + ((col == v).sum() - 1) / 2 for v in col])
    np.testing.assert_allclose(ranks[:, 2], naive)
    sp = relation_matrix(x, "spearman")
    np.testing.assert_allclose(sp[:5, :5], np.corrcoef(ranks[:, :5].T), atol=1e-12)
    # Spearman is unchanged by a monotone transform of one asset; Pearson is not.
    y = x.copy()
    y[:, 0] = np.exp(3 * y[:, 0])
    np.testing.assert_allclose(relation_matrix(y, "spearman"), sp, atol=1e-12)
    assert not np.allclose(relation_matrix(y), rho)


def test_threshold_and_top_k_edges_are_symmetric() -> None:
    rho = np.array(
        [
            [1.0, 0.9, -0.7, 0.1],
            [0.9, 1.0, 0.6, 0.2],
            [-0.7, 0.6, 1.0, 0.55],
            [0.1, 0.2, 0.55, 1.0],
        ]
    )
    ei, ew = correlation_edges(rho, 0.5)
    pairs = set(map(tuple, ei.T.tolist()))
    assert pairs == {(0, 1), (1, 0), (0, 2), (2, 0), (1, 2), (2, 1), (2, 3), (3, 2)}
    weights = dict(zip(map(tuple, ei.T.tolist()), ew.tolist(), strict=True))
    assert weights[(0, 2)] == -0.7  # a signed weight, kept by |rho|
    # top-1: each node keeps its strongest partner (union over both ends), still over the threshold.
    ei, _ = correlation_edges(rho, 0.0, top_k=1)
    assert set(map(tuple, ei.T.tolist())) == {(0, 1), (1, 0), (2, 0), (0, 2), (3, 2), (2, 3)}
    ei, _ = correlation_edges(rho, 0.8, top_k=1)
    assert set(map(tuple, ei.T.tolist())) == {(0, 1), (1, 0)}
    snap = GraphSnapshot("s", 0, list("abcd"), np.zeros((4, 1)), ["x"], ei, np.ones(ei.shape[1]))
    assert snap.density == pytest.approx(2 / 12)
    with pytest.raises(ValueError):
        GraphParams(measure="kendall")
    with pytest.raises(ValueError):
        GraphParams(interval="5m", window_minutes=242)


# -- (d) store round trip ---------------------------------------------------------------------------


def test_snapshots_round_trip_through_the_store(planted: tuple[Market, Candles], tmp_path: Path) -> None:
    _, candles = planted
    params = GraphParams()
    with SqliteStore(tmp_path / "store.sqlite") as store:
        store.upsert(CANDLES, [d for docs in candles.values() for d in docs])
        result = build_day(store, SYMBOLS, DAY, params)
        assert len(result.snapshots) == 24 and result.lead_lag_edges > 0
        ids = list_snapshot_ids(store, D0, D0 + DAY_MS)
        assert ids == [s.snapshot_id for s in result.snapshots] and ids == sorted(ids)
        assert list_snapshot_ids(store, D0 + 3_600_000, D0 + 3 * 3_600_000) == ids[1:3]
        assert list_snapshot_ids(store, measure="spearman") == []
        back = read_snapshots(store, D0, D0 + DAY_MS)
        for a, b in zip(result.snapshots, back, strict=True):
            assert (a.snapshot_id, a.as_of_ms, a.symbols, a.feature_names) == (
                b.snapshot_id,
                b.as_of_ms,
                b.symbols,
                b.feature_names,
            )
            np.testing.assert_array_equal(a.features, b.features)
            np.testing.assert_array_equal(a.edge_index, b.edge_index)
            np.testing.assert_array_equal(a.edge_weight, b.edge_weight)
            np.testing.assert_array_equal(a.edge_lag, b.edge_lag)
            np.testing.assert_array_equal(a.next_return, b.next_return)
            assert b.params["measure"] == "pearson" and b.params["window_minutes"] == 240
        # Stored documents: the target apart from the features, edges stamped with the date.
        nodes, edges = store.read_graph_snapshot(ids[0])
        assert set(nodes[0]["features"]) == set(FEATURE_NAMES) and "next_return" in nodes[0]
        assert {e["date"] for e in edges} == {"2024-08-01"} and {e["kind"] for e in edges} <= {
            "corr",
            "lead_lag",
        }
        # One document per undirected correlation; the snapshot holds both directions.
        snap = result.snapshots[0]
        assert len(edges) == len(snapshot_documents(snap)[1]) < snap.num_edges
        assert read_snapshot(store, "corr:1m:pearson:19990101T0000Z") is None


# -- (e) the Dagster asset --------------------------------------------------------------------------


def test_asset_materializes_with_metadata_and_a_picture(
    planted: tuple[Market, Candles], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARANGO_URL", raising=False)  # the embedded store under tmp_path, always
    _, candles = planted  # the partition's day and the day before it (the first windows reach into it)
    data_dir = tmp_path / "data"
    settings = Settings.from_env(data_dir=data_dir)
    with store_from_settings(settings) as db:
        db.upsert(CANDLES, [d for docs in candles.values() for d in docs])
        save_ledger(db, build_ledger(db, SYMBOLS, "1m", DAY, DAY, D0 + 2 * DAY_MS))
    run_config = {"ops": {"correlation_graph": {"config": {"symbols": SYMBOLS, "cadence_minutes": 120}}}}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [correlation_graph],
            partition_key=DAY.isoformat(),
            resources=resources_for(settings),
            run_config=run_config,
            instance=instance,
        )
        assert result.success
        (mat,) = result.asset_materializations_for_node("correlation_graph")
        meta = mat.metadata
        assert meta["snapshots"].value == 12 and meta["nodes"].value == 8
        assert meta["edges_mean"].value >= 12  # the two 3-cliques, both directions
        assert 0 < meta["density_mean"].value < 1
        md = meta["graph"].value
        assert isinstance(md, str) and md.startswith(
            "![corr:1m:pearson:20240801T2200Z](data:image/png;base64,"
        )
        png = base64.b64decode(md.split("base64,", 1)[1].rstrip(")"))
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000

        # The next day has no candles: the asset fails with a clear message and writes nothing.
        failed = dg.materialize(
            [correlation_graph],
            partition_key="2024-08-02",
            resources=resources_for(settings),
            run_config=run_config,
            instance=instance,
            raise_on_error=False,
        )
        assert not failed.success
        failure = next(e for e in failed.all_events if e.event_type_value == "STEP_FAILURE")
        assert "not complete" in str(failure.event_specific_data)
    with store_from_settings(settings) as db:
        assert len(list_snapshot_ids(db)) == 12
        assert list_snapshot_ids(db, D0 + DAY_MS) == []
    assert candle_range(day_snapshot_times(DAY, GraphParams()), GraphParams()) == (
        D0 - 4 * 3_600_000,
        D0 + DAY_MS,
    )
