"""``streamforge`` — the command line of every StreamForge process.

Every error ends with one line on stderr, ``error: <what and why>``, never a traceback: exit status
2 for a user mistake (a bad date, an unknown interval or symbol, a malformed command or setting), 1
for what broke on the way (a service that does not answer, a broker that died, a failed step).
``streamforge --debug ...`` or ``LOG_LEVEL=DEBUG`` keeps the tracebacks (and every library's log).
:func:`entry` is the console script; ``main`` is the click group (what tests invoke).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import click
import orjson

from .intervals import INTERVALS
from .names import CANDLE_INTERVALS
from .protocol import ProtocolError, decode_command
from .settings import Settings, SettingsError


class BadSettings(click.ClickException):
    """A setting (environment variable) with a value that cannot be used: a usage error."""

    exit_code = 2


def _settings(**overrides: object) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except SettingsError as exc:
        raise BadSettings(f"settings: {exc}") from None


def _day(ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected a date YYYY-MM-DD, got {value!r}") from None


def _symbols(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    symbols = tuple(s.strip().upper() for s in value.split(",") if s.strip())
    bad = [s for s in symbols if not s.isalnum()]
    if not symbols or bad:
        raise click.BadParameter(f"expected comma-separated symbols like BTCUSDT,ETHUSDT, got {value!r}")
    return symbols


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so ``with Stack(...)`` stops the processes it started."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def _stop_group(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGINT to a child that leads its own process group, then SIGKILL to the group if needed."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # webserver, daemon and code servers left behind, if any
    except ProcessLookupError:
        pass


def _run_async(coro: object) -> object:
    try:
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)  # type: ignore[arg-type]


#: Set by ``--debug`` (or ``LOG_LEVEL=DEBUG``): tracebacks and library logs are shown.
_DEBUG = {"on": False}


def debugging() -> bool:
    """``--debug`` was given, or ``LOG_LEVEL`` is ``DEBUG``."""
    return _DEBUG["on"] or os.environ.get("LOG_LEVEL", "").strip().upper() == "DEBUG"


def _fail(line: str, code: int) -> NoReturn:
    click.echo(f"error: {' '.join(line.split())}", err=True)
    sys.exit(code)


def entry() -> None:
    """The ``streamforge`` console script: :data:`main` with every error as one line (see module doc)."""
    from .kafka import BrokerUnavailable
    from .preflight import PreflightError
    from .settings import SettingsError
    from .stack import StackError
    from .store import StoreError

    try:
        main.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        _fail("aborted", 130)
    except click.UsageError as exc:
        hint = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        _fail(exc.format_message() + hint, exc.exit_code)
    except click.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except (PreflightError, StackError, BrokerUnavailable, SettingsError, StoreError) as exc:
        if debugging():
            raise
        _fail(str(exc), getattr(exc, "exit_code", 2 if isinstance(exc, SettingsError) else 1))
    except Exception as exc:
        if debugging():
            raise
        _fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)", 1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and library logs (also: LOG_LEVEL=DEBUG).")
def main(debug: bool) -> None:
    """StreamForge: crypto market data from the exchange through Kafka into the store, run by Dagster."""
    _DEBUG["on"] = debug


@main.command()
@click.option("--symbols", callback=_symbols, help="Comma-separated symbols (default: STREAMFORGE_UNIVERSE).")
@click.option(
    "--interval",
    type=click.Choice(CANDLE_INTERVALS),
    default=None,
    help="Candle interval (default: STREAMFORGE_INTERVAL, 5m).",
)
@click.option("--start", callback=_day, help="First day, YYYY-MM-DD (default: 7 days before today).")
@click.option("--end", callback=_day, help="Last day, inclusive, YYYY-MM-DD (default: yesterday).")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help="Number of days ending at --end (default 7); not with --start.",
)
@click.option(
    "--source",
    type=click.Choice(["auto", "rest", "archive"]),
    default="auto",
    show_default=True,
    help="auto: closed days from the bulk archive, the last day(s) from REST; rest; archive (only).",
)
@click.option(
    "--market",
    type=click.Choice(["spot", "usdm"]),
    default="spot",
    show_default=True,
    help="spot, or usdm (USD-M futures: /fapi/v1 klines, their own topic and collection; no 1s).",
)
@click.option(
    "--no-analytics",
    is_flag=True,
    help="Candles only: skip the correlation graph and the GNN of the range.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def run(
    symbols: tuple[str, ...] | None,
    interval: str | None,
    start: date | None,
    end: date | None,
    days: int | None,
    source: str,
    market: str,
    no_analytics: bool,
    as_json: bool,
) -> None:
    """Load candles through Dagster on the local stack and report expected vs stored; then build the
    correlation graph of the range and train the GNN beside its baselines (unless --no-analytics)."""
    from .preflight import PreflightError, check_range
    from .queue_manager import LoadRequest
    from .report import print_summary
    from .runner import default_range, run_main_job

    settings = _settings()
    interval = interval or settings.interval
    if interval not in CANDLE_INTERVALS:
        choose = ", ".join(CANDLE_INTERVALS)
        raise BadSettings(f"settings: STREAMFORGE_INTERVAL: {interval!r} has no candles asset ({choose})")
    today = datetime.now(UTC).date()
    d_first, d_last = default_range(today)
    if start is not None and days is not None:
        raise click.UsageError("--start and --days both set the first day: give one of them")
    span = timedelta(days=days - 1) if days is not None else d_last - d_first
    end = end or d_last
    if start is None and (end - date.min).days <= span.days:
        raise click.UsageError(f"--days {days}: the range would begin before the year 1")
    first, last = start or end - span, end
    try:
        check_range(first, last, today, first_from=f"--days {days}" if start is None and days else "--start")
    except PreflightError as exc:
        raise click.UsageError(str(exc)) from None
    if market == "usdm" and interval == "1s":
        raise click.UsageError("--market usdm --interval 1s: 1s candles exist only on spot")
    request = LoadRequest(
        symbols=symbols or settings.universe,
        interval=interval,
        first=first,
        last=last,
        source=source,
        market=market,  # type: ignore[arg-type]
    )
    _exit_on_sigterm()
    _quiet_libraries()
    summary = run_main_job(settings, request, analytics=not no_analytics, debug=debugging())
    if as_json:
        click.echo(orjson.dumps(summary.to_json()).decode())
    else:
        print_summary(summary)
    if summary.error is not None:
        click.echo(f"error: {summary.error}", err=True)
    sys.exit(0 if summary.ok else 1)


def _quiet_libraries() -> None:
    """Unless debugging, only the command speaks: library logs (aiokafka's connection retries,
    urllib3's) would bury its one-line errors; with --debug every logger speaks at DEBUG."""
    import logging

    from .workers import redact_handlers, settings_secrets

    if debugging():
        logging.basicConfig(level=logging.DEBUG)
        redact_handlers(settings_secrets(_settings()))
    else:
        logging.getLogger().setLevel(logging.CRITICAL)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=3000, show_default=True, type=int)
