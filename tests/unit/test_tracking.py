"""Task completion: loader finished + every partition's end marker acknowledged; and what the step,
the one writer of task records, writes into them (:meth:`TaskState.record_fields`)."""

from __future__ import annotations

from streamforge_pipelines.protocol import ErrorInfo, Event, PartitionCount
from streamforge_pipelines.queue_manager.tracking import COMPLETE, FAILED, TaskTracker

Q = "wf-btcusdt-api_candles_5m-20240801-a1b2c3"
LOADER = "loader-api-candles__a1b2c3"
CONN = "arango-connector__ffffff"


def ev(producer: str, status: str, **kw) -> Event:
    return Event(queue_id=Q, producer=producer, status=status, **kw)


def test_complete_only_after_every_partition_acked() -> None:
    t = TaskTracker()
    t.watch([Q])
    t.apply(ev(LOADER, "started"))
    t.apply(
        ev(
            LOADER,
            "finished",
            records_written=30,
            partitions=[PartitionCount(partition=0, records=10), PartitionCount(partition=2, records=20)],
        )
    )
    assert not t.tasks[Q].complete and t.pending([Q]) == [Q]
    t.apply(ev(CONN, "finished", partitions=[PartitionCount(partition=2, records=20)]))
    assert not t.tasks[Q].complete
    t.apply(ev(CONN, "finished", partitions=[PartitionCount(partition=0, records=10)]))
    assert t.tasks[Q].complete and t.tasks[Q].status == COMPLETE
    assert t.pending([Q]) == []


def test_acks_before_loader_finished_still_count() -> None:
    t = TaskTracker()
    t.apply(ev(CONN, "finished", partitions=[PartitionCount(partition=1, records=5)]))
    assert not t.tasks[Q].complete
    t.apply(ev(LOADER, "finished", partitions=[PartitionCount(partition=1, records=5)]))
    assert t.tasks[Q].complete


def test_duplicates_ignored_and_late_progress_does_not_reopen() -> None:
    t = TaskTracker()
    e = ev(LOADER, "error", error=ErrorInfo(type="ExchangeRejected", detail="Invalid symbol."))
    assert t.apply(e) is not None
    assert t.apply(e) is None
    t.apply(ev(LOADER, "loading", records_written=5))
    assert t.tasks[Q].status == FAILED
    assert t.tasks[Q].error == "ExchangeRejected: Invalid symbol."


def test_the_steps_record_fields_follow_loader_events_and_keep_final_statuses() -> None:
    """The step writes ``record_fields()`` of its tasks (on every status change, and at its end);
    the queue_events sensor writes no record. Moved here from the rules the sensor used to write by."""
    t = TaskTracker()
    t.watch([Q])
    assert t.tasks[Q].record_fields() == {"status": "pending", "records_written": 0}
    # A connector event carries no record change of its own (progress, not the task's status).
    t.apply(ev(CONN, "loading", records_written=5))
    assert t.tasks[Q].record_fields() == {"status": "pending", "records_written": 0}
    # An interruption is no end: a loader resumes it.
    t.apply(ev(LOADER, "interrupted", message="SIGTERM", records_written=7))
    assert t.tasks[Q].record_fields() == {"status": "interrupted", "records_written": 7}
    t.apply(ev(LOADER, "finished", records_written=9, partitions=[PartitionCount(partition=3, records=9)]))
    fields = t.tasks[Q].record_fields()
    assert fields["status"] == "finished" and fields["partitions"] == {"3": 9}
    t.apply(ev(CONN, "finished", partitions=[PartitionCount(partition=3, records=9)]))
    assert t.tasks[Q].record_fields() == {"status": COMPLETE, "records_written": 9, "partitions": {"3": 9}}
    # Final statuses never change: late progress after the end is ignored.
    t.apply(ev(LOADER, "loading", records_written=1))
    t.apply(ev(LOADER, "started"))
    assert t.tasks[Q].record_fields() == {"status": COMPLETE, "records_written": 9, "partitions": {"3": 9}}


def test_the_steps_record_of_a_failed_task_names_the_error_and_stays_failed() -> None:
    t = TaskTracker()
    t.apply(ev(LOADER, "loading", records_written=4))
    t.apply(ev(LOADER, "error", records_written=4, error=ErrorInfo(type="ExchangeRejected", detail="Bad.")))
    expected = {"status": FAILED, "records_written": 4, "error": "ExchangeRejected: Bad."}
    assert t.tasks[Q].record_fields() == expected
    t.apply(ev(LOADER, "loading", records_written=6))
    assert t.tasks[Q].record_fields() == expected
    # An error without details: its message, else its status, is the record's error.
    u = TaskTracker()
    u.apply(ev(LOADER, "error", message="loader crashed"))
    assert u.tasks[Q].record_fields()["error"] == "loader crashed"


def test_an_interrupted_task_is_resumed_not_failed() -> None:
    """SIGTERM stops a standalone loader mid-task; the next one takes the command again and resumes
    from its checkpoint: the task completes as if it never stopped."""
    t = TaskTracker()
    t.watch([Q])
    t.apply(ev(LOADER, "loading", records_written=40))
    t.apply(ev(LOADER, "interrupted", records_written=40, message="stopped before the end"))
    state = t.tasks[Q]
    assert state.status == "interrupted" and not state.done and not state.failed and state.error is None
    assert t.pending([Q]) == [Q]  # still waited for
    t.apply(ev(LOADER, "started", message="resumed from 2024-08-01T12:00:00Z"))
    t.apply(
        ev(LOADER, "finished", records_written=100, partitions=[PartitionCount(partition=0, records=100)])
    )
    t.apply(ev(CONN, "finished", partitions=[PartitionCount(partition=0, records=100)]))
    assert t.tasks[Q].status == COMPLETE and t.pending([Q]) == []
