"""The schedules: yesterday's candles every day, the GNN retrained every week on the latest graphs.

``daily_candles_5m`` (00:30 UTC, or ``STREAMFORGE_DAILY_CRON`` as the definitions load; off until
turned on in the UI or with ``dagster schedule start``)
requests ``candles_5m_job`` for yesterday × the universe's symbols (``STREAMFORGE_UNIVERSE``): one
run per stretch of the symbol partitions they form (one run when the universe was added at once; the
schedule adds the symbols the instance does not know yet). The ``graph_trigger_sensor`` builds the
day's graph once every symbol of it is complete.

``weekly_gnn`` (Mondays 02:00 UTC, off until turned on in the UI or with ``dagster schedule start``)
requests one ``gnn_model_job`` run over the :data:`GNN_TRAINING_DAYS` days ending yesterday, with
``STREAMFORGE_INTERVAL``'s snapshots - the graphs the trigger sensor builds after the daily candles
(``daily_candles_5m`` at 00:30). With fewer snapshots than the walk-forward splits need, the run
fails with one line saying how many there are.
"""

import os
from datetime import timedelta

import dagster as dg

from .names import (
    DAILY_CANDLES_INTERVAL,
    DAILY_CANDLES_SCHEDULE,
    GNN_JOB,
    GNN_MODEL,
    WEEKLY_GNN_SCHEDULE,
    candles_job,
)
from .partitions import ensure_symbols, range_tags
from .settings import Settings


def daily_cron() -> str:
    """``STREAMFORGE_DAILY_CRON`` alone (the other settings are the resources', read per tick): a bad
    value is one line when the definitions load."""
    cron = os.environ.get("STREAMFORGE_DAILY_CRON", "")
    return Settings.from_env({"STREAMFORGE_DAILY_CRON": cron} if cron else {}).daily_cron


#: The training range of a scheduled run: two weeks of hourly snapshots (336 per asset).
GNN_TRAINING_DAYS = 14


@dg.schedule(
    name=WEEKLY_GNN_SCHEDULE,
    job_name=GNN_JOB,
    cron_schedule="0 2 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=f"Retrain the GNN (and its baselines) on the {GNN_TRAINING_DAYS} days ending yesterday.",
)
def weekly_gnn(context: dg.ScheduleEvaluationContext, settings: dg.ResourceParam[Settings]) -> dg.RunRequest:
    last = context.scheduled_execution_time.date() - timedelta(days=1)
    first = last - timedelta(days=GNN_TRAINING_DAYS - 1)
    return dg.RunRequest(
        run_key=f"{WEEKLY_GNN_SCHEDULE}:{settings.interval}:{last}",
        run_config={"ops": {GNN_MODEL: {"config": {"interval": settings.interval}}}},
        tags=range_tags(first, last),
    )


@dg.schedule(
    name=DAILY_CANDLES_SCHEDULE,
    job_name=candles_job(DAILY_CANDLES_INTERVAL),
    cron_schedule=daily_cron(),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=f"Load yesterday's {DAILY_CANDLES_INTERVAL} candles of the universe's symbols (one run).",
)
def daily_candles(
    context: dg.ScheduleEvaluationContext, settings: dg.ResourceParam[Settings]
) -> list[dg.RunRequest]:
    day = context.scheduled_execution_time.date() - timedelta(days=1)
    return [
        dg.RunRequest(run_key=f"{day}:{first}..{last}", tags=range_tags(day, day, (first, last)))
        for first, last in ensure_symbols(context.instance, settings.universe)
    ]
