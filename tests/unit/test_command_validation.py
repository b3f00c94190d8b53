"""One validator of commands: what it refuses, a loader would refuse; what it accepts, a loader runs.

:class:`~streamforge_pipelines.protocol.Command` is what ``streamforge validate-command``, the
loader-producer and the queue-manager all check commands with. The tables below are the contract:

* every bad command is refused with one bounded line that starts with the field it is about
  (``command.<field>: <reason>, got <excerpt>``), decoded or built in code, and by
  ``validate-command`` with exit status 2;
* the rules that mirror a loader's own refusals are shown to be the loader's: the same content,
  slipped past the validator (``model_construct``), is refused by the real loader;
* every good command is accepted and then carried out by the real loader (``dispatcher.run_task``, as the
  loader-producer does) against the exchange simulator and the session broker, with the number of
  candles the interval arithmetic says (counted by hand below, not by the code under test).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from streamforge_pipelines.cli import main
from streamforge_pipelines.intervals import DAY_MS, FIRST_DAY, HOUR_MS, MINUTE_MS, day_start_ms
from streamforge_pipelines.kafka import make_producer
from streamforge_pipelines.protocol import Command, ProtocolError, decode_command, excerpt
from streamforge_pipelines.simulator.server import SimulatorServer
from streamforge_pipelines.workers.dispatcher import loader_for, run_task
from streamforge_pipelines.workers.errors import TaskInvalid
from streamforge_pipelines.workers.loader_producer import refused_start

DAY = date(2024, 8, 1)
D0 = day_start_ms(DAY)
#: A queue-manager command, as ``build_commands`` writes it (minus the optional fields).
BASE: dict[str, Any] = {
    "command": "start",
    "queue_id": "wf-btcusdt-api_candles_5m-20240801-abc123",
    "target": "loader-producer",
    "symbol": "BTCUSDT",
    "type": "api_candles_5m",
    "time_range": "2024-08-01:2024-08-01",
}
TRADES = {**BASE, "type": "api_agg_trades", "queue_id": "wf-btcusdt-api_agg_trades-20240801-abc123"}
#: The longest error line any refusal may make (a 1 MB field must not come back as a 1 MB line).
MAX_LINE = 400
BIG = 1_000_000


def _in_days(n: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=n)).isoformat()


@dataclass(frozen=True)
class Bad:
    name: str
    command: dict[str, Any]
    #: The line starts ``command.<field>``.
    field: str
    words: tuple[str, ...] = ()


BAD: list[Bad] = [
    Bad(
        "interval that is no interval",
        {**BASE, "type": "api_candles_7m"},
        "type",
        ("no loader", "'api_candles_7m'"),
    ),
    Bad("unknown task type", {**BASE, "type": "api_ticks"}, "type", ("no loader",)),
    Bad("year 1 to 9999", {**BASE, "time_range": "0001-01-01:9999-12-31"}, "time_range", (FIRST_DAY,)),
    Bad(
        "the day before Binance", {**BASE, "time_range": "2017-07-13:2017-07-13"}, "time_range", (FIRST_DAY,)
    ),
    Bad(
        "ends after today",
        {**BASE, "time_range": f"2024-08-01:{_in_days(2)}"},
        "time_range",
        ("after today",),
    ),
    Bad("inverted days", {**BASE, "time_range": "2024-08-02:2024-08-01"}, "time_range", ("end day before",)),
    Bad(
        "no such day", {**BASE, "time_range": "2024-02-30:2024-03-01"}, "time_range", ("day is out of range",)
    ),
    Bad("not a range", {**BASE, "time_range": "2024"}, "time_range", ("YYYY-MM-DD:YYYY-MM-DD", "got '2024'")),
    Bad("inverted range", {**BASE, "ranges": [[D0 + HOUR_MS, D0]]}, "ranges[0]", ("end after it starts",)),
    Bad("empty range", {**BASE, "ranges": [[D0, D0]]}, "ranges[0]", ("end after it starts",)),
    Bad(
        "overlapping ranges",
        {**BASE, "ranges": [[D0, D0 + 2 * HOUR_MS], [D0 + HOUR_MS, D0 + 3 * HOUR_MS]]},
        "ranges[1]",
        ("sorted", "overlap"),
    ),
    Bad(
        "unsorted ranges",
        {**BASE, "ranges": [[D0 + 2 * HOUR_MS, D0 + 3 * HOUR_MS], [D0, D0 + HOUR_MS]]},
        "ranges[1]",
        ("sorted",),
    ),
    Bad(
        "range before the days",
        {**BASE, "ranges": [[D0 - HOUR_MS, D0]]},
        "ranges[0]",
        ("outside the time_range",),
    ),
    Bad("range after the days", {**BASE, "ranges": [[D0, D0 + DAY_MS + 1]]}, "ranges[0]", ("outside",)),
    Bad("no ranges", {**BASE, "ranges": []}, "ranges", ("at least one",)),
    Bad(
        "ranges of a trades task", {**TRADES, "ranges": [[D0, D0 + HOUR_MS]]}, "ranges", ("only api_candles",)
    ),
    Bad("archive repair", {**BASE, "source": "archive", "ranges": [[D0, D0 + HOUR_MS]]}, "ranges", ("REST",)),
    Bad("fractional range", {**BASE, "ranges": [[D0 + 0.5, D0 + HOUR_MS]]}, "ranges[0][0]", ("integer",)),
    Bad("id_ranges of a candle task", {**BASE, "id_ranges": [[1, 5]]}, "id_ranges", ("api_agg_trades",)),
    Bad("inverted id range", {**TRADES, "id_ranges": [[9, 3]]}, "id_ranges[0]", ("end after it starts",)),
    Bad("negative ids", {**TRADES, "id_ranges": [[-5, 3]]}, "id_ranges[0]", ("outside trade ids",)),
    Bad("overlapping id ranges", {**TRADES, "id_ranges": [[1, 9], [5, 12]]}, "id_ranges[1]", ("overlap",)),
    Bad(
        "timestamp that is no time",
        {**BASE, "timestamp": "yesterday"},
        "timestamp",
        ("ISO-8601", "'yesterday'"),
    ),
    Bad("timestamp in milliseconds", {**BASE, "timestamp": 1722470400000}, "timestamp", ("milliseconds",)),
    Bad("timestamp true", {**BASE, "timestamp": True}, "timestamp", ("epoch seconds",)),
    Bad("misspelt field", {**BASE, "sybmol": "ETHUSDT"}, "sybmol", ("unknown field", "'ETHUSDT'")),
    Bad("1 MB queue_id", {**BASE, "queue_id": "q" * BIG}, "queue_id", ("at most 200", f"({BIG} chars)")),
    Bad("1 MB symbol", {**BASE, "symbol": "B" * BIG}, "symbol", ("exchange symbol", f"({BIG} chars)")),
    Bad("1 MB time_range", {**BASE, "time_range": "2" * BIG}, "time_range", (f"({BIG} chars)",)),
    Bad("1 MB field name", {**BASE, "x" * BIG: 1}, "xxx", ("unknown field",)),
    Bad("1 MB topic", {**BASE, "kafka_topic": "t" * BIG}, "kafka_topic", ("Kafka topic name",)),
    Bad("symbol with a slash", {**BASE, "symbol": "btc/usdt"}, "symbol", ("exchange symbol",)),
    Bad("USD-M 1s", {**BASE, "type": "api_candles_1s", "market": "usdm"}, "market", ("no 1s klines",)),
    Bad("USD-M trades", {**TRADES, "market": "usdm"}, "market", ("spot trades only",)),
    Bad(
        "archive 1w",
        {**BASE, "type": "api_candles_1w", "source": "archive"},
        "source",
        ("no daily 1w files",),
    ),
    Bad("unknown source", {**BASE, "source": "ftp"}, "source", ("'auto', 'rest' or 'archive'",)),
    Bad("topic name with a space", {**BASE, "kafka_topic": "my topic"}, "kafka_topic", ("Kafka topic name",)),
    Bad("no weight", {**BASE, "weight_share": 0}, "weight_share", ("greater than 0",)),
    Bad("start without a symbol", {k: v for k, v in BASE.items() if k != "symbol"}, "symbol", ("required",)),
    Bad(
        "start without days",
        {k: v for k, v in BASE.items() if k != "time_range"},
        "time_range",
        ("required",),
    ),
    Bad("start without a type", {k: v for k, v in BASE.items() if k != "type"}, "type", ("required",)),
    Bad(
        "no target",
        {k: v for k, v in BASE.items() if k != "target"},
        "target",
        ("required field is missing",),
    ),
    Bad("from a newer StreamForge", {**BASE, "schema_version": 99}, "schema_version", ("newer",)),
    Bad("unknown command", {**BASE, "command": "go"}, "command", ("'start', 'stop' or 'ping'",)),
]


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_a_bad_command_is_refused_in_one_bounded_line_naming_the_field(case: Bad) -> None:
    with pytest.raises(ProtocolError) as decoded:
        decode_command(orjson.dumps(case.command))
    line = str(decoded.value)
    assert "\n" not in line and len(line) <= MAX_LINE, line[:MAX_LINE]
    assert line.startswith(f"command.{case.field}"), line
    for word in case.words:
        assert word in line, line
    # built in code (the queue-manager, the trades ledger): the same line
    with pytest.raises(ProtocolError) as built:
        Command(**case.command)
    assert str(built.value) == line


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_validate_command_exits_2_with_the_one_line(case: Bad, tmp_path: Path) -> None:
    path = tmp_path / "command.json"
    path.write_bytes(orjson.dumps(case.command))
    out = CliRunner().invoke(main, ["validate-command", str(path)])
    assert out.exit_code == 2, out.output
    lines = out.output.splitlines()
    assert len(lines) == 1 and f"command.{case.field}" in lines[0], out.output[:MAX_LINE]
    assert len(lines[0]) <= MAX_LINE + len("Error: ")


def test_excerpt_is_bounded_and_says_how_long_the_value_was() -> None:
    assert excerpt("abc") == "'abc'"
    cut = excerpt("x" * 1000)
    assert cut == "'" + "x" * 59 + "… (1000 chars)"
    assert len(excerpt(list(range(10_000)))) < 100


# ---- the validator's rules are the loaders' ------------------------------------------------------


@dataclass(frozen=True)
class LoaderRefusal:
    name: str
    command: dict[str, Any]
    #: What the loader's TaskInvalid says.
    match: str


#: Commands the validator refuses whose content a loader refuses too (slipped past the validator).
LOADER_REFUSALS = [
    LoaderRefusal("USD-M 1s", {**BASE, "type": "api_candles_1s", "market": "usdm"}, r"command\.market"),
    LoaderRefusal(
        "archive 1w", {**BASE, "type": "api_candles_1w", "source": "archive"}, r"no daily 1w files"
    ),
    LoaderRefusal("inverted range", {**BASE, "ranges": [(D0 + HOUR_MS, D0)]}, r"command\.ranges"),
    LoaderRefusal("USD-M trades", {**TRADES, "market": "usdm"}, r"spot trades only"),
    LoaderRefusal("inverted id range", {**TRADES, "id_ranges": [(9, 3)]}, r"command\.id_ranges"),
    LoaderRefusal("no symbol", {**BASE, "symbol": None}, r"command\.symbol"),
]


@pytest.mark.parametrize("case", LOADER_REFUSALS, ids=[c.name for c in LOADER_REFUSALS])
def test_what_the_validator_refuses_the_loader_refuses_too(case: LoaderRefusal, make_settings) -> None:
    with pytest.raises(ProtocolError):
        decode_command(orjson.dumps(case.command))
    command = Command.model_construct(**{**case.command, "queue_id": f"refused-{uuid.uuid4().hex[:6]}"})
    settings = make_settings(partitions=1, exchange_url="http://127.0.0.1:9")  # asked nothing

    async def run() -> None:
        producer = make_producer(settings.kafka_bootstrap_servers or "")
        await producer.start()
        try:
            await run_task(command, settings, producer=producer)
        finally:
            await producer.stop()

    with pytest.raises(TaskInvalid, match=case.match):
        asyncio.run(run())


def test_an_unknown_type_slipped_past_the_validator_has_no_loader() -> None:
    with pytest.raises(TaskInvalid, match="no loader for 'api_ticks'"):
        loader_for(Command.model_construct(**{**BASE, "type": "api_ticks"}).type)


def test_a_refused_start_command_is_reported_to_its_task_when_it_names_one() -> None:
    assert refused_start(orjson.dumps({**BASE, "type": "api_candles_7m"})) == (
        BASE["queue_id"],
        "BTCUSDT",
        None,
    )
    assert refused_start(orjson.dumps({**BASE, "target": "someone-else"})) is None
    assert refused_start(orjson.dumps({**BASE, "queue_id": "q" * 201})) is None
    assert refused_start(b"\xff not json") is None


# ---- what the validator accepts, a loader runs -----------------------------------------------------


@dataclass(frozen=True)
class Good:
    name: str
    command: dict[str, Any]
    #: Records the loader must produce (hand-counted), None = only that it runs to the end.
    records: int | None
    settings: dict[str, Any] = field(default_factory=dict)


def _candles(interval: str, first: str, last: str, **extra: Any) -> dict[str, Any]:
    return {**BASE, "type": f"api_candles_{interval}", "time_range": f"{first}:{last}", **extra}


def _trades(kind: str, **extra: Any) -> dict[str, Any]:
    return {**TRADES, "type": kind, **extra}


GOOD: list[Good] = [
    Good("1h from REST, one day", _candles("1h", "2024-06-03", "2024-06-03", source="rest"), 24),
    Good("1d, auto: the archive", _candles("1d", "2024-06-03", "2024-06-04", source="auto"), 2),
    # 2024-01-01 is a Monday: two whole weeks; no daily 1w archive files, so auto reads REST
    Good("1w, auto", _candles("1w", "2024-01-01", "2024-01-14", source="auto"), 2),
    Good("1M, a month", _candles("1M", "2024-02-01", "2024-02-29", source="rest"), 1),
    Good(
        "USD-M 5m from the archive",
        _candles("5m", "2024-06-03", "2024-06-03", source="archive", market="usdm"),
        288,
    ),
    Good(
        "repair: two ranges (12 + 6 five-minute candles)",
        _candles(
            "5m",
            "2024-08-01",
            "2024-08-01",
            source="rest",
            ranges=[[D0, D0 + HOUR_MS], [D0 + 2 * HOUR_MS, D0 + 2 * HOUR_MS + 30 * MINUTE_MS]],
        ),
        18,
    ),
    Good(
        "the first day of Binance (before the simulator's BTCUSDT)", _candles("1d", FIRST_DAY, FIRST_DAY), 0
    ),
    # today is allowed; its 1d candle has not closed, so there is nothing to load yet
    Good("today", _candles("1d", _in_days(0), _in_days(0), source="rest"), 0),
    Good(
        "every optional field",
        _candles(
            "15m",
            "2024-06-03",
            "2024-06-03",
            source="rest",
            market="spot",
            collection_name="candles",
            telemetry_id="loader-producer__abc123",
            image="registry.local/streamforge/loader-producer:latest",
            timestamp="2024-06-04T00:00:00Z",
            run_id="0b0e6b0c-4e0a-4b1e-9a57-9a7f3f1d2c3b",
            partition_key="2024-06-03",
            weight_share=0.5,
            schema_version=1,
        ),
        96,
    ),
    Good(
        "aggTrades repair of ids",
        _trades("api_agg_trades", source="rest", id_ranges=[[0, 50], [60, 70]]),
        None,
    ),
    Good("trades repair of ids", _trades("api_trades", id_ranges=[[0, 10]]), None),
]


@pytest.mark.parametrize("case", GOOD, ids=[c.name for c in GOOD])
def test_what_the_validator_accepts_a_loader_runs(case: Good, make_settings) -> None:
    command = decode_command(orjson.dumps(case.command))
    assert decode_command(command.encode()) == command
    queue_id = f"{case.command['queue_id']}-{uuid.uuid4().hex[:6]}"
    command = decode_command({**case.command, "queue_id": queue_id})

    async def run():
        async with SimulatorServer(seed=42) as sim:
            settings = make_settings(partitions=1, exchange_url=sim.base_url, **case.settings)
            producer = make_producer(settings.kafka_bootstrap_servers or "")
            await producer.start()
            try:
                return await run_task(command, settings, producer=producer)
            finally:
                await producer.stop()

    result = asyncio.run(run())
    assert result.queue_id == queue_id
    if case.records is not None:
        assert result.records == case.records


def test_stop_and_ping_commands_stay_valid() -> None:
    ping = {"command": "ping", "queue_id": "ping-abc123-1", "target": "dummy-service", "timestamp": 1.7e9}
    assert decode_command(ping).command == "ping"
    assert decode_command({"command": "stop", "queue_id": "q", "target": "loader-producer"}).command == "stop"


def test_every_command_streamforge_builds_is_valid(make_settings) -> None:
    """Nothing in StreamForge sends a field the validator refuses (extra fields are refused now)."""
    from streamforge_pipelines.queue_manager import (
        LoadRequest,
        TradesRequest,
        build_commands,
        range_repairs,
    )
    from streamforge_pipelines.queue_manager.trades_ledger import TradesDayLedger, repair_plan

    settings = make_settings(partitions=1)
    request = LoadRequest(
        ("BTCUSDT", "ETHUSDT"), "5m", DAY, DAY, source="auto", run_id="r1", partition_key="k"
    )
    repairs = {"BTCUSDT": [(D0, D0 + HOUR_MS)]}
    ledger = TradesDayLedger(
        symbol="BTCUSDT", kind="agg", day=DAY.isoformat(), first_id=1, last_id=100, expected=100, stored=90,
        missing_ranges=[(10, 20)],
    )  # fmt: skip
    trades = TradesRequest(("BTCUSDT",), "agg", DAY, DAY, source="auto")
    plan = repair_plan(ledger)
    assert plan is not None and plan.id_ranges == ((10, 20),)
    built = [
        *build_commands(request, settings),
        *build_commands(request, settings, plans=range_repairs(repairs)),
        *build_commands(trades, settings),
        *build_commands(trades, settings, plans=[plan]),
    ]
    assert len(built) == 5
    assert [c.ranges for c in built] == [None, None, [(D0, D0 + HOUR_MS)], None, None]
    assert [c.id_ranges for c in built] == [None, None, None, None, [(10, 20)]]
    assert {c.collection_name for c in built} == {"candles", "trades"}
    for command in built:
        assert command is not None
        assert decode_command(command.encode()) == command
