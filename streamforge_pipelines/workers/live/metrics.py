"""Prometheus metrics of the stream workers, per stream type and symbol (README "Live streams").

``type`` is the task type (``ws_agg_trades``, ``ws_candles_1m``, ``ws_orderbook`` ...).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BOOK_AGE",
    "GAPS",
    "LATENCY",
    "MESSAGES",
    "RECONNECTS",
    "RECORDS",
    "RESYNCS",
    "SILENT",
]

MESSAGES = Counter(
    "streamforge_stream_messages_total", "Exchange stream messages received", ["type", "symbol"]
)
RECORDS = Counter("streamforge_stream_records_total", "Records produced by stream tasks", ["type", "symbol"])
GAPS = Counter(
    "streamforge_stream_gaps_total",
    "Sequence gaps seen (trade ids skipped, book diffs missing)",
    ["type", "symbol"],
)
RESYNCS = Counter(
    "streamforge_stream_resyncs_total", "Order books resynced from a new snapshot", ["symbol", "reason"]
)
RECONNECTS = Counter("streamforge_stream_reconnects_total", "Stream connections lost and reopened", ["type"])
BOOK_AGE = Gauge(
    "streamforge_stream_book_age_seconds",
    "Seconds since the exchange event of the last update applied to a book (at its last snapshot)",
    ["symbol"],
)
SILENT = Gauge(
    "streamforge_stream_silent",
    "1 while a subscribed stream of the symbol delivers nothing",
    ["type", "symbol"],
)
LATENCY = Histogram(
    "streamforge_stream_latency_seconds",
    "Exchange event time to record handed to Kafka",
    ["type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
