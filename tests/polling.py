"""Bounded waiting for the tests: poll a condition until it holds, fail with what was awaited.

No test sleeps to synchronise: it waits for the thing itself (a record, a run's status, a page) with
a deadline, and a timeout says what it waited for (``what``: a text, or a function that describes
how things stand at the moment of failure).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout_s: float, what: str | Callable[[], str], interval_s: float = 0.2
) -> T:
    """The first truthy value of ``predicate()``, polled every ``interval_s`` for ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {said}")
        time.sleep(interval_s)
