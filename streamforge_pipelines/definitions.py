"""The composition root: the only place where assets, jobs, schedules, sensors and resources meet."""

import dagster as dg

from .assets.candles import CANDLE_ASSETS
from .assets.coverage import candle_coverage
from .assets.gnn import gnn_model
from .assets.graph import correlation_graph
from .assets.trades import agg_trades
from .resources import default_resources
from .schedules import weekly_gnn
from .sensors.graph_trigger import graph_trigger_sensor
from .sensors.queue_events import COVERAGE_JOB, queue_events_sensor

candles_jobs = [
    dg.define_asset_job(
        name=f"{a.key.path[-1]}_job",
        selection=dg.AssetSelection.assets(a),
        description=f"Load {a.key.path[-1]} for a day or a date range (one run per range).",
    )
    for a in CANDLE_ASSETS
]

agg_trades_job = dg.define_asset_job(
    name="agg_trades_job",
    selection=dg.AssetSelection.assets(agg_trades),
    description="Load aggregate trades for a day or a date range (one run per range).",
)

correlation_graph_job = dg.define_asset_job(
    name="correlation_graph_job",
    selection=dg.AssetSelection.assets(correlation_graph),
    description="Build the correlation-graph snapshots of a day (candles of the day must be complete).",
)

gnn_model_job = dg.define_asset_job(
    name="gnn_model_job",
    selection=dg.AssetSelection.assets(gnn_model),
    description="Train the temporal GNN and its baselines on the graph snapshots of a date range (one run).",
)

coverage_job = dg.define_asset_job(name=COVERAGE_JOB, selection=dg.AssetSelection.assets(candle_coverage))

#: Yesterday's 5m candles, every day at 00:30 UTC (turn on in the UI or with `dagster schedule start`).
daily_candles_schedule = dg.build_schedule_from_partitioned_job(
    next(j for j in candles_jobs if j.name == "candles_5m_job"),
    name="daily_candles_5m",
    hour_of_day=0,
    minute_of_hour=30,
)

defs = dg.Definitions(
    assets=[*CANDLE_ASSETS, candle_coverage, agg_trades, correlation_graph, gnn_model],
    jobs=[*candles_jobs, agg_trades_job, coverage_job, correlation_graph_job, gnn_model_job],
    schedules=[daily_candles_schedule, weekly_gnn],
    sensors=[queue_events_sensor, graph_trigger_sensor],
    resources=default_resources(),
)
