"""A virtual clock shared by a :class:`WeightGovernor` and an in-process simulator, for rate-limit tests.

On the wall clock, a governor and the simulator agree on a window only as long as every request
reaches the simulator before the window ends; a machine busy with something else delays requests
past the boundary, the simulator counts them in the next window, and a test of "no 429" fails for a
reason that is not a bug. With :class:`LockstepClock` both read the same virtual time, which moves
only when the governor waits, and only once every request the governor admitted has been answered
(a hand-off, polled with a bound). So the simulator counts each request in the window the governor
reserved it in, whatever the machine's load, and waits take no real time: what the test sees is a
function of the code alone, and "how many windows it took" is an exact figure (``elapsed_ms``).

Usage::

    clock = LockstepClock(start_ms)                 # a window boundary, after the data's range
    governor = clock.governor(60, window_ms=2000)   # WeightGovernor on the virtual clock
    SimulatorServer(..., clock=clock.ms)            # the simulator on the same clock
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from streamforge_pipelines.workers.governor import WeightGovernor

#: How long (real seconds) the admitted requests may take to be answered before the test fails.
SETTLE_S = 60.0


class _SettlingGovernor(WeightGovernor):
    """A governor that counts the requests it has settled (answered, or released without answer).

    The client calls ``observe`` (or ``release``, which calls ``observe``) exactly once for every
    request it was admitted by ``acquire``, so ``settled == requests`` means none is in flight."""

    settled = 0

    def observe(self, used_weight: int | None, now: float | None = None, *, weight: int = 0) -> None:
        super().observe(used_weight, now, weight=weight)
        self.settled += 1


class LockstepClock:
    """Epoch milliseconds that advance only when the governor made by :meth:`governor` sleeps."""

    def __init__(self, start_ms: int) -> None:
        self.start_ms = start_ms
        self.now_ms = start_ms
        self._governor: _SettlingGovernor | None = None

    def ms(self) -> int:
        """The clock as the simulator reads it (epoch ms)."""
        return self.now_ms

    def seconds(self) -> float:
        """The clock as the governor reads it (epoch seconds)."""
        return self.now_ms / 1000

    @property
    def elapsed_ms(self) -> int:
        """Virtual time that has passed: the sum of the governor's waits."""
        return self.now_ms - self.start_ms

    def governor(self, *args: Any, **kwargs: Any) -> WeightGovernor:
        """A :class:`WeightGovernor` (same arguments) on this clock; one per clock."""
        assert self._governor is None, "one governor per LockstepClock"
        self._governor = _SettlingGovernor(*args, clock=self.seconds, sleep=self._sleep, **kwargs)
        return self._governor

    async def _sleep(self, seconds: float) -> None:
        """Wait until every admitted request is answered, then move the clock by ``seconds``."""
        gov = self._governor
        assert gov is not None
        deadline = time.monotonic() + SETTLE_S
        while gov.settled < gov.requests:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{gov.requests - gov.settled} admitted requests not answered within {SETTLE_S:.0f}s"
                )
            await asyncio.sleep(0.001)
        self.now_ms += max(1, round(seconds * 1000))
