"""The queue-manager role: plan a load, command the loaders, follow them until stored, keep the ledgers.

* :mod:`.requests` — what is asked (:class:`LoadRequest`, :class:`TradesRequest`) and what is
  reported (:class:`LoadReport`, :class:`TradesReport`, the per (symbol, day) figures);
* :mod:`.commands` — the one command builder: task plans -> the start commands on ``queue-control``;
* :mod:`.tasks` — running a load's tasks to the end (task records, loaders, ``queue-events``), and
  stopping them when the run is cancelled (:mod:`.interrupts`: :func:`run_stoppable`);
* :mod:`.loads` — :func:`load`: a whole load of any dataset with its completeness check and one
  round of repair;
* :mod:`.ledger` (candles: a time grid per day) and :mod:`.trades_ledger` (trades: id spans per day)
  — the completeness ledgers;
* :mod:`.tracking` (:class:`~.tracking.TaskTracker`: tasks through their telemetry) and
  :mod:`.telemetry` (reading ``queue-events``), shared with the ``queue_events`` sensor and the runner;
* :mod:`.streams` (live streams: start/stop commands, the desired state, waiting for the worker's
  answer) and :mod:`.stream_watch` (heartbeats into each stream's state, what to send again, the
  days streams completed), for the ``live_streams`` job and the ``streams`` sensor.

Below the Dagster layer (assets, sensors and the runner call it), above the workers, the store and
the ``kafka`` package; it never imports Dagster. The names below are its public face; the ledgers,
tracking and telemetry are imported from their modules (``loads.trades_ledger``, the function, is not
re-exported: at the package level that name is the trades ledger's module).
"""

from .commands import TaskPlan, build_commands, range_repairs, weight_share, whole_range
from .interrupts import run_stoppable
from .loads import (
    LoadRun,
    RepairOutcome,
    duplicate_keys,
    ledger_of,
    load,
    measure,
    repair_candles,
    unfinished_plans,
)
from .requests import (
    DayFigure,
    DayTotals,
    LoadReport,
    LoadRequest,
    TradesReport,
    TradesRequest,
    expected_counts,
    figures,
)
from .tasks import Launch

__all__ = [
    "DayFigure",
    "DayTotals",
    "Launch",
    "LoadReport",
    "LoadRequest",
    "LoadRun",
    "RepairOutcome",
    "TaskPlan",
    "TradesReport",
    "TradesRequest",
    "build_commands",
    "duplicate_keys",
    "expected_counts",
    "figures",
    "ledger_of",
    "load",
    "measure",
    "range_repairs",
    "repair_candles",
    "run_stoppable",
    "unfinished_plans",
    "weight_share",
    "whole_range",
]
