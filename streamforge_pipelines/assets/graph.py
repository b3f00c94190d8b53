"""``correlation_graph``: graph-builder snapshots of a day, downstream of the day's candles.

Per daily partition: check the completeness ledger (every symbol's candles of the day stored, or
absent in confirmed exchange downtime), then build a snapshot every ``cadence_minutes`` from the
trailing window of candles and write them to the store (:mod:`..analytics.graph_store`). The logic
lives in :mod:`streamforge_pipelines.analytics`; this is the Dagster wrapper.
"""

import base64
import statistics
from datetime import date

import dagster as dg
from pydantic import Field

from ..analytics.graph_builder import MEASURES, GraphParams
from ..analytics.graph_store import DayGraphs, build_day, render_png
from ..intervals import MINUTE_MS, interval_ms
from ..ledger import window_gaps
from ..partitions import CANDLE_INTERVALS, DAILY
from ..resources import StoreResource, resolve_settings
from ..workers.loader_candles import now_ms

GROUP = "analytics"


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


def graph_metadata(result: DayGraphs) -> dict[str, dg.MetadataValue]:
    """The materialization's metadata: counts, sizes, timings and a picture of the last snapshot."""
    snaps = result.snapshots
    meta: dict[str, dg.MetadataValue] = {
        "snapshots": dg.MetadataValue.int(len(snaps)),
        "snapshots_skipped": dg.MetadataValue.int(len(result.skipped_ms)),
        "snapshots_with_target": dg.MetadataValue.int(result.with_target),
        "nodes": dg.MetadataValue.int(snaps[-1].num_nodes if snaps else 0),
        "edges_mean": dg.MetadataValue.float(statistics.fmean(result.edges) if snaps else 0.0),
        "edges_max": dg.MetadataValue.int(max(result.edges, default=0)),
        "lead_lag_edges": dg.MetadataValue.int(result.lead_lag_edges),
        "density_mean": dg.MetadataValue.float(statistics.fmean(s.density for s in snaps) if snaps else 0.0),
        "build_seconds": dg.MetadataValue.float(round(result.build_seconds, 3)),
        "write_seconds": dg.MetadataValue.float(round(result.write_seconds, 3)),
    }
    if snaps:
        last = snaps[-1]
        meta["last_snapshot_id"] = dg.MetadataValue.text(last.snapshot_id)
        png = base64.b64encode(render_png(last)).decode()
        meta["graph"] = dg.MetadataValue.md(f"![{last.snapshot_id}](data:image/png;base64,{png})")
    return meta


@dg.asset(
    name="correlation_graph",
    partitions_def=DAILY,
    group_name=GROUP,
    # the config's interval picks which candles it reads (1m by default, 5m in `make run`)
    deps=[dg.AssetKey(f"candles_{i}") for i in CANDLE_INTERVALS],
    description="Correlation-graph snapshots of the day (graph-builder): Pearson/Spearman relations of "
    "log returns over a trailing window, lead-lag edges, node features and the next-period target.",
)
def correlation_graph(
    context: dg.AssetExecutionContext, config: GraphConfig, store: StoreResource
) -> dg.MaterializeResult:
    try:
        params = config.params()
    except ValueError as exc:
        raise dg.Failure(f"invalid graph config: {exc}") from exc
    settings = resolve_settings(store)
    symbols = sorted({s.upper() for s in config.symbols} or set(settings.universe))
    day = date.fromisoformat(context.partition_key)
    with store.open(settings) as db:
        gaps = window_gaps(db, symbols, params.interval, day, params.window_minutes * MINUTE_MS, now_ms())
        if gaps:
            missing = ", ".join(f"{s} ({why})" for s, why in sorted(gaps.items()))
            raise dg.Failure(
                f"candles_{params.interval} of {day} are not complete: {missing}; "
                "load them first (the graph needs every symbol of its window)"
            )
        result = build_day(db, symbols, day, params)
    context.log.info(
        f"{len(result.snapshots)} snapshots ({len(result.skipped_ms)} skipped) of {len(symbols)} assets "
        f"in {result.build_seconds:.2f}s, written in {result.write_seconds:.2f}s"
    )
    return dg.MaterializeResult(metadata=graph_metadata(result))