def dev(host: str, port: int) -> None:
    """Start the local stack and the Dagster UI (dagster dev) on it; Ctrl-C stops everything."""
    from .runner import prepare_dagster_home
    from .stack import Stack

    settings = _settings()
    prepare_dagster_home(settings)
    with Stack(settings, streams=True) as stack:  # a stream worker for the live_streams job
        env = {**os.environ, **stack.settings.to_env()}
        click.echo(
            f"stack: {stack.settings.kafka_bootstrap_servers} exchange {stack.settings.exchange_url}",
            err=True,
        )
        cmd = [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-h",
            host,
            "-p",
            str(port),
            "-m",
            "streamforge_pipelines.definitions",
        ]
        _exit_on_sigterm()
        # dagster dev ignores SIGTERM and, started from a background job, SIGINT too: give it
        # SIGINT back, stop it with SIGINT, and kill its process group if it lingers.
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=_default_sigint)
        try:
            proc.wait()
        except (KeyboardInterrupt, SystemExit):
            pass
        finally:
            _stop_group(proc)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option("--seed", default=None, type=int, help="Market seed (default: SIMULATOR_SEED, 42).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Market structure (JSON/YAML): symbols, listings, clusters, lead-lags, downtime windows "
    "(default: SIMULATOR_CONFIG; its seed then wins over --seed).",
)
@click.option("--limits/--no-limits", default=False, show_default=True, help="Enforce Binance's rate limits.")
@click.option(
    "--weight-limit",
    default=6000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Spot REQUEST_WEIGHT per minute when --limits is on.",
)
@click.option(
    "--faults", "faults_path", type=click.Path(exists=True, dir_okay=False), help="Fault injection (JSON)."
)
def simulator(
    host: str,
    port: int,
    seed: int | None,
    config_path: str | None,
    limits: bool,
    weight_limit: int,
    faults_path: str | None,
) -> None:
    """Serve the Binance-compatible exchange simulator (REST, WebSocket, archive)."""
    import yaml

    from .simulator.config import check_file
    from .simulator.faults import FaultConfig
    from .simulator.limits import LimitsConfig
    from .simulator.server import serve

    setting = _settings().simulator_config if config_path is None else None
    try:  # the config is checked here, where the simulator starts (settings do not read the file)
        config = check_file(config_path or setting) if (config_path or setting) else None
    except ValueError as exc:
        if setting is not None:
            raise BadSettings(f"settings: SIMULATOR_CONFIG: {exc}") from None
        raise click.UsageError(f"simulator: {exc}") from None
    try:
        faults = FaultConfig.from_json(Path(faults_path)) if faults_path else None
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise click.UsageError(f"simulator: {exc}") from None
    serve(
        host,
        port,
        seed if seed is not None else _settings().simulator_seed,
        config,
        limits=LimitsConfig(request_weight_per_minute=weight_limit) if limits else None,
        faults=faults,
    )


