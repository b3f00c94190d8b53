"""What every dummy-service mode serves while it runs, and the scaffold that runs a mode as a process.

:class:`ModeStatus` is a mode's live state (``mode``, ``status``, counters). :class:`HealthServer`
is an aiohttp server in the mode's own event loop answering ``GET /health`` (that state as JSON,
with ``uptime_s``) and ``GET /metrics`` (the process's Prometheus registry in the text exposition
format). Port 0 lets the OS pick a free port; the URL served is logged as one JSON line
(``health_url``, ``metrics_url``).

:func:`run_mode` is what each mode's ``main(...)`` calls: JSON logs, the health server, SIGTERM /
SIGINT turned into the mode's ``stop`` event (the mode then flushes its producer and reports), the
final report printed as one JSON line on stdout, and the exit status the mode decides.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from ..observability import configure_logging

log = logging.getLogger(__name__)

#: The component name of the dummy-service (the ``worker`` label of its metrics, the ``target`` of pings).
DUMMY = "dummy-service"


@dataclass
class ModeStatus:
    """A running mode's state as ``/health`` shows it."""

    mode: str
    status: str = "starting"
    counters: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def count(self, name: str, n: float = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def snapshot(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "status": self.status,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "counters": dict(self.counters),
        }


class HealthServer:
    """``/health`` and ``/metrics`` for one mode, on ``host:port`` (0 = a free port)."""

    def __init__(self, status: ModeStatus, host: str = "127.0.0.1", port: int = 0) -> None:
        self.status = status
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info(
            "dummy %s serving /health and /metrics on %s",
            self.status.mode,
            self.url,
            extra={
                "mode": self.status.mode,
                "health_url": f"{self.url}/health",
                "metrics_url": f"{self.url}/metrics",
            },
        )
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HealthServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response(self.status.snapshot(), dumps=lambda v: orjson.dumps(v).decode())

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


class Report(Protocol):
    """What a mode returns: a JSON-able summary and whether the run succeeded."""

    @property
    def ok(self) -> bool: ...

    def as_dict(self) -> dict[str, Any]: ...


ModeFn = Callable[[asyncio.Event, ModeStatus], Awaitable[Report]]


async def serve_mode(
    mode: str,
    fn: ModeFn,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    signals: bool = True,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[HealthServer], None] | None = None,
) -> Report:
    """Run ``fn(stop, status)`` with the health server up and SIGTERM/SIGINT setting ``stop``.

    ``on_ready`` is called with the started server (its ``url``) before the mode begins.
    """
    stop = stop or asyncio.Event()
    status = ModeStatus(mode)
    loop = asyncio.get_running_loop()
    installed: list[int] = []
    if signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    try:
        async with HealthServer(status, host, port) as server:
            if on_ready is not None:
                on_ready(server)
            status.status = "running"
            report = await fn(stop, status)
            status.status = "done" if report.ok else "failed"
            return report
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def run_mode(
    mode: str, fn: ModeFn, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "INFO"
) -> int:
    """A mode as a process: logs, health server, signals; prints the report; 0 if it went well, else 1."""
    configure_logging(log_level)
    coro = serve_mode(mode, fn, host=host, port=port)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        report = asyncio.run(coro)
    else:
        report = uvloop.run(coro)
    data = report.as_dict()
    log.info("dummy %s report: %s", mode, data, extra={"mode": mode, "ok": report.ok})
    sys.stdout.write(orjson.dumps({"mode": mode, "ok": report.ok, **data}).decode() + "\n")
    sys.stdout.flush()
    return 0 if report.ok else 1


def bootstrap_of(settings: Any) -> str:
    """The configured Kafka cluster; the dummy-service never starts a broker of its own."""
    bootstrap = settings.kafka_bootstrap_servers
    if not bootstrap:
        raise ValueError("KAFKA_BOOTSTRAP_SERVERS: the dummy-service needs a running broker")
    return str(bootstrap)
