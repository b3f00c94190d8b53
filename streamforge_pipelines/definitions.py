"""The composition root: the only place where assets, jobs, schedules, sensors and resources meet.

:data:`defs` is what ``dagster dev``, the daemon and a code server load: its resources read the
environment (:func:`~.resources.resources_for`). :func:`build_definitions` is the same with other
resources: ``streamforge run`` passes the Settings object of the stack it started.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from .assets.candles import CANDLE_ASSETS
from .assets.coverage import candle_coverage
from .assets.gnn import gnn_model
from .assets.graph import correlation_graph
from .assets.live import LIVE_CHECKS, LIVE_SPECS, live_streams
from .assets.trades import agg_trades
from .names import job_of
from .resources import resources_for
from .schedules import daily_candles, weekly_gnn
from .sensors.graph_trigger import graph_trigger_sensor
from .sensors.queue_events import queue_events_sensor
from .sensors.streams import streams_sensor
from .sensors.symbols import symbol_partitions_sensor

ASSETS: list[dg.AssetsDefinition] = [
    *CANDLE_ASSETS,
    candle_coverage,
    agg_trades,
    correlation_graph,
    gnn_model,
]

#: What each asset's job is for (the job of an asset without an entry has no description).
JOB_DESCRIPTIONS: dict[str, str] = {
    **{
        a.key.path[-1]: f"Load {a.key.path[-1]} for days × symbols (one run per range)."
        for a in CANDLE_ASSETS
    },
    agg_trades.key.path[-1]: "Load aggregate trades for days × symbols (one run per range).",
    correlation_graph.key.path[-1]: "Build the correlation-graph snapshots of a day (candles of the day "
    "must be complete).",
    gnn_model.key.path[-1]: "Train the temporal GNN and its baselines on the graph snapshots of a date "
    "range (one run).",
}


def _job(asset: dg.AssetsDefinition) -> Any:
    """The job of one asset (``<asset>_job``): what the UI, sensors, schedules and the runner launch."""
    name = asset.key.path[-1]
    return dg.define_asset_job(
        name=job_of(name), selection=dg.AssetSelection.assets(asset), description=JOB_DESCRIPTIONS.get(name)
    )


JOBS = [_job(a) for a in ASSETS]


#: How a launched run executes its steps: each in a process of its own (a load run's symbol groups
#: side by side), forked from a server that imported these definitions once per run, so a step starts
#: in a fraction of a second instead of importing Dagster and StreamForge again (seconds per step).
#: In a cluster the Kubernetes job executor takes its place (one pod per step).
EXECUTOR = dg.multiprocess_executor.configured({"start_method": {"forkserver": {}}})


def build_definitions(resources: Mapping[str, Any] | None = None) -> dg.Definitions:
    """The definitions with ``resources`` (default: :func:`~.resources.resources_for` the environment)."""
    return dg.Definitions(
        assets=[*ASSETS, *LIVE_SPECS],
        asset_checks=LIVE_CHECKS,
        jobs=[*JOBS, live_streams],
        schedules=[daily_candles, weekly_gnn],
        sensors=[queue_events_sensor, graph_trigger_sensor, streams_sensor, symbol_partitions_sensor],
        executor=EXECUTOR,
        resources=dict(resources) if resources is not None else resources_for(),
    )


defs = build_definitions()
