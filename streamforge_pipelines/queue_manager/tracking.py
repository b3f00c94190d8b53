"""Following tasks through their telemetry.

A task is **complete** when its loader reported ``finished`` with its count per partition and, for
every one of those partitions, the connector reported that it stored the task's end marker (so
everything before the marker on that partition is stored). It has **failed** when its loader
reported ``error``. ``interrupted`` (a loader stopped by SIGTERM: a pod moved, a deploy) is not an
end: a standalone loader commits a command only after its task ended, so the next loader of the
group takes the command again and resumes from its checkpoint (``started`` again); a waiter gives
up on it only as on any task whose telemetry stops (stalled). :class:`TaskTracker` folds
``queue-events`` into that view; it is a pure function of the events (duplicates are ignored by
``event_id``), used alike by the asset step that waits for its tasks and the progress display.

**One writer of task records.** The step that runs a load (:func:`~.tasks.run_tasks`) is the only
code that writes its tasks' records: it creates them, writes :meth:`TaskState.record_fields` when a
task's status changes, and writes each task's final status (``complete``, ``failed``, or
``stalled`` when it gave up on it) when it returns. It follows its own tasks to the end and knows
when they are stored, so a record never says more than the step knows, and no second reader of
the same events can move a record backwards or race the step's final write. The
``queue_events_sensor`` only reads records and events (``docs/materialization.md``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..protocol import CONNECTOR, Event

#: Record statuses written to the ``tasks`` collection beyond the telemetry statuses.
COMPLETE = "complete"
FAILED = "failed"
STALLED = "stalled"
FINAL_STATUSES = frozenset({COMPLETE, FAILED})
#: Error types a loader reports for a task that no second try can carry out: the exchange refused
#: the request itself (a bad symbol), or the command cannot be carried out as given.
FINAL_ERRORS = ("ExchangeRejected", "TaskInvalid", "CommandInvalid")


def is_final_error(error: str | None) -> bool:
    """Whether a failed task's error (``"<type>: <detail>"``) is final: trying again cannot help."""
    return error is not None and error.split(":", 1)[0] in FINAL_ERRORS


@dataclass
class TaskState:
    queue_id: str
    symbol: str | None = None
    type: str | None = None
    loader_status: str = "pending"
    loaded: int = 0
    loader_partitions: dict[int, int] | None = None
    stored_by: dict[str, int] = field(default_factory=dict)
    acked: dict[int, int] = field(default_factory=dict)
    error: str | None = None
    last_seen: float = 0.0
    #: Exchange figures the loader reported at its end (docs/rate-limits.md).
    http_429: int = 0
    http_418: int = 0
    retries: int = 0
    weight_used_peak: float = 0.0
    #: Days the loader read from each source ({"archive": n, "rest": m}), from its ``finished``.
    days_by_source: dict[str, int] = field(default_factory=dict)

    @property
    def stored(self) -> int:
        """Records the connector(s) reported as stored (progress, not a completeness proof)."""
        return max(sum(self.stored_by.values()), sum(self.acked.values()))

    @property
    def complete(self) -> bool:
        return self.loader_partitions is not None and all(p in self.acked for p in self.loader_partitions)

    @property
    def failed(self) -> bool:
        return self.loader_status == "error"

    @property
    def done(self) -> bool:
        return self.complete or self.failed

    @property
    def status(self) -> str:
        if self.complete:
            return COMPLETE
        if self.failed:
            return FAILED
        return self.loader_status

    def record_fields(self) -> dict[str, Any]:
        """The fields of the task record that this state determines."""
        out: dict[str, Any] = {"status": self.status, "records_written": self.loaded}
        if self.loader_partitions is not None:
            out["partitions"] = {str(p): n for p, n in self.loader_partitions.items()}
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class ExchangeTotals:
    """Exchange figures of several tasks: counts summed, the budget share's peak kept."""

    http_429: int = 0
    http_418: int = 0
    retries: int = 0
    weight_budget_used: float = 0.0
    #: Days read from each source over the tasks, summed ({"archive": n, "rest": m}).
    days_by_source: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, states: Iterable[TaskState]) -> ExchangeTotals:
        """Figures of several tasks, from what each loader reported at its end."""
        return cls.combined(
            cls(t.http_429, t.http_418, t.retries, t.weight_used_peak, t.days_by_source) for t in states
        )

    @classmethod
    def combined(cls, totals: Iterable[ExchangeTotals]) -> ExchangeTotals:
        """Figures of several loads (the steps of one run): counts summed, the peak kept."""
        out = cls()
        for t in totals:
            out.http_429 += t.http_429
            out.http_418 += t.http_418
            out.retries += t.retries
            out.weight_budget_used = max(out.weight_budget_used, t.weight_budget_used)
            for where, n in t.days_by_source.items():
                out.days_by_source[where] = out.days_by_source.get(where, 0) + n
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "http_429": self.http_429,
            "http_418": self.http_418,
            "retries": self.retries,
            "weight_budget_used": round(self.weight_budget_used, 4),
        }


class TaskTracker:
    """Folds events into :class:`TaskState` per ``queue_id``."""

    def __init__(self, *, remember_events: int = 100_000) -> None:
        self.tasks: dict[str, TaskState] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember_events

    def watch(self, queue_ids: Iterable[str]) -> None:
        for q in queue_ids:
            self.tasks.setdefault(q, TaskState(queue_id=q))

    def apply(self, event: Event) -> TaskState | None:
        """Apply one event; returns the changed state, or None for a duplicate."""
        if event.event_id in self._seen:
            return None
        self._seen[event.event_id] = None
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        state = self.tasks.setdefault(event.queue_id, TaskState(queue_id=event.queue_id))
        state.symbol = state.symbol or event.symbol
        state.type = state.type or event.type
        if isinstance(event.timestamp, int | float):
            state.last_seen = max(state.last_seen, float(event.timestamp))
        if event.component == CONNECTOR:
            self._apply_connector(state, event)
        else:
            self._apply_loader(state, event)
        return state

    @staticmethod
    def _apply_loader(state: TaskState, event: Event) -> None:
        if state.loader_status in ("finished", "error") and event.status in ("started", "loading"):
            return  # late progress after the end: keep the end (an interruption is no end)
        state.loader_status = event.status
        state.loaded = max(state.loaded, event.records_written)
        state.http_429 = max(state.http_429, event.http_429 or 0)
        state.http_418 = max(state.http_418, event.http_418 or 0)
        state.retries = max(state.retries, event.retries or 0)
        state.weight_used_peak = max(state.weight_used_peak, event.weight_used_peak or 0.0)
        if event.days_by_source is not None:
            state.days_by_source = dict(event.days_by_source)
        if event.status == "finished" and event.partitions is not None:
            state.loader_partitions = {p.partition: p.records for p in event.partitions}
        if event.error is not None:
            state.error = f"{event.error.type}: {event.error.detail}"
        elif event.status == "error":
            state.error = event.message or event.status

    @staticmethod
    def _apply_connector(state: TaskState, event: Event) -> None:
        state.stored_by[event.producer] = max(state.stored_by.get(event.producer, 0), event.records_written)
        if event.status == "finished" and event.partitions:
            for p in event.partitions:
                state.acked[p.partition] = p.records

    def pending(self, queue_ids: Iterable[str]) -> list[str]:
        return [q for q in queue_ids if not self.tasks.get(q, TaskState(q)).done]
