"""Running a load so that an interrupt stops its loaders instead of abandoning them.

A cancelled Dagster run reaches its step as a signal: the run worker (multiprocess executor) sets the
step process's termination event, and the step process sends itself ``SIGINT`` (``SIGTERM`` is
mapped to the same handler); inside an op, Dagster's handler (``raise_execution_interrupts``)
raises ``DagsterExecutionInterruptedError`` in the main thread, wherever it is. Inside
``asyncio.run`` that is the event loop's ``select``: the exception leaves the loop, and
``asyncio.run`` then cancels every task at once, the producers' and consumers' own included, so the
loaders cannot flush or report, and the load's records are left saying ``loading``.

:func:`run_stoppable` runs the load instead with its own handlers for ``SIGINT`` and ``SIGTERM``:
the first signal cancels the load's main task only (``run_tasks`` then stops its loaders, waits
for their ``interrupted`` and writes the records), and once the load has ended the signal is handed
to the handler that was there before, so Dagster sees the interrupt as it would have (the step is
marked interrupted). A second signal goes to the previous handler at once (a hard stop). Nothing
here imports Dagster.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Coroutine
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")

#: The signals a cancelled run's step receives (Dagster maps SIGTERM to its SIGINT handler).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _deliver(handler: Any, signo: int, frame: FrameType | None) -> None:
    """Hand ``signo`` to ``handler`` as the interpreter would have."""
    if callable(handler):
        handler(signo, frame)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signo)  # its default action, now that the previous handler is back


def run_stoppable(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``, except that SIGINT/SIGTERM cancel ``coro``'s task and let it end before
    the signal is passed on to the handler that was installed before (see the module docstring).
    Off the main thread (no signal handlers can be set there) it is ``asyncio.run``."""
    if threading.current_thread() is not threading.main_thread():
        return asyncio.run(coro)
    # a signal that was ignored stays ignored
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS if signal.getsignal(sig) != signal.SIG_IGN}
    received: list[tuple[int, FrameType | None]] = []
    with asyncio.Runner() as runner:
        loop = runner.get_loop()
        main = loop.create_task(coro)

        def on_signal(signo: int, frame: FrameType | None) -> None:
            if received:  # asked twice: no more patience
                _deliver(previous[signo], signo, frame)
                return
            received.append((signo, frame))
            loop.call_soon_threadsafe(main.cancel)

        for sig in previous:
            signal.signal(sig, on_signal)
        try:
            result = loop.run_until_complete(main)
        except asyncio.CancelledError:
            if not received:
                raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if received:
        signo, frame = received[0]
        _deliver(previous[signo], signo, frame)
        raise KeyboardInterrupt  # the previous handler ignored it: the load was still cancelled
    return result