@main.group()
def dummy() -> None:
    """dummy-service: Kafka ping, load generator, worker impersonation (each with /health, /metrics)."""


def _health_options(f: Callable[..., None]) -> Callable[..., None]:
    f = click.option(
        "--port", default=0, show_default=True, type=int, help="/health and /metrics port; 0 = free"
    )(f)
    return click.option("--host", default="127.0.0.1", show_default=True)(f)


@dummy.command("kafka-ping")
@click.option(
    "--count", default=10, show_default=True, type=click.IntRange(min=0), help="Round trips; 0 = no limit."
)
@click.option("--duration", type=click.FloatRange(min=0), help="Seconds to keep pinging.")
@click.option(
    "--interval", default=0.0, show_default=True, type=click.FloatRange(min=0), help="Seconds between pings."
)
@click.option(
    "--timeout", default=5.0, show_default=True, type=click.FloatRange(min=0), help="Failure threshold, s."
)
@click.option("--topic", help="Topic to ping through (default: KAFKA_TOPIC_CONTROL).")
@_health_options
def dummy_ping(
    count: int,
    duration: float | None,
    interval: float,
    timeout: float,
    topic: str | None,
    host: str,
    port: int,
) -> None:
    """Round trips through the broker; latency percentiles; exit 1 if one exceeds --timeout."""
    from .workers.dummy import ping

    sys.exit(
        ping.main(
            _settings(),
            count=count or None,
            duration_s=duration,
            interval_s=interval,
            timeout_s=timeout,
            topic=topic,
            host=host,
            port=port,
        )
    )


