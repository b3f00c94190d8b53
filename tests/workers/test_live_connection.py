"""The stream connection's lifecycle against the simulator's WebSocket server, on loopback.

Pongs (the simulator closes a connection whose pings go unanswered), planned rotation before the
lifetime limit with no message lost, the silence watchdog (a stream of a symbol the exchange does
not list is accepted and never delivers), a refused subscription (the wrong USD-M route), live
SUBSCRIBE / UNSUBSCRIBE, and sharding. Waits are bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from live_support import MovingClock, small_market

from streamforge_pipelines.simulator.server import SimulatorServer
from streamforge_pipelines.simulator.ws import WsConfig
from streamforge_pipelines.workers.live.connection import (
    USDM_LIMITS,
    Lifecycle,
    StreamConnection,
    shard,
)

T0 = 1_741_608_000_000  # 2025-03-10 12:00 UTC
SPEEDUP = 20.0
CONFIG = small_market(3, ALPHAUSDT=600.0)
WAIT_S = 20.0


@contextlib.asynccontextmanager
async def _simulator(ws: WsConfig) -> AsyncIterator[str]:
    async with SimulatorServer(config=CONFIG, clock=MovingClock(T0, ws.speedup), ws=ws) as sim:
        yield sim.base_url.replace("http://", "ws://")


async def _until(what: str, ok: Callable[[], bool], within_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + within_s
    while not ok():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {within_s:.0f}s")
        await asyncio.sleep(0.02)


class _Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.states: list[tuple[str, str]] = []

    def on_message(self, stream: str, data: dict[str, Any]) -> None:
        self.messages.append((stream, data))

    def on_state(self, state: str, detail: str) -> None:
        self.states.append((state, detail))

    def count(self, state: str) -> int:
        return sum(s == state for s, _ in self.states)


def _run(coro: Callable[[], Any]) -> Any:
    async def main() -> Any:
        async with asyncio.timeout(90):
            return await coro()

    return asyncio.run(main())


def test_pongs_keep_the_connection_and_rotation_loses_nothing() -> None:
    """Pings every 0.3 s with a 1 s pong limit, and a 2.5 s lifetime: the connection must answer the
    pings, and rotate before the exchange ends it, with every aggregate trade id passing."""
    ws = WsConfig(speedup=SPEEDUP, ping_interval_s=0.3, pong_timeout_s=1.0, max_lifetime_s=2.5)
    rec = _Recorder()
    lifecycle = Lifecycle(rotate_after_s=1.5, silence_s=10.0)

    async def main() -> StreamConnection:
        async with _simulator(ws) as base:
            conn = StreamConnection(
                f"{base}/stream",
                ["alphausdt@aggTrade"],
                rec.on_message,
                lifecycle=lifecycle,
                on_state=rec.on_state,
            )
            runner = asyncio.create_task(conn.run())
            await _until("three rotations", lambda: conn.rotations >= 3)
            await conn.close()
            await runner
            return conn

    conn = _run(main)
    assert conn.reconnects == 0, rec.states  # never closed by the exchange: pongs answered, rotated in time
    ids = [d["a"] for _, d in rec.messages]
    passed = sorted(set(ids))
    assert passed == list(range(passed[0], passed[-1] + 1)), "an id was lost across a rotation"
    assert len(ids) > len(passed), "the successor overlapped the old connection (both delivered)"


def test_server_shutdown_is_a_rotation_not_a_loss() -> None:
    """The exchange ends each connection after 1 s with ``serverShutdown`` (before the client's own
    rotation is due): the client opens the successor at once and counts no reconnect."""
    ws = WsConfig(speedup=SPEEDUP, max_lifetime_s=1.0)
    rec = _Recorder()

    async def main() -> StreamConnection:
        async with _simulator(ws) as base:
            conn = StreamConnection(
                f"{base}/stream",
                ["alphausdt@aggTrade"],
                rec.on_message,
                lifecycle=Lifecycle(rotate_after_s=3600.0),
                on_state=rec.on_state,
            )
            runner = asyncio.create_task(conn.run())
            await _until("three planned shutdowns", lambda: conn.rotations >= 3)
            await conn.close()
            await runner
            return conn

    conn = _run(main)
    assert conn.reconnects == 0 and rec.count("lost") == 0, rec.states
    assert rec.count("rotated") == conn.rotations


def test_unanswered_pings_would_close_it() -> None:
    """The same server closes a connection that does not pong (so the check above can fail)."""
    import aiohttp

    ws = WsConfig(speedup=SPEEDUP, ping_interval_s=0.2, pong_timeout_s=0.5)

    async def main() -> int | None:
        async with _simulator(ws) as base, aiohttp.ClientSession() as http:
            url = f"{base}/stream?streams=alphausdt@aggTrade"
            async with http.ws_connect(url, autoping=False) as sock:  # pings are never answered
                async with asyncio.timeout(10):
                    async for _ in sock:
                        pass
                return sock.close_code

    assert _run(main) == 1008


def test_silence_watchdog_reports_a_stream_that_never_delivers_and_reconnects_a_silent_socket() -> None:
    ws = WsConfig(speedup=SPEEDUP)
    rec = _Recorder()
    lifecycle = Lifecycle(silence_s=0.8, stream_silence_s=0.8, backoff_base_s=0.05, backoff_cap_s=0.1)

    async def main() -> tuple[list[str], StreamConnection]:
        async with _simulator(ws) as base:
            # NOSUCHUSDT is well formed and unknown: accepted, silent (as Binance does)
            conn = StreamConnection(
                f"{base}/stream",
                ["nosuchusdt@aggTrade"],
                rec.on_message,
                lifecycle=lifecycle,
                on_state=rec.on_state,
            )
            runner = asyncio.create_task(conn.run())
            await _until("the silent stream reported", lambda: bool(conn.silent()))
            silent = conn.silent()
            await _until("the silent socket replaced", lambda: conn.reconnects >= 1)
            await conn.close()
            await runner
            return silent, conn

    silent, _ = _run(main)
    assert silent == ["nosuchusdt@aggTrade"]
    assert any("silent" in detail for state, detail in rec.states if state == "lost"), rec.states


def test_a_stream_on_the_wrong_usdm_route_is_refused_not_silent() -> None:
    ws = WsConfig(speedup=SPEEDUP)
    rec = _Recorder()
    lifecycle = Lifecycle(backoff_base_s=0.05, backoff_cap_s=0.1)

    async def main() -> StreamConnection:
        async with _simulator(ws) as base:
            conn = StreamConnection(
                f"{base}/fapi-ws/public/stream",
                ["alphausdt@aggTrade"],  # a /market stream
                rec.on_message,
                limits=USDM_LIMITS,
                lifecycle=lifecycle,
                on_state=rec.on_state,
            )
            runner = asyncio.create_task(conn.run())
            await _until("the refusal", lambda: rec.count("refused") >= 1)
            await conn.close()
            await runner
            return conn

    conn = _run(main)
    assert conn.refused == {"alphausdt@aggTrade"}
    assert "invalid stream" in next(d for s, d in rec.states if s == "refused")


def test_live_subscribe_and_unsubscribe() -> None:
    ws = WsConfig(speedup=SPEEDUP)
    rec = _Recorder()

    async def main() -> None:
        async with _simulator(ws) as base:
            conn = StreamConnection(
                f"{base}/stream", ["alphausdt@aggTrade"], rec.on_message, on_state=rec.on_state
            )
            runner = asyncio.create_task(conn.run())
            await _until("trades", lambda: any(s == "alphausdt@aggTrade" for s, _ in rec.messages))
            await conn.subscribe(["alphausdt@kline_1m"])
            await _until(
                "klines after SUBSCRIBE", lambda: any(s == "alphausdt@kline_1m" for s, _ in rec.messages)
            )
            await conn.unsubscribe(["alphausdt@aggTrade"])
            n = len(rec.messages)
            await _until(
                "more klines", lambda: sum(s == "alphausdt@kline_1m" for s, _ in rec.messages[n:]) >= 3
            )
            late = [s for s, _ in rec.messages[n:]]
            await conn.close()
            await runner
            # a batch the server had collected before the UNSUBSCRIBE may still arrive; after the
            # second kline push since, no trade
            second = [i for i, s in enumerate(late) if s == "alphausdt@kline_1m"][1]
            assert "alphausdt@aggTrade" not in late[second:]
            assert conn.names == ["alphausdt@kline_1m"]

    _run(main)


def test_shard_and_limits() -> None:
    names = [f"s{i}@aggTrade" for i in range(2500)]
    parts = shard(names, 1024)
    assert [len(p) for p in parts] == [1024, 1024, 452] and [n for p in parts for n in p] == names
    with pytest.raises(ValueError, match="at most 200"):
        StreamConnection("ws://x/stream", names[:201], lambda s, d: None, limits=USDM_LIMITS)


def test_reconnect_backoff_is_capped_with_full_jitter() -> None:
    """Against a port nobody listens on: every attempt fails; the waits stay under the cap."""
    rec = _Recorder()
    lifecycle = Lifecycle(backoff_base_s=0.01, backoff_cap_s=0.05, open_timeout_s=1.0)

    async def main() -> None:
        from streamforge_pipelines.stack import free_port

        conn = StreamConnection(
            f"ws://127.0.0.1:{free_port()}/stream",
            ["alphausdt@aggTrade"],
            rec.on_message,
            lifecycle=lifecycle,
            on_state=rec.on_state,
            rng=random.Random(1),
        )
        runner = asyncio.create_task(conn.run())
        await _until("ten failed attempts", lambda: rec.count("lost") >= 10)
        await conn.close()
        await runner

    _run(main)
    assert all(state == "lost" for state, _ in rec.states)
    # the wait before attempt n: uniform in [0, min(cap, base 2^(n-1))] (full jitter, capped)
    conn = StreamConnection("ws://x/stream", [], rec.on_message, lifecycle=lifecycle, rng=random.Random(2))
    late_waits = [conn._backoff.delay(30) for _ in range(2000)]
    assert max(late_waits) <= 0.05 and min(late_waits) < 0.01 and max(late_waits) > 0.04
    assert max(conn._backoff.delay(1) for _ in range(2000)) <= 0.01
