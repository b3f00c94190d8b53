"""``correlation_graph``: graph-builder snapshots of a day, downstream of the day's candles.

Per daily partition: check the completeness ledger (every symbol's candles of the day stored, or
absent in confirmed exchange downtime), then build a snapshot every ``cadence_minutes`` from the
trailing window of candles and write them to the store (:mod:`..analytics.graph_store`). A date
range (a backfill, ``make run``) is one run (``BackfillPolicy.single_run``): every day is checked
first, then built in order; the metadata sums the range. The logic
lives in :mod:`streamforge_pipelines.analytics`; this is the Dagster wrapper.
"""

import base64
import statistics
from dataclasses import dataclass, field

import dagster as dg
from pydantic import Field

from ..analytics.graph_builder import MEASURES, GraphParams
from ..analytics.graph_store import DayGraphs, build_day, render_png
from ..analytics.snapshot import GraphSnapshot
from ..intervals import MINUTE_MS, interval_ms, now_ms
from ..names import ANALYTICS_GROUP, CORRELATION_GRAPH, candles_asset
from ..partitions import CANDLE_INTERVALS, DAILY, partition_span
from ..queue_manager.ledger import window_gaps
from ..settings import Settings
from ..store import Store


class GraphConfig(dg.Config):
    interval: str = Field(default="1m", description=f"Candle interval, one of {', '.join(CANDLE_INTERVALS)}")
    symbols: list[str] = Field(default_factory=list, description="Empty = the configured universe")
    cadence_minutes: int = Field(default=60, description="A snapshot every this many minutes of the day")
    window_minutes: int = Field(default=240, description="Trailing window of each snapshot")
    measure: str = Field(default="pearson", description=f"Relation measure: {', '.join(MEASURES)}")
    threshold: float = Field(default=0.5, description="Correlation edges need |rho| >= threshold")
    top_k: int = Field(default=0, description="> 0: keep only each asset's top_k strongest correlations")
    max_lag: int = Field(default=5, description="Lead-lag edges up to this lag in candles (0 = none)")
    lead_threshold: float = Field(default=0.4, description="Lead-lag edges need |lagged rho| >= this")
    min_coverage: float = Field(default=0.5, description="Skip a snapshot whose window has fewer candles")

    def params(self) -> GraphParams:
        return GraphParams(
            interval=self.interval,
            cadence_minutes=self.cadence_minutes,
            window_minutes=self.window_minutes,
            measure=self.measure,
            threshold=self.threshold,
            top_k=self.top_k,
            max_lag=self.max_lag,
            lead_threshold=self.lead_threshold,
            min_coverage=self.min_coverage,
        )


