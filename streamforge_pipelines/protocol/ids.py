"""What every message carries besides its content: the schema version, task and worker identifiers,
time ranges and the clock.

A task's ``queue_id`` and its workers' ``telemetry_id`` / ``producer`` share one 6-hex-digit suffix
(:func:`new_suffix`), so an event names the task it is about; a producer id is a component name
(:data:`LOADER_CANDLES` ...) and that suffix joined by ``__``.
"""

from __future__ import annotations

import re
import secrets
import time
from datetime import date

#: The version of the messages this code writes; a command of a newer version is refused.
SCHEMA_VERSION = 1

#: Producer component names (the part of ``producer`` / ``telemetry_id`` before ``__``).
LOADER_PRODUCER = "loader-producer"
LOADER_CANDLES = "loader-api-candles"
LOADER_TRADES = "loader-api-trades"
CONNECTOR = "arango-connector"
QUEUE_MANAGER = "queue-manager"

#: A ``time_range``: first and last day, both inclusive.
TIME_RANGE = re.compile(r"^(\d{4}-\d{2}-\d{2}):(\d{4}-\d{2}-\d{2})$")


def new_suffix() -> str:
    """The 6 hex digits shared by a task's ``queue_id`` and its workers' ``telemetry_id``."""
    return secrets.token_hex(3)


def make_queue_id(symbol: str, task_type: str, first_day: date, suffix: str | None = None) -> str:
    """``wf-btcusdt-api_candles_5m-20240801-a1b2c3``."""
    return f"wf-{symbol.lower()}-{task_type}-{first_day:%Y%m%d}-{suffix or new_suffix()}"


def queue_id_suffix(queue_id: str) -> str:
    return queue_id.rsplit("-", 1)[-1]


def make_producer_id(component: str, suffix: str) -> str:
    """``loader-api-candles__a1b2c3``."""
    return f"{component}__{suffix}"


def format_time_range(first: date, last: date) -> str:
    return f"{first:%Y-%m-%d}:{last:%Y-%m-%d}"


def parse_time_range(value: str) -> tuple[date, date]:
    """``2024-08-01:2024-08-07`` -> (first, last) days, both inclusive."""
    m = TIME_RANGE.match(value)
    if not m:
        raise ValueError(f"expected YYYY-MM-DD:YYYY-MM-DD, got {value!r}")
    try:
        first, last = date.fromisoformat(m.group(1)), date.fromisoformat(m.group(2))
    except ValueError as exc:
        raise ValueError(f"{exc} in {value!r}") from None
    if last < first:
        raise ValueError(f"end day before start day in {value!r}")
    return first, last


def now_s() -> float:
    return time.time()
