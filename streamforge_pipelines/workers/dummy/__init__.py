"""dummy-service: the "test rabbit" that pretends to be other services (no Dagster import).

Modes, each an async function for tests and a ``main(settings, ...)`` in its module (``ping``,
``load``, ``impersonate``) for ``streamforge dummy <mode>``:

* :func:`kafka_ping` — round trips through the broker with their latency percentiles;
* :func:`produce_load` — ``candle`` / ``event`` / ``raw`` messages at a paced (or unthrottled) rate;
* :func:`impersonate_worker` — ``queue-events`` telemetry of a named worker, by scripted behaviour.

While a mode runs as a process it serves ``/health`` and ``/metrics`` (:class:`HealthServer`), logs
JSON lines, and stops cleanly on SIGTERM/SIGINT. The exchange simulator, the other face of the
dummy-service, lives in :mod:`streamforge_pipelines.simulator`.
"""

from __future__ import annotations

from .health import DUMMY, HealthServer, ModeStatus, serve_mode
from .impersonate import BEHAVIOURS, ImpersonateReport, impersonate_worker
from .load import SCHEMAS, LoadReport, produce_load
from .ping import PingReport, kafka_ping

__all__ = [
    "BEHAVIOURS",
    "DUMMY",
    "SCHEMAS",
    "HealthServer",
    "ImpersonateReport",
    "LoadReport",
    "ModeStatus",
    "PingReport",
    "impersonate_worker",
    "kafka_ping",
    "produce_load",
    "serve_mode",
]