def graph_run_config(interval: str, symbols: list[str]) -> dict[str, object]:
    """The graph config that ``make run`` and the graph trigger sensor use: the asset's defaults
    (hourly snapshots, 240-minute window, Pearson) with lead-lag edges looked for up to one snapshot
    period, the horizon the GNN predicts (12 candles at 5m, 60 at 1m)."""
    cadence = GraphConfig.model_fields["cadence_minutes"].default
    return {
        "interval": interval,
        "symbols": list(symbols),
        "max_lag": max(1, cadence * MINUTE_MS // interval_ms(interval)),
    }


@dataclass
class GraphRun:
    """What one run built over its days (per-day snapshots are written as they are built and not
    kept, so a backfill of years holds one day's snapshots at a time)."""

    days: int = 0
    snapshots: int = 0
    skipped: int = 0
    with_target: int = 0
    edges: list[int] = field(default_factory=list)
    densities: list[float] = field(default_factory=list)
    lead_lag_edges: int = 0
    build_seconds: float = 0.0
    write_seconds: float = 0.0
    last: GraphSnapshot | None = None

    def add(self, day: DayGraphs) -> None:
        self.days += 1
        self.snapshots += len(day.snapshots)
        self.skipped += len(day.skipped_ms)
        self.with_target += day.with_target
        self.edges += day.edges
        self.densities += [s.density for s in day.snapshots]
        self.lead_lag_edges += day.lead_lag_edges
        self.build_seconds += day.build_seconds
        self.write_seconds += day.write_seconds
        if day.snapshots:
            self.last = day.snapshots[-1]


def graph_metadata(run: GraphRun) -> dict[str, dg.MetadataValue]:
    """The materialization's metadata: counts, sizes, timings and a picture of the last snapshot."""
    meta: dict[str, dg.MetadataValue] = {
        "days": dg.MetadataValue.int(run.days),
        "snapshots": dg.MetadataValue.int(run.snapshots),
        "snapshots_skipped": dg.MetadataValue.int(run.skipped),
        "snapshots_with_target": dg.MetadataValue.int(run.with_target),
        "nodes": dg.MetadataValue.int(run.last.num_nodes if run.last else 0),
        "edges_mean": dg.MetadataValue.float(statistics.fmean(run.edges) if run.edges else 0.0),
        "edges_total": dg.MetadataValue.int(sum(run.edges)),
        "edges_max": dg.MetadataValue.int(max(run.edges, default=0)),
        "lead_lag_edges": dg.MetadataValue.int(run.lead_lag_edges),
        "density_mean": dg.MetadataValue.float(statistics.fmean(run.densities) if run.densities else 0.0),
        "build_seconds": dg.MetadataValue.float(round(run.build_seconds, 3)),
        "write_seconds": dg.MetadataValue.float(round(run.write_seconds, 3)),
    }
    if run.last is not None:
        last = run.last
        meta["last_snapshot_id"] = dg.MetadataValue.text(last.snapshot_id)
        png = base64.b64encode(render_png(last)).decode()
        meta["graph"] = dg.MetadataValue.md(f"![{last.snapshot_id}](data:image/png;base64,{png})")
    return meta


@dg.asset(
    name=CORRELATION_GRAPH,
    partitions_def=DAILY,
    # a date range (a backfill, make run) is one run that builds its days in order
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=ANALYTICS_GROUP,
    # the config's interval picks which candles it reads (1m by default, 5m in `make run`)
    deps=[dg.AssetKey(candles_asset(i)) for i in CANDLE_INTERVALS],
    description="Correlation-graph snapshots of the day (graph-builder): Pearson/Spearman relations of "
    "log returns over a trailing window, lead-lag edges, node features and the next-period target.",
)
def correlation_graph(
    context: dg.AssetExecutionContext,
    config: GraphConfig,
    settings: dg.ResourceParam[Settings],
    store: dg.ResourceParam[Store],
) -> dg.MaterializeResult:
    try:
        params = config.params()
    except ValueError as exc:
        raise dg.Failure(f"invalid graph config: {exc}") from exc
    symbols = sorted({s.upper() for s in config.symbols} or set(settings.universe))
    span = partition_span(context)
    run = GraphRun()
    # Every day first: a range with a gap fails before it writes anything.
    window_ms = params.window_minutes * MINUTE_MS
    clock = now_ms()
    gaps = {
        d: g for d in span.days if (g := window_gaps(store, symbols, params.interval, d, window_ms, clock))
    }
    if gaps:
        missing = ", ".join(f"{s} ({why})" for g in gaps.values() for s, why in sorted(g.items()))
        raise dg.Failure(
            f"{candles_asset(params.interval)} of {span.label} are not complete: {_first(missing)}; "
            "load them first (the graph needs every symbol of its window)"
        )
    for day in span.days:
        result = build_day(store, symbols, day, params)
        run.add(result)
        context.log.info(
            f"{day}: {len(result.snapshots)} snapshots ({len(result.skipped_ms)} skipped) of "
            f"{len(symbols)} assets in {result.build_seconds:.2f}s, "
            f"written in {result.write_seconds:.2f}s"
        )
    return dg.MaterializeResult(metadata=graph_metadata(run))


def _first(text: str, limit: int = 600) -> str:
    """At most ``limit`` characters of a long enumeration (a backfill may miss many days)."""
    return text if len(text) <= limit else text[:limit].rsplit(", ", 1)[0] + ", ..."
