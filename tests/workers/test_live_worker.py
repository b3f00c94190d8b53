"""The stream worker on the session broker: start, ping, a live change of symbols and stop by command.

``serve_streams`` runs in the test's event loop against an in-process simulator; commands go to its
``queue-control`` topic as the queue-manager sends them, and the test reads ``queue-events``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from live_support import MovingClock, small_market

from streamforge_pipelines.kafka import make_producer
from streamforge_pipelines.protocol import Command, Event, decode_event
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.simulator.server import SimulatorServer
from streamforge_pipelines.simulator.ws import WsConfig
from streamforge_pipelines.workers import serve_streams

T0 = 1_741_608_000_000
CONFIG = small_market(5, ALPHAUSDT=None, BETAUSDT=None, GAMMAUSDT=None)
#: Bound on each thing the test waits for (a consumer group join takes several seconds on Tansu).
WAIT_S = 60.0


class _Events:
    """``queue-events`` as it arrives."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = AIOKafkaConsumer(
            settings.topic_events,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
        )
        self.seen: list[Event] = []

    async def until(self, what: str, ok: Callable[[Event], bool]) -> Event:
        async with asyncio.timeout(WAIT_S):
            while True:
                for e in self.seen:
                    if ok(e):
                        self.seen.remove(e)
                        return e
                batch = await self.consumer.getmany(timeout_ms=200)
                self.seen.extend(decode_event(r.value or b"") for rs in batch.values() for r in rs)
        raise AssertionError(what)  # pragma: no cover - the timeout raises first


def test_start_ping_resubscribe_and_stop_by_command(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(partitions=2)
    qid = f"live-ws_candles_1m-spot-{uuid.uuid4().hex[:6]}"

    def command(name: str, **fields: Any) -> bytes:
        return Command(command=name, queue_id=qid, target="loader-ws-candles", **fields).encode()

    async def main() -> dict[str, Event]:
        async with SimulatorServer(
            config=CONFIG, clock=MovingClock(T0, 20.0), ws=WsConfig(speedup=20.0)
        ) as sim:
            live = settings.model_copy(update={"exchange_url": sim.base_url, "live_heartbeat_s": 0.5})
            stop = asyncio.Event()
            worker = asyncio.create_task(serve_streams(live, stop=stop, install_signals=False))
            producer = make_producer(live.kafka_bootstrap_servers or "")
            await producer.start()
            events = _Events(live)
            await events.consumer.start()
            got: dict[str, Event] = {}
            try:

                async def send(raw: bytes) -> None:
                    await producer.send_and_wait(live.topic_control, raw, key=qid.encode())

                await send(b'{"command": "start", "queue_id": "x"}')  # refused: logged, the worker goes on
                await send(command("start", type="ws_candles_1m", symbols=["ALPHAUSDT", "BETAUSDT"]))
                got["started"] = await events.until(
                    "started", lambda e: e.queue_id == qid and e.status == "started"
                )
                got["beat"] = await events.until(
                    "a heartbeat with messages",
                    lambda e: e.status == "streaming" and e.stream is not None and e.stream.messages > 0,
                )
                await send(command("ping"))
                await send(command("start", type="ws_candles_1m", symbols=["BETAUSDT", "GAMMAUSDT"]))
                got["moved"] = await events.until(
                    "a heartbeat with the new symbols",
                    lambda e: e.stream is not None and e.stream.symbols == ["BETAUSDT", "GAMMAUSDT"],
                )
                await send(command("stop"))
                got["finished"] = await events.until("finished", lambda e: e.status == "finished")
                assert not worker.done(), "the worker must keep serving after a task stopped"
                stop.set()
                async with asyncio.timeout(WAIT_S):
                    await worker
            finally:
                stop.set()
                await events.consumer.stop()
                await producer.stop()
            return got

    got = asyncio.run(main())
    assert got["started"].producer.startswith("loader-ws-candles__")
    assert got["beat"].stream is not None and got["beat"].stream.symbols == ["ALPHAUSDT", "BETAUSDT"]
    final = got["finished"]
    assert final.message == "stopped" and final.finished and final.stream is not None
    assert final.stream.messages >= got["beat"].stream.messages
