"""A weight-budget governor: every exchange request of a process asks it first.

Binance limits REQUEST_WEIGHT per IP in fixed windows aligned to the clock minute (6000 per minute
today), reports the IP's running count in ``X-MBX-USED-WEIGHT-1M`` on every response, answers a
request over the limit with 429 + ``Retry-After`` and bans (418) a client that goes on after a 429.
:class:`WeightGovernor` keeps a process under that limit instead of bumping into it:

* ``await acquire(weight)`` before each request reserves ``weight`` in the current window. It waits
  for the next window when the reservation would take this process over its own budget
  (``limit * share * safety``) or the IP's estimated usage over ``limit * safety``.
* ``observe(used_weight_header, now, weight=w)`` after each response reconciles with the exchange's
  count: the header is authoritative (other processes on the same IP count too), so the IP estimate
  is raised to ``header + weight still in flight``. It never lowers an estimate within a window.
* ``block_until(ts)`` after a 429/418 stops **every** request of the process until ``ts``.
* Reservations made in the last ``edge_ms`` of a window count toward the next window as well: a
  request sent just before the boundary may be counted by the exchange after it (latency, clock skew).

Waiters queue in FIFO order behind one lock; the first sleeps until the window ends (or the block
lifts) — no polling. ``clock`` (epoch seconds) and ``sleep`` are injectable for deterministic tests.
The governor binds to no event loop: it can be shared by the loaders of a process across runs.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]


@dataclass(frozen=True)
class GovernorStats:
    """What a governor saw: ``weight_budget_used`` is the peak share (0-1) of its own budget."""

    weight_budget_used: float
    ip_weight_used_peak: float
    http_429: int
    http_418: int
    total_weight: int
    requests: int
    waits: int
    seconds_waited: float


class WeightGovernor:
    """Keeps one process's request weight under ``limit_per_minute * share`` per exchange window."""

    def __init__(
        self,
        limit_per_minute: int = 6000,
        share: float = 1.0,
        safety: float = 0.97,
        window_ms: int = 60_000,
        clock: Clock = time.time,
        *,
        sleep: Sleep = asyncio.sleep,
        edge_ms: float | None = None,
    ) -> None:
        if limit_per_minute < 1:
            raise ValueError("limit_per_minute must be >= 1")
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        if not 0 < safety <= 1:
            raise ValueError("safety must be in (0, 1]")
        if window_ms < 1:
            raise ValueError("window_ms must be >= 1")
        self.limit = limit_per_minute
        self.share = share
        self.safety = safety
        self.window_ms = window_ms
        self.edge_ms = window_ms / 60 if edge_ms is None else edge_ms
        self._clock = clock
        self._sleep = sleep
        #: This process's budget per window, and the IP's (both with the safety margin).
        self.budget = max(1, math.floor(limit_per_minute * share * safety))
        self.ip_budget = max(1, math.floor(limit_per_minute * safety))
        self._window = -1
        self._used = 0  # own weight reserved in the current window
        self._ip_used = 0  # estimate of the IP's weight in the current window
        self._carry = 0  # weight reserved near the end of the current window: counts in the next
        self._in_flight = 0
        self._blocked_until = 0.0
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        # stats
        self._peak_own = 0
        self._peak_ip = 0
        self.http_429 = 0
        self.http_418 = 0
        self.total_weight = 0
        self.requests = 0
        self.waits = 0
        self.seconds_waited = 0.0

    # ---- windows --------------------------------------------------------------------------------

    def _roll(self, now_s: float) -> int:
        """Move to the window of ``now_s``; returns that window's number."""
        window = int(now_s * 1000) // self.window_ms
        if window != self._window:
            carry = self._carry if window == self._window + 1 else 0
            self._window, self._used, self._ip_used, self._carry = window, carry, carry, 0
        return window

    def _window_end_s(self, window: int) -> float:
        return (window + 1) * self.window_ms / 1000

    def _fits(self, weight: int) -> bool:
        if self._used == 0 and self._ip_used == 0:
            return True  # an empty window admits even a request heavier than the budget
        return self._used + weight <= self.budget and self._ip_used + weight <= self.ip_budget

    def _get_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    # ---- the API --------------------------------------------------------------------------------

    async def acquire(self, weight: int) -> None:
        """Reserve ``weight`` in the current window, waiting for a window (and any block) that has room."""
        async with self._get_lock():
            while True:
                now = self._clock()
                if now < self._blocked_until:
                    await self._wait(self._blocked_until - now)
                    continue
                window = self._roll(now)
                if self._fits(weight):
                    break
                await self._wait(self._window_end_s(window) - now)
            self._used += weight
            self._ip_used += weight
            if (self._window_end_s(window) - now) * 1000 <= self.edge_ms:
                self._carry += weight
            self._in_flight += weight
            self.total_weight += weight
            self.requests += 1
            self._peak_own = max(self._peak_own, self._used)
            self._peak_ip = max(self._peak_ip, self._ip_used)

    async def _wait(self, seconds: float) -> None:
        seconds = max(seconds, 0.001)
        self.waits += 1
        self.seconds_waited += seconds
        await self._sleep(seconds)

    def observe(self, used_weight: int | None, now: float | None = None, *, weight: int = 0) -> None:
        """A response arrived: settle its ``weight`` and reconcile with the exchange's header value.

        ``used_weight`` is ``X-MBX-USED-WEIGHT-1M`` (None when absent). A request that got no
        response at all (timeout, dropped connection) is settled with ``observe(None, weight=w)``.
        """
        self._in_flight = max(0, self._in_flight - weight)
        if used_weight is None:
            return
        now = self._clock() if now is None else now
        self._roll(now)
        # The header counts every request of the IP the exchange processed before this response;
        # ours still in flight may come on top. Never lower the estimate within a window.
        self._ip_used = max(self._ip_used, used_weight + self._in_flight)
        self._peak_ip = max(self._peak_ip, used_weight)

    def block_until(self, ts: float, *, status: int | None = None) -> None:
        """Stop every request of the process until epoch second ``ts`` (after a 429 or 418)."""
        if status == 429:
            self.http_429 += 1
        elif status == 418:
            self.http_418 += 1
        self._blocked_until = max(self._blocked_until, ts)

    def block_for(self, seconds: float, *, status: int | None = None) -> None:
        """``block_until(now + seconds)`` on the governor's clock (``Retry-After`` is relative)."""
        self.block_until(self._clock() + seconds, status=status)

    def release(self, weight: int) -> None:
        """Settle a request that got no response (same as ``observe(None, weight=weight)``)."""
        self.observe(None, weight=weight)

    # ---- stats ----------------------------------------------------------------------------------

    @property
    def blocked_until(self) -> float:
        return self._blocked_until

    @property
    def peak_share(self) -> float:
        """Peak share (0-1) of this process's per-window budget ``limit * share`` it reserved."""
        return min(1.0, self._peak_own / (self.limit * self.share))

    def stats(self) -> GovernorStats:
        return GovernorStats(
            weight_budget_used=round(self.peak_share, 4),
            ip_weight_used_peak=round(self._peak_ip / self.limit, 4),
            http_429=self.http_429,
            http_418=self.http_418,
            total_weight=self.total_weight,
            requests=self.requests,
            waits=self.waits,
            seconds_waited=round(self.seconds_waited, 3),
        )


_DEFAULTS: dict[tuple[int, float], WeightGovernor] = {}


def default_governor(limit_per_minute: int = 6000, share: float = 1.0) -> WeightGovernor:
    """The process-wide governor for a limit and share (one per process, shared by its loaders)."""
    key = (limit_per_minute, share)
    governor = _DEFAULTS.get(key)
    if governor is None:
        governor = _DEFAULTS[key] = WeightGovernor(limit_per_minute, share)
    return governor
