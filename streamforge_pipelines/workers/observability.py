"""Structured JSON logs and Prometheus metrics for workers.

Every worker logs one JSON object per line (``ts``, ``level``, ``logger``, ``msg`` plus any
``extra=`` fields) and may serve ``/metrics`` on ``METRICS_PORT``, bound to ``METRICS_HOST``
(loopback unless set: a pod sets ``0.0.0.0`` for Prometheus). Metric objects live at module
level, as prometheus-client expects, and carry a ``worker`` label.

**Secrets never reach a log line**: the handler :func:`configure_logging` installs carries
:class:`RedactSecrets`, which rewrites every record it emits, whichever logger made it (python-arango,
urllib3 and aiokafka included): credentials inside a URL (``http://user:password@host`` ->
``http://***@host``) and the literal values of the secret settings, in the message, its arguments,
``extra=`` fields and the traceback text.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable
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
            out["exc"] = record.exc_text or self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


#: ``scheme://user:password@`` (or ``scheme://token@``): everything between ``://`` and the last ``@``
#: of the authority. A password must be percent-encoded in a URL; an unencoded ``@`` in it is covered.
_URL_CREDENTIALS = re.compile(r"\b([A-Za-z][A-Za-z0-9+.\-]*://)[^\s/?#'\"<>]*@")
#: Literal secret values shorter than this are not searched for (they would mangle every line).
MIN_SECRET_CHARS = 4
#: The settings whose values are secrets (``Settings.redacted`` masks the same ones).
SECRET_SETTINGS = ("arango_password", "minio_access_key", "minio_secret_key")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with URL credentials replaced (``http://***@host``) and every value of ``secrets``
    replaced by ``***``."""
    if "://" in text:
        text = _URL_CREDENTIALS.sub(r"\1***@", text)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def settings_secrets(settings: Any) -> tuple[str, ...]:
    """The values of a :class:`~streamforge_pipelines.settings.Settings`' secret settings, for
    :func:`configure_logging`, and the password written inside any URL setting (``ARANGO_URL``): its
    URL shape is redacted anyway, but a password with an unencoded ``/`` breaks that shape."""
    values = [getattr(settings, name, None) for name in SECRET_SETTINGS]
    for value in vars(settings).values():
        if isinstance(value, str) and "://" in value and "@" in value:
            values.append(value.partition("://")[2].rpartition("@")[0].partition(":")[2])
    return tuple(v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_CHARS)


class RedactSecrets(logging.Filter):
    """A handler filter that removes secrets from every record before it is formatted (:func:`redact`).

    The message is rendered with its arguments first (an argument may be any object whose ``str``
    holds a URL: a client, an exception), then redacted; ``extra=`` fields are redacted in place
    (strings, and containers of them; another object only when its ``str`` holds a secret); a
    traceback is rendered and redacted into ``exc_text``, which formatters print instead.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s and len(s) >= MIN_SECRET_CHARS)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: logging reports it when formatting
            return True
        record.msg, record.args = redact(message, self.secrets), None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                record.__dict__[key] = self._clean(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True

    def _clean(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return redact(value, self.secrets)
        if value is None or isinstance(value, int | float | bool):
            return value
        if depth < 4 and isinstance(value, dict):
            return {self._clean(k, depth + 1): self._clean(v, depth + 1) for k, v in value.items()}
        if depth < 4 and isinstance(value, list | tuple | set | frozenset):
            return [self._clean(v, depth + 1) for v in value]
        text = str(value)
        clean = redact(text, self.secrets)
        return value if clean == text else clean


class QuietRepeats(logging.Filter):
    """Drops a warning or error whose logger and message template were let through less than
    ``window_s`` ago, and marks the next one let through with ``repeats_dropped``: a client retrying
    against a broker that is gone (aiokafka's ``Unable connect to node with id %s`` several times a
    second) then says so once per window instead of burying everything else."""

    def __init__(self, window_s: float = 10.0) -> None:
        super().__init__()
        self.window_s = window_s
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        first, dropped = self._seen.get(key, (0.0, 0))
        if record.created - first < self.window_s:
            self._seen[key] = (first, dropped + 1)
            return False
        if dropped:
            record.repeats_dropped = dropped
        if len(self._seen) > 10_000:  # templates are few; this only bounds a pathological logger
            self._seen.clear()
        self._seen[key] = (record.created, 0)
        return True


def configure_logging(level: str = "INFO", stream: Any = None, secrets: Iterable[str] = ()) -> None:
    """Route the root logger to JSON lines on ``stream`` (stderr by default), through
    :class:`QuietRepeats` (a repeated warning once per 10 s) and :class:`RedactSecrets` (URL
    credentials and the values of ``secrets`` never appear)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(QuietRepeats())
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


def redact_handlers(secrets: Iterable[str] = (), logger: logging.Logger | None = None) -> None:
    """Add :class:`RedactSecrets` to every handler of ``logger`` (the root logger) that has none:
    for handlers set up elsewhere (``logging.basicConfig`` of a --debug run)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets(secrets))


def serve_metrics(port: int, host: str = "127.0.0.1") -> int | None:
    """Serve ``/metrics`` on ``host:port`` (port 0 = disabled). Returns the port served, if any.

    ``host`` is ``METRICS_HOST``: loopback by default, so nothing is reachable from another machine
    unless a deployment asks for it (a pod's ``0.0.0.0``)."""
    if port <= 0:
        return None
    start_http_server(port, addr=host)
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
