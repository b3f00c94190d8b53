"""Schedules beyond the candles' daily one: the GNN retrained every week on the latest graphs.

``weekly_gnn`` (Mondays 02:00 UTC, off until turned on in the UI or with ``dagster schedule start``)
requests one ``gnn_model_job`` run over the :data:`GNN_TRAINING_DAYS` days ending yesterday, with
``STREAMFORGE_INTERVAL``'s snapshots - the graphs the trigger sensor builds after the daily candles
(``daily_candles_5m`` at 00:30). With fewer snapshots than the walk-forward splits need, the run
fails with one line saying how many there are.
"""

from datetime import timedelta

import dagster as dg

from .names import GNN_JOB, GNN_MODEL, WEEKLY_GNN_SCHEDULE
from .partitions import range_tags
from .settings import Settings

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
