"""The names of the Dagster layer's things, defined once: assets, jobs, groups, checks, schedules,
sensors and run tags.

Asset keys and job names are the contract of the UI, the runner, the sensors' run requests and the
tests; a typo in one of them is a run request for a job that does not exist, found only when a
sensor fires. So every module that names one imports it from here. Plain strings, no Dagster import:
the runner and the tests use them without loading the definitions.
"""

from __future__ import annotations

# ---- groups ---------------------------------------------------------------------------------------

#: Loaded market data and its coverage.
MARKET_DATA_GROUP = "market_data"
#: Graphs and models built from the market data.
ANALYTICS_GROUP = "analytics"
#: What the live streams land (recorded by the streams sensor, started by the ``live_streams`` job).
LIVE_GROUP = "live"

# ---- assets ---------------------------------------------------------------------------------------

AGG_TRADES = "agg_trades"
CANDLE_COVERAGE = "candle_coverage"
CORRELATION_GRAPH = "correlation_graph"
GNN_MODEL = "gnn_model"


def candles_asset(interval: str) -> str:
    """The candles asset of an interval: ``candles_5m``."""
    return f"candles_{interval}"


#: Intervals that have a candles asset (daily partitions need intervals of one day or less). Here,
#: not in ``partitions``, so that the CLI (every worker process's entry point) names them without
#: importing Dagster, which costs each process about a second of start-up.
CANDLE_INTERVALS: tuple[str, ...] = ("1m", "5m", "15m", "1h", "4h", "1d")


#: The live datasets, one asset per stream kind: what the stream workers land outside any run.
LIVE_AGG_TRADES = "live_agg_trades"
LIVE_TRADES = "live_trades"
LIVE_CANDLES = "live_candles"
LIVE_BOOK = "live_book"
LIVE_ASSETS: tuple[str, ...] = (LIVE_AGG_TRADES, LIVE_TRADES, LIVE_CANDLES, LIVE_BOOK)


def live_asset(task_type: str) -> str | None:
    """The live asset a stream task type feeds (``ws_candles_5m`` -> ``live_candles``), else None."""
    if task_type.startswith("ws_candles_"):
        return LIVE_CANDLES
    by_type = {"ws_agg_trades": LIVE_AGG_TRADES, "ws_trades": LIVE_TRADES, "ws_orderbook": LIVE_BOOK}
    return by_type.get(task_type)


# ---- checks ---------------------------------------------------------------------------------------

#: The asset check of a loaded dataset: nothing missing per its completeness ledger.
COMPLETE_CHECK = "complete"
#: The asset check of a live dataset: every stream feeding it is wanted and heard from, none silent.
FRESH_CHECK = "fresh"

# ---- jobs -----------------------------------------------------------------------------------------


def job_of(asset: str) -> str:
    """The job that materializes one asset: ``candles_5m_job``, ``gnn_model_job``."""
    return f"{asset}_job"


def candles_job(interval: str) -> str:
    """The job of an interval's candles: ``candles_5m_job``."""
    return job_of(candles_asset(interval))


AGG_TRADES_JOB = job_of(AGG_TRADES)
#: The jobs that load from the exchange (their runs share its weight budget).
LOAD_JOBS = frozenset({*(candles_job(i) for i in CANDLE_INTERVALS), AGG_TRADES_JOB})
COVERAGE_JOB = job_of(CANDLE_COVERAGE)
GRAPH_JOB = job_of(CORRELATION_GRAPH)
GNN_JOB = job_of(GNN_MODEL)
#: Starts or stops a live stream (an op job: it sends a command, it materializes nothing).
LIVE_STREAMS_JOB = "live_streams"
LIVE_STREAMS_OP = "stream_command"

# ---- schedules and sensors ------------------------------------------------------------------------

#: The candles of this interval are loaded by the daily schedule.
DAILY_CANDLES_INTERVAL = "5m"
DAILY_CANDLES_SCHEDULE = f"daily_candles_{DAILY_CANDLES_INTERVAL}"
WEEKLY_GNN_SCHEDULE = "weekly_gnn"
QUEUE_EVENTS_SENSOR = "queue_events_sensor"
GRAPH_TRIGGER_SENSOR = "graph_trigger_sensor"
STREAMS_SENSOR = "streams_sensor"
SYMBOLS_SENSOR = "symbol_partitions_sensor"

# ---- partitions -----------------------------------------------------------------------------------

#: The dynamic partitions of the symbol dimension (the symbols a day × symbol asset knows).
SYMBOL_PARTITIONS = "symbols"
#: The dimensions of the day × symbol assets (Dagster orders a key's parts by dimension name).
DATE_DIM = "date"
SYMBOL_DIM = "symbol"

# ---- run tags -------------------------------------------------------------------------------------

#: Dagster's tags that make one run of a daily-partitioned asset cover a range of partitions.
PARTITION_RANGE_START = "dagster/asset_partition_range_start"
PARTITION_RANGE_END = "dagster/asset_partition_range_end"
#: Every run of one ``streamforge run`` carries this tag (filter on it in the UI's run list).
MAIN_RUN_TAG = "streamforge/main_run"
#: Set on the coverage runs the ``queue_events_sensor`` requests: the run whose load they follow.
SOURCE_RUN_TAG = "streamforge/source_run"
#: Set on the graph runs the ``graph_trigger_sensor`` requests.
TRIGGER_TAG = "streamforge/trigger"