@dummy.command("load")
@click.option(
    "--rate", default=1000.0, show_default=True, type=click.FloatRange(min=0), help="msgs/s; 0 = unthrottled."
)
@click.option("--duration", default=10.0, show_default=True, type=click.FloatRange(min=0), help="Seconds.")
@click.option("--schema", type=click.Choice(["candle", "event", "raw"]), default="candle", show_default=True)
@click.option(
    "--size", default=200, show_default=True, type=click.IntRange(1, 1 << 20), help="Bytes (raw only)."
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many messages.")
@click.option("--topic", help="Target topic (default by schema).")
@_health_options
def dummy_load(
    rate: float,
    duration: float,
    schema: str,
    size: int,
    count: int | None,
    topic: str | None,
    host: str,
    port: int,
) -> None:
    """Produce messages of a schema at a paced rate; report the achieved rate."""
    from .workers.dummy import load

    sys.exit(
        load.main(
            _settings(),
            rate=rate,
            duration_s=duration,
            schema=schema,  # type: ignore[arg-type]
            size=size,
            count=count,
            topic=topic,
            host=host,
            port=port,
        )
    )


@dummy.command("impersonate")
@click.argument("behaviour", type=click.Choice(["progress", "finish", "error", "silent", "interrupt"]))
@click.option("--queue-id", help="Task id (default: a new wf-... id).")
@click.option("--symbol", default="BTCUSDT", show_default=True)
@click.option("--type", "task_type", help="Task type (default api_candles_<STREAMFORGE_INTERVAL>).")
@click.option("--worker", default="loader-api-candles", show_default=True, help="Component to pose as.")
@click.option("--records", default=1000, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--partitions", type=click.IntRange(min=1), help="Partitions to report (default KAFKA_DATA_PARTITIONS)."
)
@click.option("--steps", default=3, show_default=True, type=click.IntRange(min=0), help="`loading` events.")
@click.option("--step-s", default=0.5, show_default=True, type=click.FloatRange(min=0))
@click.option("--hold-s", default=0.0, show_default=True, type=click.FloatRange(min=0), help="Stay up after.")
@click.option("--connector-acks/--no-connector-acks", default=True, show_default=True)
@_health_options
def dummy_impersonate(behaviour: str, **options: object) -> None:
    """Emit queue-events telemetry as a named worker would: progress, finish, error, silent, interrupt."""
    from .workers.dummy import impersonate

    sys.exit(impersonate.main(_settings(), behaviour, **options))  # type: ignore[arg-type]


@main.group()
def worker() -> None:
    """Run a worker process (configured by environment variables)."""


@worker.command("connector")
def worker_connector() -> None:
    """arango-connector: consume the data topics into the store until SIGTERM."""
    from .workers import connector_main

    settings = _settings()
    _require_kafka(settings)
    connector_main(settings)


@worker.command("streams")
@click.option(
    "--target",
    "targets",
    multiple=True,
    type=click.Choice(["loader-ws-trades", "loader-ws-candles", "loader-ws-orderbook"]),
    help="Stream workers to be (repeatable); default all three.",
)
def worker_streams(targets: tuple[str, ...]) -> None:
    """loader-ws-*: run the live stream tasks started on queue-control until SIGTERM."""
    from .protocol import LOADER_WS_TARGETS
    from .workers import configure_logging, serve_metrics, serve_streams, settings_secrets

    settings = _settings()
    configure_logging(settings.log_level, secrets=settings_secrets(settings))
    _require_kafka(settings)
    serve_metrics(settings.metrics_port, settings.metrics_host)
    _run_async(serve_streams(settings, targets=targets or LOADER_WS_TARGETS))


@worker.command("loader")
@click.option(
    "--command", "command_json", help="Carry out this one queue-control command (JSON; '-' = stdin)."
)
@click.option("--symbol", help="Shortcut for a candle task: symbol.")
@click.option("--interval", type=click.Choice(INTERVALS), default="5m", show_default=True)
@click.option("--start", callback=_day, help="First day YYYY-MM-DD.")
@click.option("--end", callback=_day, help="Last day YYYY-MM-DD (inclusive).")
@click.option(
    "--market", type=click.Choice(["spot", "usdm"]), default="spot", show_default=True, help="With --symbol."
)
def worker_loader(
    command_json: str | None,
    symbol: str | None,
    interval: str,
    start: date | None,
    end: date | None,
    market: str,
) -> None:
    """loader-producer: one task (--command or --symbol/--start/--end), else serve queue-control."""
    from .protocol import LOADER_PRODUCER, format_time_range, make_queue_id
    from .workers import (
        WorkerError,
        configure_logging,
        run_task,
        serve_loader,
        serve_metrics,
        settings_secrets,
    )

    settings = _settings()
    configure_logging(settings.log_level, secrets=settings_secrets(settings))
    if command_json is None and symbol is None:
        _require_kafka(settings)
        serve_metrics(settings.metrics_port, settings.metrics_host)
        _run_async(serve_loader(settings, parallel=settings.loader_concurrency))
        return
    if command_json is not None:
        raw = _command_text("-") if command_json == "-" else command_json
    else:
        if start is None:
            raise click.UsageError("--start is required with --symbol")
        if market == "usdm" and interval == "1s":
            raise click.UsageError("--market usdm --interval 1s: 1s candles exist only on spot")
        task_type = f"api_candles_{interval}"
        raw = {
            "command": "start",
            "queue_id": make_queue_id((symbol or "")[:32], task_type, start),
            "target": LOADER_PRODUCER,
            "symbol": symbol,
            "type": task_type,
            "time_range": format_time_range(start, end or start),
            "market": market,
        }
    try:  # the loaders' own validator: what it accepts, the loader runs
        command = decode_command(raw)
    except ProtocolError as exc:
        raise BadCommand(str(exc)) from None
    bootstrap = _require_kafka(settings)
    serve_metrics(settings.metrics_port, settings.metrics_host)
    from .kafka import make_producer, stop_within, unless_broker_dies
    from .kafka import monitor as broker_monitor

    async def one() -> object:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)  # the loader reports `interrupted`
        health = broker_monitor(bootstrap, down_after_s=settings.kafka_unavailable_s)
        producer = make_producer(bootstrap)
        await producer.start()
        try:
            return await unless_broker_dies(run_task(command, settings, producer=producer), health)
        finally:
            await stop_within(producer.stop(), 0.5 if health.down else None)

    try:
        result = _run_async(one())
    except WorkerError as exc:
        raise click.ClickException(str(exc)) from None
    except asyncio.CancelledError:
        click.echo(f"interrupted: task {command.queue_id} stopped before the end", err=True)
        sys.exit(143)
    # One JSON object on stdout: the LoadResult (a dataclass; its partition counts have int keys).
    click.echo(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS, default=lambda o: o.__dict__).decode())


