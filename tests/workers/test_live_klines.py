"""Live closed klines through the connector and the completeness ledger, with disconnects injected.

A ``ws_candles_1m`` stream runs minutes of a day in seconds against the simulator (every connection
dropped within a second or two), an in-process connector stores what it produces, and then the
ledger's repair round runs for the day: it must fetch from REST exactly the minutes the stream did
not store (the hours before it started and whatever its disconnects lost), nothing the stream
covered, and leave the day's closed candles equal to the simulator's klines.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from live_support import MovingClock, small_market, stream_for

from streamforge_pipelines.datasets import CANDLES
from streamforge_pipelines.intervals import MINUTE_MS, day_start_ms
from streamforge_pipelines.protocol import Command
from streamforge_pipelines.queue_manager import LoadRequest, LoadRun, repair_candles
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.simulator.server import SimulatorServer
from streamforge_pipelines.simulator.ws import WsConfig
from streamforge_pipelines.store import Store, store_from_settings
from streamforge_pipelines.workers.connector import Connector
from streamforge_pipelines.workers.live.task import StreamTask

DAY = date(2025, 3, 10)
DAY_START = day_start_ms(DAY)
T0 = DAY_START + 3 * 60 * MINUTE_MS  # 03:00 UTC: three hours of the day before the stream starts
SPEEDUP = 30.0
SYMBOLS = ["ALPHAUSDT", "BETAUSDT"]
CONFIG = small_market(13, ALPHAUSDT=None, BETAUSDT=None)
DROPPED = WsConfig(speedup=SPEEDUP, disconnect_rate=1.0, disconnect_within_s=1.5, fault_seed=9)
#: Bound on the connector storing what the stream produced.
STORED_WITHIN_S = 60.0


def _stored(store: Store, until_ms: int) -> dict[str, list[int]]:
    return {s: [d["open_time"] for d in store.read(CANDLES, (s, "1m"), DAY_START, until_ms)] for s in SYMBOLS}


async def _until_stored(store: Store, count: int) -> None:
    deadline = time.monotonic() + STORED_WITHIN_S
    while sum(map(len, _stored(store, DAY_START + 86_400_000).values())) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"the connector did not store the {count} live candles within {STORED_WITHIN_S:.0f}s")
        await asyncio.sleep(0.1)


def test_live_klines_count_in_the_ledger_and_lost_minutes_are_repaired(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(partitions=2)
    command = Command(
        command="start",
        queue_id=f"ws-candles-{uuid.uuid4().hex[:6]}",
        target="loader-ws-candles",
        type="ws_candles_1m",
        symbols=SYMBOLS,
    )
    store = store_from_settings(settings)
    request = LoadRequest(symbols=tuple(SYMBOLS), interval="1m", first=DAY, last=DAY)
    seen: dict[str, Any] = {}

    async def repair_round(
        sim: SimulatorServer, live: Settings, clock: MovingClock, task: StreamTask
    ) -> None:
        await _until_stored(store, task.counts.records)
        now = clock()
        seen["now"], seen["live"] = now, _stored(store, now)
        seen["outcome"] = await repair_candles(request, LoadRun(live, store, clock_ms=lambda: now))
        seen["truth"] = {
            s: [
                k
                for start in range(DAY_START, now, 1000 * MINUTE_MS)
                for k in sim.market.klines(s, "1m", start, min(start + 1000 * MINUTE_MS, now) - 1, 1000, now)
                if k[6] < now  # closed candles only: the ledger expects those
            ]
            for s in SYMBOLS
        }

    async def main() -> StreamTask:
        stop = asyncio.Event()
        connector = asyncio.create_task(Connector(settings, store).run(stop))
        try:
            task, _, _ = await stream_for(
                settings, command, 5.0, config=CONFIG, ws=DROPPED, start_ms=T0, during=repair_round
            )
            return task
        finally:
            stop.set()
            await connector

    task = asyncio.run(main())
    assert task.counts.reconnects >= 2, f"the simulator was to drop every connection: {task.stats}"
    now, live, outcome = seen["now"], seen["live"], seen["outcome"]
    assert all(live.values()), f"the stream stored no closed candle: {task.stats}"
    assert not outcome.errors, outcome.errors
    for symbol in SYMBOLS:
        truth = seen["truth"][symbol]
        stored = store.read(CANDLES, (symbol, "1m"), DAY_START, now)
        assert [d["open_time"] for d in stored] == [k[0] for k in truth], f"{symbol}: the day is not whole"
        for d, k in zip(stored, truth, strict=True):
            got = [d["open"], d["high"], d["low"], d["close"], d["volume"], d["close_time"], d["trades"]]
            assert got == [k[1], k[2], k[3], k[4], k[5], k[6], k[8]], f"{symbol} {k[0]}"
        sources = {d["open_time"]: d["source"] for d in stored}
        # what the stream stored the repair did not fetch again; everything else came from REST
        assert all(sources[t] == "ws" for t in live[symbol]), f"{symbol}: a live minute was re-fetched"
        assert sum(src != "ws" for src in sources.values()) == len(truth) - len(live[symbol])
    entries = outcome.entries
    assert entries and all(e.missing == 0 for e in entries), [(e.key, e.missing) for e in entries]
    assert sum(e.repaired for e in entries) == sum(len(seen["truth"][s]) - len(live[s]) for s in SYMBOLS)
