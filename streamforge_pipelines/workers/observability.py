"""Structured JSON logs and Prometheus metrics for workers.

Every worker logs one JSON object per line (``ts``, ``level``, ``logger``, ``msg`` plus any
``extra=`` fields) and may serve ``/metrics`` on ``METRICS_PORT``. Metric objects live at module
level, as prometheus-client expects, and carry a ``worker`` label.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson
from prometheus_client import Counter, Gauge, Histogram, start_http_server

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields passed with ``extra=`` are kept as top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    """Route the root logger to JSON lines on ``stream`` (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


def serve_metrics(port: int) -> int | None:
    """Serve ``/metrics`` on ``port`` (0 = disabled). Returns the port served, if any."""
    if port <= 0:
        return None
    start_http_server(port, addr="0.0.0.0")
    return port


# ---- metrics shared by the workers --------------------------------------------------------------

RECORDS = Counter("streamforge_records_total", "Records handled", ["worker", "outcome"])
BATCHES = Counter("streamforge_batches_total", "Batches handled", ["worker"])
ERRORS = Counter("streamforge_errors_total", "Errors by kind", ["worker", "kind"])
LATENCY = Histogram(
    "streamforge_batch_seconds",
    "Latency of one unit of work (an HTTP page for loaders, a consumed batch for the connector)",
    ["worker", "stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class Timer:
    """``with Timer(LATENCY.labels(...)):`` observes the block's duration."""

    def __init__(self, histogram: Any) -> None:
        self._h = histogram
        self._t0 = 0.0

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._h.observe(time.perf_counter() - self._t0)


# ---- exchange REST client (every request, whichever worker sends it) ----------------------------

EXCHANGE_REQUESTS = Counter(
    "streamforge_exchange_requests_total", "Exchange REST requests by path and outcome", ["path", "outcome"]
)
EXCHANGE_WEIGHT = Counter(
    "streamforge_exchange_weight_total", "Request weight charged to the budget", ["path"]
)
EXCHANGE_RATE_LIMITED = Counter(
    "streamforge_exchange_rate_limited_total", "Exchange answers 429 (rate limit) and 418 (ban)", ["status"]
)
EXCHANGE_RETRIES = Counter(
    "streamforge_exchange_retries_total", "Exchange requests retried", ["path", "reason"]
)
EXCHANGE_USED_WEIGHT = Gauge(
    "streamforge_exchange_used_weight_1m", "Last X-MBX-USED-WEIGHT-1M the exchange reported"
)
EXCHANGE_LATENCY = Histogram(
    "streamforge_exchange_request_seconds",
    "Latency of one exchange REST request (without the governor's waits)",
    ["path"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
