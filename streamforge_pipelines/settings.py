"""Settings of every StreamForge process, read from environment variables.

One object holds them all. Each worker and the Dagster resources build it with
:meth:`Settings.from_env`; nothing else in the code reads ``os.environ``. Switching between the
embedded stack and production is done here, by configuration only: an unset
``KAFKA_BOOTSTRAP_SERVERS`` means "start the embedded broker", an unset ``ARANGO_URL`` means "use the
SQLite store", an unset ``EXCHANGE_URL`` means "start the exchange simulator".

Secrets (``ARANGO_PASSWORD``, ``MINIO_SECRET_KEY``) are read from the environment and never logged:
:meth:`Settings.redacted` is what gets printed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

#: Environment variable -> (settings field, description). The README's settings table is this.
ENV_VARS: dict[str, tuple[str, str]] = {
    "STREAMFORGE_DATA_DIR": ("data_dir", "Directory for the SQLite store, objects and embedded state"),
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka_bootstrap_servers", "Kafka cluster; unset = start embedded Tansu"),
    "KAFKA_TOPIC_CONTROL": ("topic_control", "Command topic"),
    "KAFKA_TOPIC_EVENTS": ("topic_events", "Telemetry topic"),
    "KAFKA_TOPIC_CANDLES": ("topic_candles", "Candle data topic"),
    "KAFKA_TOPIC_CANDLES_USDM": ("topic_candles_usdm", "USD-M futures candle data topic"),
    "KAFKA_TOPIC_CHECKPOINTS": (
        "topic_checkpoints",
        "Loader checkpoint topic (resume after a crash; compacted, key = queue_id)",
    ),
    "KAFKA_TOPIC_TRADES": ("topic_trades", "Trades data topic (aggTrades and trades)"),
    "KAFKA_TOPIC_BOOK": ("topic_book", "Order-book snapshot topic (live streams)"),
    "KAFKA_TOPIC_BOOK_DIFFS": ("topic_book_diffs", "Applied order-book diff topic (LIVE_BOOK_DIFFS)"),
    "KAFKA_DLQ_SUFFIX": ("dlq_suffix", "Suffix of a data topic's dead-letter topic"),
    "KAFKA_DATA_PARTITIONS": ("data_partitions", "Partitions of data topics created by StreamForge"),
    "KAFKA_CONSUMER_GROUP": ("consumer_group", "Consumer group of the arango-connector"),
    "KAFKA_LOADER_GROUP": (
        "loader_group",
        "Consumer group of the standalone loaders on queue-control (one per deployment sharing a broker)",
    ),
    "KAFKA_UNAVAILABLE_S": (
        "kafka_unavailable_s",
        "Seconds the broker may fail every probe before a run or worker stops with one line naming it",
    ),
    "ARANGO_URL": ("arango_url", "ArangoDB URL; unset = SQLite store under the data dir"),
    "ARANGO_DB": ("arango_db", "ArangoDB database name"),
    "ARANGO_USERNAME": ("arango_username", "ArangoDB user"),
    "ARANGO_PASSWORD": ("arango_password", "ArangoDB password (secret)"),
    "EXCHANGE_URL": ("exchange_url", "Binance-compatible REST base URL; unset = start the simulator"),
    "EXCHANGE_FUTURES_URL": (
        "exchange_futures_url",
        "USD-M futures REST base URL (Binance: https://fapi.binance.com); unset = EXCHANGE_URL",
    ),
    "EXCHANGE_ARCHIVE_URL": (
        "exchange_archive_url",
        "Base URL of the bulk kline archive (data.binance.vision layout); unset = EXCHANGE_URL",
    ),
    "EXCHANGE_WS_URL": (
        "exchange_ws_url",
        "Spot WebSocket streams base URL (Binance: wss://stream.binance.com:9443); "
        "unset = EXCHANGE_URL as ws:// (the simulator)",
    ),
    "EXCHANGE_FUTURES_WS_URL": (
        "exchange_futures_ws_url",
        "USD-M WebSocket streams base URL (Binance: wss://fstream.binance.com; /public and /market "
        "are appended); unset = EXCHANGE_URL as ws:// + /fapi-ws (the simulator)",
    ),
    "LIVE_HEARTBEAT_S": ("live_heartbeat_s", "Seconds between a stream task's heartbeats on queue-events"),
    "LIVE_SILENCE_S": (
        "live_silence_s",
        "Seconds without any frame after which a stream connection is dropped and opened again",
    ),
    "LIVE_STREAM_SILENCE_S": (
        "live_stream_silence_s",
        "Seconds a subscribed stream may deliver nothing before it is reported silent",
    ),
    "LIVE_ROTATE_AFTER_S": (
        "live_rotate_after_s",
        "Age at which a stream connection is replaced by an overlapping successor (Binance: 24 h)",
    ),
    "LIVE_BOOK_LEVELS": ("live_book_levels", "Levels per side of a book snapshot on the book topic"),
    "LIVE_BOOK_EVERY_MS": ("live_book_every_ms", "Milliseconds between a symbol's book snapshots"),
    "LIVE_BOOK_DIFFS": (
        "live_book_diffs",
        "Also produce the diff events each live book applied, in order, to KAFKA_TOPIC_BOOK_DIFFS",
    ),
    "LIVE_BOOK_MAX_BUFFER": (
        "live_book_max_buffer",
        "Diff events a book buffers while it waits for a REST snapshot; more is a resync (buffer_overflow)",
    ),
    "LIVE_FLUSH_MS": (
        "live_flush_ms",
        "Milliseconds a live record waits for others to share its page; 0 = produced as soon as the "
        "worker is free (what arrived meanwhile shares the page)",
    ),
    "LIVE_DEAD_AFTER_BEATS": (
        "live_dead_after_beats",
        "Heartbeats a wanted stream may miss before the streams sensor counts it dead and starts it again",
    ),
    "LIVE_RESTART_EVERY_S": (
        "live_restart_every_s",
        "Least seconds between two starts of one stream sent by the streams sensor",
    ),
    "ARCHIVE_MAX_MEMBER_BYTES": (
        "archive_max_member_bytes",
        "Largest archive file and zip member (uncompressed bytes) a loader reads; a larger one fails",
    ),
    "SIMULATOR_SEED": ("simulator_seed", "Seed of the exchange simulator's market"),
    "SIMULATOR_CONFIG": (
        "simulator_config",
        "Market structure of the started simulator (YAML/JSON: seed, clusters, lead-lags, downtime); "
        "examples/simulator/planted.yaml plants what the GNN should find",
    ),
    "STREAMFORGE_UNIVERSE": ("universe", "Comma-separated default symbol universe"),
    "STREAMFORGE_INTERVAL": ("interval", "Default candle interval"),
    "STREAMFORGE_DAILY_CRON": (
        "daily_cron",
        "When (cron, UTC) the daily_candles_5m schedule loads yesterday; read where the definitions load",
    ),
    "METRICS_PORT": ("metrics_port", "Port of a worker's /metrics endpoint; 0 = disabled"),
    "METRICS_HOST": (
        "metrics_host",
        "Address a worker's /metrics endpoint binds to; loopback only unless set (a pod: 0.0.0.0)",
    ),
    "LOG_LEVEL": ("log_level", "Log level of the JSON logs"),
    "LOADER_CONCURRENCY": ("loader_concurrency", "Parallel kline page requests per loader"),
    "LOADER_SESSION_TIMEOUT_S": (
        "loader_session_timeout_s",
        "Seconds a standalone loader that died keeps its commands from the others (its consumer-group "
        "session); a loader joining waits about half of it",
    ),
    "EXCHANGE_WAF_PAUSE_S": (
        "exchange_waf_pause_s",
        "Seconds every request pauses after an HTTP 403 without Retry-After (the exchange's WAF)",
    ),
    "EXCHANGE_WEIGHT_LIMIT": (
        "exchange_weight_limit",
        "Exchange REQUEST_WEIGHT limit per minute per IP (Binance spot: 6000)",
    ),
    "EXCHANGE_FUTURES_WEIGHT_LIMIT": (
        "exchange_futures_weight_limit",
        "USD-M futures REQUEST_WEIGHT limit per minute per IP, counted apart from spot (Binance: 2400)",
    ),
    "EXCHANGE_WEIGHT_SHARE": (
        "exchange_weight_share",
        "Share (0-1] of that limit this deployment's loaders may use; a command's weight_share overrides",
    ),
    "EXCHANGE_LOAD_SLOTS": (
        "exchange_load_slots",
        "Load steps that may run at once under one exchange budget (the Dagster pool `binance` of the "
        "instance's dagster.yaml); further runs wait in the queue",
    ),
    "LOAD_MAX_STEPS": (
        "load_max_steps",
        "Most steps one load run splits into (symbol groups loading in parallel, one process or pod each)",
    ),
    "LOAD_STEP_SYMBOL_DAYS": (
        "load_step_symbol_days",
        "Symbol-days of a load run per step: a run of fewer loads in one step",
    ),
    "TASK_TIMEOUT_S": (
        "task_timeout_s",
        "Seconds an asset step waits for its tasks to be stored; 0 = no limit",
    ),
    "TASK_STALL_S": ("task_stall_s", "Seconds without telemetry after which a task counts as stalled"),
    "MINIO_ENDPOINT": (
        "minio_endpoint",
        "MinIO/S3 endpoint of the model store (host:port or http(s)://host:port); unset = local directory",
    ),
    "MINIO_ACCESS_KEY": ("minio_access_key", "MinIO access key (secret: environment only, never logged)"),
    "MINIO_SECRET_KEY": ("minio_secret_key", "MinIO secret key (secret: environment only, never logged)"),
    "MINIO_BUCKET": ("minio_bucket", "Bucket of the model store (created when missing)"),
    "MINIO_SECURE": ("minio_secure", "Use HTTPS for MINIO_ENDPOINT (an https:// endpoint implies it)"),
}

DEFAULT_UNIVERSE = (
    "BTCUSDT",
    "ETHUSDT",
    "BNBUSDT",
    "SOLUSDT",
    "XRPUSDT",
    "ADAUSDT",
    "DOGEUSDT",
    "AVAXUSDT",
    "DOTUSDT",
    "LINKUSDT",
)


def redact_url(url: str) -> str:
    """A URL safe to print: ``http://user:secret@host:8529`` -> ``http://user:***@host:8529``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    creds, _, tail = rest.partition("/")[0].rpartition("@")
    path = rest[len(creds) + 1 + len(tail) :]
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{tail}{path}"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


