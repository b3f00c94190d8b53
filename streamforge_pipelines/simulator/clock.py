"""The simulator's clock: a callable returning epoch milliseconds (tests pass a frozen or virtual one).

The REST app, the archive and the WebSocket streams all read one; :func:`wall_clock_ms` is the
default.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["Clock", "wall_clock_ms"]

#: Returns the current time in epoch milliseconds.
Clock = Callable[[], int]


def wall_clock_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000
