"""``run_stoppable``: a signal cancels the load's task, lets it clean up, then reaches the handler that
was installed before (Dagster's, in a step), exactly once; a second signal goes there at once.

The signal is raised by the coroutine itself (``signal.raise_signal`` runs the handler at once, in
the main thread), so nothing here depends on timing.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from streamforge_pipelines.queue_manager import run_stoppable


class Interrupted(BaseException):
    """What the previous handler raises (Dagster's raises ``DagsterExecutionInterruptedError``)."""


@pytest.fixture
def previous_handler() -> Iterator[list[int]]:
    """A SIGINT/SIGTERM handler that records the signal and raises :class:`Interrupted`."""
    calls: list[int] = []
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signo: int, frame: FrameType | None) -> None:
        calls.append(signo)
        raise Interrupted

    for sig in saved:
        signal.signal(sig, handler)
    try:
        yield calls
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def test_a_signal_cancels_the_load_which_cleans_up_before_the_interrupt(previous_handler: list[int]) -> None:
    steps: list[str] = []

    async def load() -> str:
        try:
            signal.raise_signal(signal.SIGTERM)
            assert previous_handler == []  # not yet: the load is cancelled first
            await asyncio.sleep(30)
            return "finished"
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)  # cleanup can still await (stop the loaders, wait for them)
            steps.append("cleaned up")
            raise

    with pytest.raises(Interrupted):
        run_stoppable(load())
    assert steps == ["cleaned up"]
    assert previous_handler == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is signal.getsignal(signal.SIGTERM)  # handlers put back


def test_a_second_signal_goes_to_the_previous_handler_at_once(previous_handler: list[int]) -> None:
    async def load() -> None:
        try:
            signal.raise_signal(signal.SIGINT)
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            signal.raise_signal(signal.SIGINT)  # impatient: raises Interrupted here, mid-cleanup
            raise AssertionError("the second signal did not interrupt the cleanup") from None

    with pytest.raises(Interrupted):
        run_stoppable(load())
    assert previous_handler == [signal.SIGINT]


def test_without_a_signal_it_is_asyncio_run(previous_handler: list[int]) -> None:
    async def load() -> int:
        await asyncio.sleep(0)
        return 7

    assert run_stoppable(load()) == 7
    assert previous_handler == []