class Settings(BaseModel):
    """All settings, with the embedded defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Path("var")
    kafka_bootstrap_servers: str | None = None
    topic_control: str = "queue-control"
    topic_events: str = "queue-events"
    topic_candles: str = "sf.candles.v1"
    topic_candles_usdm: str = "sf.candles-usdm.v1"
    topic_checkpoints: str = "sf.checkpoints.v1"
    topic_trades: str = "sf.trades.v1"
    topic_book: str = "sf.book.v1"
    topic_book_diffs: str = "sf.book-diffs.v1"
    dlq_suffix: str = ".dlq"
    data_partitions: int = Field(default=4, ge=1, le=1024)
    consumer_group: str = "arango-connector"
    loader_group: str = Field(default="loader-producer", min_length=1)
    kafka_unavailable_s: float = Field(default=5.0, gt=0)
    arango_url: str | None = None
    arango_db: str = "streamforge"
    arango_username: str | None = None
    arango_password: str | None = Field(default=None, repr=False)
    exchange_url: str | None = None
    exchange_archive_url: str | None = None
    exchange_futures_url: str | None = None
    exchange_ws_url: str | None = None
    exchange_futures_ws_url: str | None = None
    live_heartbeat_s: float = Field(default=5.0, gt=0)
    live_silence_s: float = Field(default=30.0, gt=0)
    live_stream_silence_s: float = Field(default=120.0, gt=0)
    live_rotate_after_s: float = Field(default=84_600.0, gt=0)
    live_book_levels: int = Field(default=20, ge=1, le=5000)
    live_book_every_ms: int = Field(default=1000, ge=1)
    live_book_diffs: bool = False
    live_book_max_buffer: int = Field(default=1000, ge=1)
    live_flush_ms: int = Field(default=0, ge=0)
    live_dead_after_beats: float = Field(default=3.0, gt=1)
    live_restart_every_s: float = Field(default=60.0, ge=0)
    archive_max_member_bytes: int = Field(default=4 * 1024**3, ge=1)
    simulator_seed: int = 42
    simulator_config: Path | None = None
    universe: tuple[str, ...] = DEFAULT_UNIVERSE
    interval: str = "5m"
    daily_cron: str = Field(default="30 0 * * *", pattern=r"^\S+( \S+){4}$")
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = Field(default="127.0.0.1", min_length=1, max_length=255)
    log_level: str = "INFO"
    loader_concurrency: int = Field(default=4, ge=1, le=64)
    loader_session_timeout_s: float = Field(default=10.0, ge=1, le=300)
    exchange_weight_limit: int = Field(default=6000, ge=1)
    exchange_waf_pause_s: float = Field(default=10.0, ge=0)
    exchange_futures_weight_limit: int = Field(default=2400, ge=1)
    exchange_weight_share: float = Field(default=1.0, gt=0, le=1)
    exchange_load_slots: int = Field(default=2, ge=1, le=64)
    load_max_steps: int = Field(default=4, ge=1, le=256)
    load_step_symbol_days: int = Field(default=90, ge=1)
    task_timeout_s: float = Field(default=0.0, ge=0)
    task_stall_s: float = Field(default=120.0, gt=0)
    minio_endpoint: str | None = None
    minio_access_key: str | None = Field(default=None, repr=False)
    minio_secret_key: str | None = Field(default=None, repr=False)
    minio_bucket: str = Field(default="streamforge-models", pattern=r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
    minio_secure: bool = False

    @field_validator("universe", mode="before")
    @classmethod
    def _split_universe(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [s.strip().upper() for s in v.split(",") if s.strip()]
        return v

    @field_validator(
        "kafka_bootstrap_servers",
        "arango_url",
        "exchange_url",
        "exchange_archive_url",
        "exchange_futures_url",
        "exchange_ws_url",
        "exchange_futures_ws_url",
        "minio_endpoint",
        "simulator_config",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, v: Any) -> Any:
        """An empty value is unset. ``SIMULATOR_CONFIG``'s file is read where the simulator starts
        (:func:`~streamforge_pipelines.preflight.check_simulator_config`, ``streamforge simulator``),
        not here: settings are the bottom layer and import nothing above them."""
        return None if isinstance(v, str) and not v.strip() else v

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default: ``os.environ``) plus explicit overrides."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {
            field: source[var] for var, (field, _) in ENV_VARS.items() if source.get(var, "") != ""
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except ValidationError as exc:
            raise SettingsError(_one_line(exc)) from None

    # ---- derived values -------------------------------------------------------------------------

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "streamforge.db"

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    @property
    def models_dir(self) -> Path:
        """The local model store's directory (used when ``MINIO_ENDPOINT`` is unset)."""
        return self.data_dir / "models"

    @property
    def archive_url(self) -> str | None:
        """The bulk archive: ``EXCHANGE_ARCHIVE_URL``, else the exchange (the simulator serves /data)."""
        return self.exchange_archive_url or self.exchange_url

    def rest_url(self, market: str = "spot") -> str | None:
        """A market's REST base URL: ``EXCHANGE_FUTURES_URL`` for usdm when set (Binance serves
        ``/fapi`` on its own host), else ``EXCHANGE_URL`` (the simulator serves both)."""
        if market == "usdm":
            return self.exchange_futures_url or self.exchange_url
        return self.exchange_url

    def ws_url(self, market: str = "spot") -> str | None:
        """A market's WebSocket streams base URL: ``EXCHANGE_WS_URL`` / ``EXCHANGE_FUTURES_WS_URL``
        when set, else the REST URL as ``ws://`` (``wss://``), under ``/fapi-ws`` for usdm: where the
        simulator serves its streams."""
        explicit = self.exchange_futures_ws_url if market == "usdm" else self.exchange_ws_url
        if explicit:
            return explicit.rstrip("/")
        rest = self.exchange_url
        if rest is None:
            return None
        base = "ws" + rest.rstrip("/").removeprefix("http")
        return f"{base}/fapi-ws" if market == "usdm" else base

    def candle_topic(self, market: str = "spot") -> str:
        """The data topic of a market's candles: spot and USD-M candles of a symbol never mix."""
        return self.topic_candles_usdm if market == "usdm" else self.topic_candles

    def weight_limit(self, market: str = "spot") -> int:
        """The exchange's per-IP weight limit of a market (Binance counts spot and USD-M apart)."""
        return self.exchange_futures_weight_limit if market == "usdm" else self.exchange_weight_limit

    def dlq_topic(self, data_topic: str) -> str:
        return f"{data_topic}{self.dlq_suffix}"

    def topics(self) -> dict[str, int]:
        """Topics StreamForge creates on an embedded broker: name -> partitions."""
        return {
            self.topic_control: 1,
            self.topic_events: 1,
            self.topic_candles: self.data_partitions,
            self.dlq_topic(self.topic_candles): 1,
            self.topic_candles_usdm: self.data_partitions,
            self.dlq_topic(self.topic_candles_usdm): 1,
            self.topic_trades: self.data_partitions,
            self.dlq_topic(self.topic_trades): 1,
            self.topic_book: self.data_partitions,
            self.dlq_topic(self.topic_book): 1,
            self.topic_book_diffs: self.data_partitions,
            self.dlq_topic(self.topic_book_diffs): 1,
            self.topic_checkpoints: 1,
        }

    def topic_configs(self) -> dict[str, dict[str, str]]:
        """Topic configs of the topics of :meth:`topics` that need any (where configs are set)."""
        return {self.topic_checkpoints: {"cleanup.policy": "compact"}}

    def to_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a child process."""
        out: dict[str, str] = {}
        for var, (field, _) in ENV_VARS.items():
            value = getattr(self, field)
            if value is None:
                continue
            out[var] = ",".join(value) if isinstance(value, tuple) else str(value)
        return out

    def redacted(self) -> dict[str, Any]:
        """Settings safe to log: secrets replaced by ``***``."""
        data = self.model_dump(mode="json")
        for secret in ("arango_password", "minio_access_key", "minio_secret_key"):
            if data.get(secret):
                data[secret] = "***"
        return data


def _one_line(exc: ValidationError) -> str:
    field_to_var = {field: var for var, (field, _) in ENV_VARS.items()}
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        msg = " ".join(str(err["msg"]).removeprefix("Value error, ").split())
        parts.append(f"{field_to_var.get(field, field)}: {msg}")
    return "; ".join(parts)
