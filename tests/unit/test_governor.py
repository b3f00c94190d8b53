"""WeightGovernor with a fake clock: budgets per window, waits, blocks, shares, header reconciliation."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from streamforge_pipelines.workers.governor import WeightGovernor, default_governor

T0 = 1_700_000_040.0  # 40 s into a clock minute (1_700_000_000 is 20 s past one)


class FakeClock:
    """Epoch seconds that only move when someone sleeps."""

    def __init__(self, t: float = T0) -> None:
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


def governor(clock: FakeClock, **kw: object) -> WeightGovernor:
    return WeightGovernor(clock=clock, sleep=clock.sleep, **kw)  # type: ignore[arg-type]


async def _grab(gov: WeightGovernor, clock: FakeClock, weight: int, log: list[tuple[float, int]]) -> None:
    await gov.acquire(weight)
    log.append((clock(), weight))


def test_never_exceeds_the_budget_and_waits_for_the_next_window() -> None:
    clock = FakeClock()
    gov = governor(clock, limit_per_minute=60, safety=0.97, edge_ms=0)
    log: list[tuple[float, int]] = []

    async def main() -> None:
        await asyncio.gather(*(_grab(gov, clock, 2, log) for _ in range(100)))

    asyncio.run(main())
    per_window = Counter()
    for t, w in log:
        per_window[int(t // 60)] += w
    assert max(per_window.values()) <= 58  # floor(60 * 0.97)
    assert sorted(per_window.values(), reverse=True)[:3] == [58, 58, 58]  # and it keeps close to it
    # Every wait ended exactly at a window boundary: no polling, no early wake-ups.
    assert all(t % 60 == 0 for t, _ in log[29:])
    assert len(clock.sleeps) == len(per_window) - 1
    assert gov.peak_share == pytest.approx(58 / 60)
    assert gov.stats().total_weight == 200


def test_waits_until_the_window_ends() -> None:
    clock = FakeClock()
    gov = governor(clock, limit_per_minute=10, safety=1.0, edge_ms=0)

    async def main() -> None:
        await gov.acquire(5)
        await gov.acquire(5)
        assert clock() == T0
        await gov.acquire(1)
        assert clock() == 1_700_000_100.0  # the next clock minute

    asyncio.run(main())


def test_block_until_stops_every_waiter() -> None:
    clock = FakeClock()
    gov = governor(clock, limit_per_minute=6000)
    log: list[tuple[float, int]] = []

    async def main() -> None:
        await gov.acquire(2)
        gov.block_until(T0 + 30, status=429)
        await asyncio.gather(*(_grab(gov, clock, 2, log) for _ in range(5)))

    asyncio.run(main())
    assert [t for t, _ in log] == [T0 + 30] * 5
    assert clock.sleeps == [30]  # one waiter slept; the others queued behind it
    assert gov.stats().http_429 == 1 and gov.stats().http_418 == 0


def test_a_block_during_a_window_wait_extends_it() -> None:
    clock = FakeClock()
    gov = governor(clock, limit_per_minute=4, safety=1.0, edge_ms=0)

    async def main() -> None:
        await gov.acquire(4)
        waiter = asyncio.create_task(gov.acquire(2))
        await asyncio.sleep(0)
        gov.block_for(100, status=418)  # a 418 elsewhere: banned past the window's end
        await waiter
        assert clock() >= T0 + 100

    asyncio.run(main())
    assert gov.stats().http_418 == 1


def test_share_scales_the_budget() -> None:
    clock = FakeClock()
    gov = governor(clock, limit_per_minute=100, share=0.25, safety=1.0, edge_ms=0)
    log: list[tuple[float, int]] = []

    async def main() -> None:
        await asyncio.gather(*(_grab(gov, clock, 1, log) for _ in range(60)))

    asyncio.run(main())
    per_window = Counter(int(t // 60) for t, _ in log)
    assert list(per_window.values()) == [25, 25, 10]
    assert gov.peak_share == 1.0


def test_header_reconciliation_lowers_the_budget_when_someone_else_uses_weight() -> None:
    clock = FakeClock()
    gov = governor(clock, limit_per_minute=100, safety=0.97, edge_ms=0)

    async def main() -> None:
        await gov.acquire(2)
        # Another process on the same IP used 78: the exchange says 80 after our request.
        gov.observe(80, clock(), weight=2)
        await gov.acquire(10)  # 80 + 10 <= 97
        assert clock() == T0
        await gov.acquire(10)  # 90 + 10 > 97: next window
        assert clock() == 1_700_000_100.0

    asyncio.run(main())
    assert gov.stats().ip_weight_used_peak == pytest.approx(0.9)


def test_header_counts_weight_still_in_flight_and_never_lowers_the_estimate() -> None:
    clock = FakeClock()
    gov = governor(clock, limit_per_minute=100, safety=1.0, edge_ms=0)

    async def main() -> None:
        for _ in range(5):
            await gov.acquire(10)  # 50 reserved, all in flight
        gov.observe(10, clock(), weight=10)  # the first answer: 10 counted, 40 still in flight
        gov.observe(5, clock(), weight=10)  # a stale, lower header changes nothing
        await gov.acquire(50)
        assert clock() == T0
        await gov.acquire(1)
        assert clock() == 1_700_000_100.0

    asyncio.run(main())


def test_requests_sent_at_the_edge_of_a_window_count_in_the_next_too() -> None:
    clock = FakeClock(1_700_000_099.5)  # 500 ms before the minute ends
    gov = governor(clock, limit_per_minute=10, safety=1.0, edge_ms=1000)

    async def main() -> None:
        await gov.acquire(6)
        await gov.acquire(4)
        await gov.acquire(1)  # next window: already holds the 10 sent at the edge
        assert clock() == 1_700_000_160.0

    asyncio.run(main())


def test_a_request_heavier_than_the_budget_passes_in_an_empty_window() -> None:
    clock = FakeClock()
    gov = governor(clock, limit_per_minute=10, safety=0.5, edge_ms=0)

    async def main() -> None:
        await gov.acquire(1)
        await gov.acquire(8)
        assert clock() == 1_700_000_100.0

    asyncio.run(main())


def test_the_default_governor_is_shared_and_works_across_event_loops() -> None:
    gov = default_governor(1234, 0.5)
    assert default_governor(1234, 0.5) is gov
    asyncio.run(gov.acquire(1))
    asyncio.run(gov.acquire(1))
    assert gov.requests == 2


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="share"):
        WeightGovernor(share=0)
    with pytest.raises(ValueError, match="limit"):
        WeightGovernor(limit_per_minute=0)