def _require_kafka(settings: Settings) -> str:
    """A worker's broker: set, and answering (else one line naming ``KAFKA_BOOTSTRAP_SERVERS``)."""
    from .preflight import PreflightError, check_kafka

    if not settings.kafka_bootstrap_servers:
        raise PreflightError("KAFKA_BOOTSTRAP_SERVERS is not set: a worker needs a broker", exit_code=2)
    check_kafka(settings.kafka_bootstrap_servers)
    return settings.kafka_bootstrap_servers


#: A command file larger than this is refused unread: a command is one small JSON object (and
#: Kafka's default message limit is 1 MB).
MAX_COMMAND_BYTES = 1 << 20


class BadCommand(click.ClickException):
    """A command that cannot be read or is not valid: a usage error, one line, exit status 2."""

    exit_code = 2


def _command_text(source: str) -> str:
    """The text of a command file (``-`` = stdin); :class:`BadCommand` naming why it cannot be read:
    missing, a directory, unreadable, too large, not UTF-8, empty."""
    where = "stdin" if source == "-" else repr(source if len(source) <= 200 else source[:200] + "…")
    try:
        if source == "-":
            data = sys.stdin.buffer.read(MAX_COMMAND_BYTES + 1)
        else:
            with open(source, "rb") as f:
                data = f.read(MAX_COMMAND_BYTES + 1)
    except OSError as exc:
        raise BadCommand(f"command file {where}: {exc.strerror or exc}") from None
    if len(data) > MAX_COMMAND_BYTES:
        raise BadCommand(f"command file {where}: over {MAX_COMMAND_BYTES} bytes, not one JSON command")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = f"byte {data[exc.start]:#04x} at offset {exc.start}"
        raise BadCommand(f"command file {where}: not UTF-8 text ({bad})") from None
    if not text.strip():
        raise BadCommand(f"command file {where}: empty; expected one JSON command")
    return text


@main.command("validate-command")
@click.argument("source", default="-")
def validate_command(source: str) -> None:
    """Check a queue-control command (a JSON file, or '-' for stdin) with the loaders' own validator.

    Prints the command as a loader reads it (exit 0): a loader can run it. Otherwise one line naming
    the field, the reason and a bounded excerpt of the value (exit 2), as the loader would refuse it.
    """
    try:
        command = decode_command(_command_text(source))
    except ProtocolError as exc:
        raise BadCommand(str(exc)) from None
    click.echo(command.encode().decode())


if __name__ == "__main__":
    entry()
