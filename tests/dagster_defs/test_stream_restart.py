"""SIGKILL of a stream worker: the stack's supervisor starts a new one, the streams sensor sends the
stream's start again, the restarted task resumes from its checkpoint and repairs the gap from REST,
and the store ends up holding the simulator's aggregate trades exactly once each.

The stack runs the connector and the stream worker as child processes (``Stack(streams=True)``, as
``streamforge dev`` does) against the session broker and a simulator served from the test process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import dagster as dg
from live_env import SYMBOLS, T0, threaded_simulator

from streamforge_pipelines.datasets import TRADES
from streamforge_pipelines.definitions import build_definitions
from streamforge_pipelines.intervals import HOUR_MS
from streamforge_pipelines.names import LIVE_STREAMS_JOB, LIVE_STREAMS_OP
from streamforge_pipelines.queue_manager.stream_watch import DEAD, STREAMING
from streamforge_pipelines.resources import resources_for
from streamforge_pipelines.sensors.streams import StreamsTick, streams_tick
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.stack import Stack
from streamforge_pipelines.store import Store, store_from_settings

QUEUE_ID = "live-ws_agg_trades-spot"
#: Bounds on the steps below (each normally takes a few seconds).
WITHIN_S = 45.0


def _stream_job(settings: Settings, instance: dg.DagsterInstance, action: str) -> None:
    job = build_definitions(resources_for(settings)).resolve_job_def(LIVE_STREAMS_JOB)
    config = {"action": action, "type": "ws_agg_trades", "symbols": SYMBOLS, "wait_s": WITHIN_S}
    result = job.execute_in_process(
        run_config={"ops": {LIVE_STREAMS_OP: {"config": config}}}, instance=instance, raise_on_error=False
    )
    assert result.success, [str(e.event_specific_data) for e in result.all_events if e.is_failure]


class Sensor:
    """The streams sensor's body, ticked by the test with its cursor kept between ticks."""

    def __init__(self, settings: Settings, instance: dg.DagsterInstance) -> None:
        self.settings, self.instance, self.cursor = settings, instance, None
        self.sent: list[str] = []

    def tick(self) -> StreamsTick:
        with store_from_settings(self.settings) as db:
            tick = streams_tick(self.instance, self.settings, db, self.cursor)
        self.cursor = tick.cursor
        self.sent += tick.sent
        return tick

    def until(self, what: str, done: Callable[[StreamsTick], bool]) -> StreamsTick:
        deadline = time.monotonic() + WITHIN_S
        while True:
            tick = self.tick()
            if done(tick):
                return tick
            assert time.monotonic() < deadline, f"{what}: not within {WITHIN_S}s: {tick.info} {tick.warnings}"
            time.sleep(0.5)


def _state(tick: StreamsTick) -> str:
    (view,) = tick.views
    return view.state


def _stored(db: Store) -> dict[str, list[int]]:
    return {s: [d["id"] for d in db.read(TRADES, (s, "agg"), 0, 2**62)] for s in SYMBOLS}


def test_a_killed_worker_is_replaced_and_its_stream_restarted_without_loss_or_duplicates(
    make_settings: Callable[..., Settings], read_docs: Callable[[str, str], Awaitable[list[dict[str, Any]]]]
) -> None:
    with threaded_simulator() as (sim, _clock), dg.instance_for_test() as instance:
        settings = make_settings(
            partitions=1,
            exchange_url=sim.base_url,
            live_heartbeat_s=1.0,
            live_flush_ms=20,
            live_dead_after_beats=3.0,
            live_restart_every_s=5.0,
        )
        with Stack(settings, connector=True, streams=True) as stack:
            _stream_job(settings, instance, "start")
            sensor = Sensor(settings, instance)
            sensor.until("streaming", lambda t: _state(t) == STREAMING and t.views[0].new_records > 0)

            first = stack.procs["streams"][0]
            os.kill(first.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            dead = sensor.until("dead and started again", lambda t: _state(t) == DEAD and t.sent != [])
            assert dead.sent == [f"start {QUEUE_ID}"]
            assert stack.restarts.get("streams") == 1 and stack.procs["streams"][0].pid != first.pid

            def resumed(t: StreamsTick) -> bool:
                view = t.views[0]
                return view.state == STREAMING and view.heard is not None and view.heard.stream.repaired > 0

            back = sensor.until("streaming again with the gap repaired", resumed)
            # until the new worker has joined the group (the killed one's session must expire first)
            # the start goes out again, at most once per LIVE_RESTART_EVERY_S
            waited = time.monotonic() - killed_at
            assert set(sensor.sent) == {f"start {QUEUE_ID}"}
            assert len(sensor.sent) <= 1 + waited // settings.live_restart_every_s, sensor.sent
            assert back.views[0].heard is not None and back.views[0].heard.producer.startswith(
                "loader-ws-trades"
            )
            _stream_job(settings, instance, "stop")

            produced = asyncio.run(read_docs(settings.kafka_bootstrap_servers or "", settings.topic_trades))
            want = {s: sorted({d["id"] for d in produced if d["symbol"] == s}) for s in SYMBOLS}
            deadline = time.monotonic() + WITHIN_S
            while True:
                with store_from_settings(settings) as db:
                    stored = _stored(db)
                if stored == want or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert stack.failure() is None
            with store_from_settings(settings) as db:
                assert db.duplicates(TRADES, SYMBOLS, ("agg",), 0, 2**62) == 0

    assert stored == want, "the connector did not store what the stream produced"
    for symbol in SYMBOLS:
        ids = stored[symbol]
        assert ids, f"no {symbol} trades"
        assert ids == list(range(ids[0], ids[-1] + 1)), f"{symbol}: a hole the restart left"
        truth = sim.market.agg_trades(symbol, T0 + 24 * HOUR_MS, limit=len(ids), from_id=ids[0])
        assert [t["a"] for t in truth] == ids
        sources = Counter(d["source"] for d in produced if d["symbol"] == symbol)
        assert sources["ws"] > 0 and sources["rest"] > 0, f"{symbol}: streamed and repaired: {sources}"
