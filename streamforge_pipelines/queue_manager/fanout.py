"""Splitting one load run into steps: symbol groups, each step's share of the budget, one report.

A load run covers days × symbols. Its symbols are split into **groups** (:func:`symbol_groups`), one
step each, which run in parallel (Dagster's multiprocess executor here, one pod per step under the
Kubernetes job executor) and then one step merges their reports (:func:`merge_reports`) into the
materialization and the ``complete`` check. Nothing here knows Dagster.

How many groups: a step is worth its start-up (a process, or a pod) only for a sizeable share of
the work, so a run gets one group per ``LOAD_STEP_SYMBOL_DAYS`` symbol-days (at least one), never
more groups than symbols nor more than ``LOAD_MAX_STEPS``. The symbols are dealt out in contiguous,
evenly sized groups, so each step loads whole symbols (one loader task each) over the whole range.

The budget: the steps of all load runs now running share one exchange budget, so each step's
governors get ``EXCHANGE_WEIGHT_SHARE / (runs × groups)`` of the limit (:func:`step_share`), with
``runs`` the load runs the instance has started (the pool ``binance`` caps them at
``EXCHANGE_LOAD_SLOTS``). That share is recomputed whenever a step starts (a retried step too);
between starts the exchange's own used-weight header keeps the processes of one IP under the limit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any, TypeVar

from ..settings import Settings
from .tracking import ExchangeTotals

R = TypeVar("R")


def symbol_groups(
    symbols: Sequence[str], days: int, *, max_steps: int, symbol_days_per_step: int
) -> list[tuple[str, ...]]:
    """``symbols`` in contiguous, evenly sized groups: one per ``symbol_days_per_step`` symbol-days of
    the run (at least one), at most ``max_steps`` and at most one per symbol."""
    if not symbols:
        return []
    wanted = math.ceil(len(symbols) * max(1, days) / max(1, symbol_days_per_step))
    n = max(1, min(len(symbols), max_steps, wanted))
    size, extra = divmod(len(symbols), n)
    groups, at = [], 0
    for i in range(n):
        step = size + (1 if i < extra else 0)
        groups.append(tuple(symbols[at : at + step]))
        at += step
    return groups


def step_share(settings: Settings, groups: int, runs: int) -> float:
    """A step's share of the exchange limit: the deployment's share split over the steps of the load
    runs running now (``runs``, at least this one) × this run's ``groups``."""
    return settings.exchange_weight_share / (max(1, runs) * max(1, groups))


def step_settings(settings: Settings, share: float) -> Settings:
    """``settings`` with the step's share of the limit (what its governors and commands use)."""
    return settings.model_copy(update={"exchange_weight_share": share})


def _merged(name: str, values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, dict):
        out: dict[Any, Any] = {}
        for v in values:
            out.update(v)
        return out
    if isinstance(first, list):
        return [x for v in values for x in v]
    if isinstance(first, bool):
        return all(values)
    if isinstance(first, int):
        return sum(values)
    if isinstance(first, float):  # wall seconds: the steps ran side by side
        return max(values)
    if isinstance(first, ExchangeTotals):
        return ExchangeTotals.combined(values)
    raise TypeError(f"cannot merge the field {name} of load reports ({type(first).__name__})")


def merge_reports(reports: Sequence[R]) -> R:
    """One report of a run from its steps' reports (the same dataclass: ``LoadReport`` or
    ``TradesReport``): the request over all their symbols, tasks and errors united, counts summed,
    ledgers and day figures concatenated, the wall time the longest step's."""
    if not reports:
        raise ValueError("no step reports to merge")
    first: Any = reports[0]
    if len(reports) == 1:
        return first
    symbols = tuple(s for r in reports for s in r.request.symbols)  # type: ignore[attr-defined]
    merged = {
        f.name: _merged(f.name, [getattr(r, f.name) for r in reports])
        for f in fields(first)
        if f.name != "request"
    }
    return replace(first, request=replace(first.request, symbols=symbols), **merged)
