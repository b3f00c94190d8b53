"""Task completion: loader finished + every partition's end marker acknowledged."""

from __future__ import annotations

from streamforge_pipelines.protocol import ErrorInfo, Event, PartitionCount
from streamforge_pipelines.queue_manager.tracking import COMPLETE, FAILED, TaskTracker, record_update

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


def test_record_update_never_changes_final_status() -> None:
    assert record_update(COMPLETE, ev(LOADER, "loading")) is None
    assert record_update("loading", ev(CONN, "loading")) is None
    upd = record_update("loading", ev(LOADER, "interrupted", message="SIGTERM", records_written=7))
    assert upd == {"status": "interrupted", "records_written": 7}  # not an end: a loader resumes it
    upd = record_update(
        "started", ev(LOADER, "finished", partitions=[PartitionCount(partition=3, records=9)])
    )
    assert upd is not None and upd["partitions"] == {"3": 9}


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
