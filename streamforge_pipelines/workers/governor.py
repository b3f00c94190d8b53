"""A weight-budget governor: every exchange request of a process asks it first.

Binance limits REQUEST_WEIGHT per IP in fixed windows aligned to the clock minute (6000 per minute
today), reports the IP's running count in ``X-MBX-USED-WEIGHT-1M`` on every response, answers a
request over the limit with 429 + ``Retry-After`` and bans (418) a client that goes on after a 429.
:class:`WeightGovernor` keeps a process under that limit instead of bumping into it:

* ``await acquire(weight)`` before each request reserves ``weight`` in the current window. It waits
  for the next window when the reservation would take this process over its own budget
  (``limit * share * safety``) or the IP's estimated usage over ``limit * safety``.
* ``observe(used_weight_header, now, weight=w)`` after each response reconciles with the exchange's
  count: the header is authoritative (other processes on the same IP count too). It counts at most
  every request this process reserved so far, so ``header - own reserved`` is at least what other
  clients of the IP used; the IP estimate is this process's weight plus that (a request the header
  already counts but whose answer is still on its way is not counted twice: four processes at a
  quarter each reach their whole budgets). It never lowers an estimate within a window.
* ``block_until(ts)`` after a 429/418 stops **every** request of the process until ``ts``: those
  of this governor and of every other governor of the same ``pool`` on the same clock (the limit
  is the IP's; a standalone loader runs several tasks with a governor each). The client calls it
  the moment the 429's headers arrive, before reading its body.
* ``learn_limit(used_weight_header, message)`` after a 429: the exchange's real limit is lower than
  the one configured when the 429's ``-1003`` message names a lower one (``current limit is 60
  request weight per 1 MINUTE``), or, without such a message, when the IP's weight header of the 429
  (the weight at which the exchange refused more) is lower. The governor then keeps under the
  learned limit for the rest of the process: new governors of the same pool and configured limit
  start from it (:func:`learned_limit`). A limit is only ever lowered, never raised.
* ``use_exchange_limit(limit)``: the limit the exchange itself publishes (``exchangeInfo``'s
  ``rateLimits``, read once per exchange and process by the client) replaces a higher configured one,
  so a configuration mistake is corrected before the first request, not by a 429.
* **In flight** — the weight of requests sent but not yet answered never exceeds this process's
  part of the headroom the exchange last reported for the current window (``limit * safety`` minus
  its latest ``X-MBX-USED-WEIGHT-1M``): its own share of the IP's weight in the window, all of it
  alone (:meth:`WeightGovernor.flight_room`). So peers on one IP that each keep to their part never
  put more on the wire together than the exchange has room for, whatever their configured shares,
  and the window cannot be overrun by more than a request per process. A request that lacks only
  room on the wire waits for an answer (not for the next window). A 429 also closes the governor's
  current window: after ``Retry-After`` it sends again only in the next one.
* Reservations made in the last ``edge_ms`` of a window count toward the next window as well: a
  request sent just before the boundary may be counted by the exchange after it (latency, clock skew).

``safety`` (:data:`SAFETY`, 0.995) is the share of the limit planned for: with the header bounding
what is in flight, the margin only covers what no header shows in time (30 weight of 6000).

Waiters queue in FIFO order behind one lock; the first sleeps until the window ends (or the block
lifts, or an answer frees room on the wire) — no polling. ``clock`` (epoch seconds) and ``sleep``
are injectable for deterministic tests. The governor binds to no event loop: it can be shared by
the loaders of a process across runs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]

#: The ``-1003`` text of a 429 for request weight (reference section 2): "Too much request weight
#: used; current limit is 6000 request weight per 1 MINUTE. ..." (the simulator names its window).
_WEIGHT_LIMIT_TEXT = re.compile(
    r"current limit is (\d+) request weight per (\d+) (SECOND|MINUTE|HOUR|DAY)", re.IGNORECASE
)
#: The text of a 429 for the request count (RAW_REQUESTS), which says nothing about weight.
_REQUEST_COUNT_TEXT = re.compile(r"too many requests|\d+ requests per", re.IGNORECASE)
_UNIT_MS = {"SECOND": 1000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}


def limit_from_429(used_weight: int | None, message: str | None, window_ms: int = 60_000) -> int | None:
    """The exchange's weight limit per ``window_ms`` as one 429 shows it; None when it does not tell.

    * A ``-1003`` message naming the weight limit of a ``window_ms`` window: that limit, exactly.
    * A message about the request count (``RAW_REQUESTS``: "Too many requests; current limit is
      300000 requests per 5 MINUTE"): nothing about weight (None).
    * Otherwise (no body, another wording): the ``X-MBX-USED-WEIGHT-1M`` header. The exchange
      refused a request when the IP had used that much, so the limit is below the header plus that
      request's weight; the header itself is the highest value known to pass.
    """
    if message:
        found = _WEIGHT_LIMIT_TEXT.search(message)
        if found is not None:
            limit, per = int(found.group(1)), int(found.group(2)) * _UNIT_MS[found.group(3).upper()]
            if per == window_ms and limit >= 1:
                return limit
        elif _REQUEST_COUNT_TEXT.search(message):
            return None
    if used_weight is None or used_weight < 1:
        return None
    return used_weight


#: The share of the limit a governor plans to use: the exchange's own header bounds what is in flight,
#: so the margin only covers what no header shows in time (30 weight of Binance's 6000).
SAFETY = 0.995

#: (pool, configured limit, window_ms) -> the lower limit a 429 showed, for the rest of the process.
_LEARNED: dict[tuple[str, int, int], int] = {}
#: (pool, clock) -> until when every governor of the pool on that clock holds its requests (a 429/418
#: is for the IP: it stops the other governors of the process too, e.g. a standalone loader's tasks).
_BLOCKED: dict[tuple[str, Clock], float] = {}


def learned_limit(limit_per_minute: int, window_ms: int = 60_000, pool: str = "spot") -> int | None:
    """The limit a 429 showed in this process to governors configured with ``limit_per_minute``
    (same window and pool); None when none did."""
    return _LEARNED.get((pool, limit_per_minute, window_ms))


def forget_learned_limits() -> None:
    """Forget every limit learned, and every block, in this process (tests)."""
    _LEARNED.clear()
    _BLOCKED.clear()


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
    #: The limit the governor keeps under now, and whether a 429 taught it (lower than configured).
    limit: int = 0
    limit_learned: bool = False


class WeightGovernor:
    """Keeps one process's request weight under ``limit_per_minute * share`` per exchange window."""

    def __init__(
        self,
        limit_per_minute: int = 6000,
        share: float = 1.0,
        safety: float = SAFETY,
        window_ms: int = 60_000,
        clock: Clock = time.time,
        *,
        sleep: Sleep = asyncio.sleep,
        edge_ms: float | None = None,
        pool: str = "spot",
    ) -> None:
        if limit_per_minute < 1:
            raise ValueError("limit_per_minute must be >= 1")
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        if not 0 < safety <= 1:
            raise ValueError("safety must be in (0, 1]")
        if window_ms < 1:
            raise ValueError("window_ms must be >= 1")
        #: The limit as configured, and the one kept under: lower once a 429 showed the real one.
        self.configured_limit = limit_per_minute
        self.limit = limit_per_minute
        self.share = share
        self.safety = safety
        self.window_ms = window_ms
        self.pool = pool
        self.edge_ms = window_ms / 60 if edge_ms is None else edge_ms
        self._clock = clock
        self._sleep = sleep
        #: This process's budget per window, and the IP's (both with the safety margin).
        self.budget = self.ip_budget = 1
        learned = learned_limit(limit_per_minute, window_ms, pool)
        self._set_limit(limit_per_minute if learned is None else min(limit_per_minute, learned))
        self._window = -1
        self._used = 0  # own weight reserved in the current window
        self._ip_used = 0  # estimate of the IP's weight in the current window
        self._others = 0  # the least weight other clients of the IP used in the window (headers)
        self._carry = 0  # weight reserved near the end of the current window: counts in the next
        self._in_flight = 0
        self._header = 0  # the exchange's latest X-MBX-USED-WEIGHT-1M in the current window
        self._in_flight_peak = 0  # peak weight in flight (stats, tests)
        #: The limit the exchange publishes (exchangeInfo), once a client told it; None until then.
        self.exchange_limit: int | None = None
        self._blocked_until = 0.0
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        #: Set when a request is settled: wakes an acquire() that waits for room on the wire.
        self._settled: asyncio.Event | None = None
        self._settled_loop: asyncio.AbstractEventLoop | None = None
        # stats (peaks as shares of the limit kept under at the time)
        self._peak_own = 0.0
        self._peak_ip = 0.0
        self.http_429 = 0
        self.http_418 = 0
        self.total_weight = 0
        self.requests = 0
        self.waits = 0
        self.seconds_waited = 0.0
        self.flight_waits = 0  # waits for an answer (room on the wire), not for a window

    def _set_limit(self, limit: int) -> None:
        self.limit = limit
        self.budget = max(1, math.floor(limit * self.share * self.safety))
        self.ip_budget = max(1, math.floor(limit * self.safety))

    # ---- windows --------------------------------------------------------------------------------

    def _roll(self, now_s: float) -> int:
        """Move to the window of ``now_s``; returns that window's number."""
        window = int(now_s * 1000) // self.window_ms
        if window != self._window:
            carry = self._carry if window == self._window + 1 else 0
            self._window, self._used, self._ip_used, self._carry = window, carry, carry, 0
            self._header = self._others = 0
        return window

    def _window_end_s(self, window: int) -> float:
        return (window + 1) * self.window_ms / 1000

    def headroom(self) -> int:
        """Weight the exchange still admits in the current window as it last reported it, with the
        safety margin: ``limit * safety`` minus the latest ``X-MBX-USED-WEIGHT-1M`` of the window."""
        return self.ip_budget - self._header

    def flight_room(self) -> float:
        """The weight this process may have in flight now: its part of :meth:`headroom`.

        Its part is its own share of the IP's weight in the window (all of it alone), so that peers
        on the same IP that each keep their part in flight never put more on the wire together than
        the room the exchange reported. Unbounded until a response of the window reported a header.
        """
        if self._header == 0:
            return math.inf
        own_part = min(1.0, self._used / self._ip_used) if self._ip_used else 1.0
        return self.headroom() * own_part

    def _fits(self, weight: int) -> bool:
        """Whether ``weight`` fits the window's budgets (the process's and the IP's estimate)."""
        if self._used == 0 and self._ip_used == 0:
            return True  # an empty window admits even a request heavier than the budget
        return self._used + weight <= self.budget and self._ip_used + weight <= self.ip_budget

    def _fits_in_flight(self, weight: int) -> bool:
        """What is on the wire never exceeds this process's part of the room the exchange last
        reported in this window; one request at a time always fits (the budgets hold it)."""
        return self._in_flight == 0 or self._in_flight + weight <= self.flight_room()

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
                blocked = self.blocked_until
                if now < blocked:
                    await self._wait(blocked - now)
                    continue
                learned = _LEARNED.get((self.pool, self.configured_limit, self.window_ms))
                if learned is not None and learned < self.limit:  # another governor's 429 taught it
                    self._set_limit(learned)
                window = self._roll(now)
                if not self._fits(weight):
                    await self._wait(self._window_end_s(window) - now)
                elif self._fits_in_flight(weight):
                    break
                else:  # the window has room, the wire has not: wait for an answer, not the window
                    await self._wait_settled(self._window_end_s(window) - now)
            self._used += weight
            self._ip_used += weight
            if (self._window_end_s(window) - now) * 1000 <= self.edge_ms:
                self._carry += weight
            self._in_flight += weight
            self._in_flight_peak = max(self._in_flight_peak, self._in_flight)
            self.total_weight += weight
            self.requests += 1
            self._peak_own = max(self._peak_own, self._used / (self.limit * self.share))
            self._peak_ip = max(self._peak_ip, self._ip_used / self.limit)

    async def _wait_settled(self, at_most_s: float) -> None:
        """Wait until a request in flight is settled (:meth:`observe`), at most ``at_most_s``."""
        if self._settled is None or self._settled_loop is not asyncio.get_running_loop():
            self._settled, self._settled_loop = asyncio.Event(), asyncio.get_running_loop()
        self._settled.clear()
        self.flight_waits += 1
        try:
            await asyncio.wait_for(self._settled.wait(), timeout=max(at_most_s, 0.001))
        except TimeoutError:
            pass

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
        if self._settled is not None:
            self._settled.set()
        if used_weight is None:
            return
        now = self._clock() if now is None else now
        self._roll(now)
        self._header = max(self._header, used_weight)
        # The header counts every request of the IP the exchange processed before this response: at
        # most all ours reserved so far, so the rest is at least what other clients used. The IP's
        # weight is then ours plus theirs (never double-counting ours still in flight, which the
        # header may already include); never lowered within a window.
        self._others = max(self._others, used_weight - self._used)
        self._ip_used = max(self._ip_used, self._used + self._others)
        self._peak_ip = max(self._peak_ip, used_weight / self.limit)

    def block_until(self, ts: float, *, status: int | None = None) -> None:
        """Stop every request of the process until epoch second ``ts`` (after a 429 or 418)."""
        if status == 429:
            self.http_429 += 1
            # Never again into the window the exchange refused: after Retry-After, the next one.
            self._roll(self._clock())
            self._ip_used = max(self._ip_used, self.ip_budget)
        elif status == 418:
            self.http_418 += 1
        self._blocked_until = max(self._blocked_until, ts)
        key = (self.pool, self._clock)
        _BLOCKED[key] = max(_BLOCKED.get(key, 0.0), ts)

    def block_for(self, seconds: float, *, status: int | None = None) -> None:
        """``block_until(now + seconds)`` on the governor's clock (``Retry-After`` is relative)."""
        self.block_until(self._clock() + seconds, status=status)

    def learn_limit(self, used_weight: int | None, message: str | None = None) -> int | None:
        """After a 429: keep under the lower limit it shows (:func:`limit_from_429`) from now on.

        ``used_weight`` is the 429's ``X-MBX-USED-WEIGHT-1M``, ``message`` its ``-1003`` text. Returns
        the new limit when it lowered the current one, else None. The learned limit also holds for
        the other governors of this process with the same pool, configured limit and window: those
        created later start from it, those running take it on their next ``acquire``.
        """
        limit = limit_from_429(used_weight, message, self.window_ms)
        if limit is None or limit >= self.limit:
            return None
        log.warning(
            "the exchange's weight limit is %s per %.0fs, not %s: keeping under %s from now on",
            limit,
            self.window_ms / 1000,
            self.limit,
            math.floor(limit * self.share * self.safety),
            extra={"limit": limit, "configured_limit": self.configured_limit, "pool": self.pool},
        )
        self._set_limit(limit)
        key = (self.pool, self.configured_limit, self.window_ms)
        _LEARNED[key] = min(_LEARNED.get(key, limit), limit)
        return limit

    def use_exchange_limit(self, limit: int | None) -> bool:
        """Keep under ``limit``, the weight limit per window the exchange publishes
        (``exchangeInfo``'s ``rateLimits``), when it is lower than the limit kept under now.

        Returns whether it lowered the limit. None (the exchange publishes none) changes nothing. A
        published limit is never a reason to raise the configured one: the configured one may be a
        deliberate slice (another deployment, a trading bot on the same IP).
        """
        if limit is None or limit < 1:
            return False
        self.exchange_limit = limit if self.exchange_limit is None else min(self.exchange_limit, limit)
        if limit >= self.limit:
            return False
        self._set_limit(limit)
        return True

    def release(self, weight: int) -> None:
        """Settle a request that got no response (same as ``observe(None, weight=weight)``)."""
        self.observe(None, weight=weight)

    # ---- stats ----------------------------------------------------------------------------------

    @property
    def blocked_until(self) -> float:
        """Until when requests wait: this governor's block, or another's of the same pool and clock."""
        return max(self._blocked_until, _BLOCKED.get((self.pool, self._clock), 0.0))

    @property
    def in_flight(self) -> int:
        """Weight of the requests sent and not yet answered."""
        return self._in_flight

    @property
    def in_flight_peak(self) -> int:
        """The most weight ever in flight at once."""
        return self._in_flight_peak

    @property
    def peak_share(self) -> float:
        """Peak share (0-1) of this process's per-window budget ``limit * share`` it reserved."""
        return min(1.0, self._peak_own)

    def stats(self) -> GovernorStats:
        return GovernorStats(
            weight_budget_used=round(self.peak_share, 4),
            ip_weight_used_peak=round(self._peak_ip, 4),
            http_429=self.http_429,
            http_418=self.http_418,
            total_weight=self.total_weight,
            requests=self.requests,
            waits=self.waits,
            seconds_waited=round(self.seconds_waited, 3),
            limit=self.limit,
            limit_learned=self.limit < self.configured_limit,
        )


_DEFAULTS: dict[tuple[str, int, float], WeightGovernor] = {}


def default_governor(
    limit_per_minute: int = 6000, share: float = 1.0, *, pool: str = "spot"
) -> WeightGovernor:
    """The process-wide governor for a limit and share (one per process, shared by its loaders).

    ``pool`` names the exchange's weight counter: Binance counts spot (``/api``) and USD-M futures
    (``/fapi``) weight apart, so each has its own process-wide governor even at equal limits.
    """
    key = (pool, limit_per_minute, share)
    governor = _DEFAULTS.get(key)
    if governor is None:
        governor = _DEFAULTS[key] = WeightGovernor(limit_per_minute, share, pool=pool)
    return governor
