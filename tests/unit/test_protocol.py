"""The message protocol: original examples parse unchanged, bad input gets a one-line error."""

from __future__ import annotations

import ast
from datetime import date
from pathlib import Path

import orjson
import pytest

from streamforge_pipelines import protocol as p

# The two example messages of the original design, field for field (DESIGN.md, "Messages").
ORIGINAL_COMMAND = {
    "command": "start",
    "queue_id": "wf-btcusdt-api_candles_5m-20240801-a1b2c3",
    "target": "loader-producer",
    "symbol": "BTCUSDT",
    "type": "api_candles_5m",
    "time_range": "2024-08-01:2024-08-01",
    "kafka_topic": "wf-btcusdt-api_candles_5m-20240801-a1b2c3-data",
    "collection_name": "btcusdt_api_candles_5m_2024_08_01",
    "telemetry_id": "loader-producer__a1b2c3",
    "image": "registry.local/streamforge/loader-producer:latest",
    "timestamp": 1722470400.0,
}
ORIGINAL_EVENT = {
    "queue_id": "wf-btcusdt-api_candles_5m-20240801-a1b2c3",
    "producer": "loader-producer__a1b2c3",
    "symbol": "BTCUSDT",
    "type": "api_candles_5m",
    "status": "loading",
    "message": "page 3",
    "records_written": 3000,
    "finished": False,
    "timestamp": 1722470460.5,
}


def test_original_command_parses_unchanged() -> None:
    cmd = p.decode_command(orjson.dumps(ORIGINAL_COMMAND))
    for field, value in ORIGINAL_COMMAND.items():
        assert getattr(cmd, field) == value, field
    assert cmd.schema_version == p.SCHEMA_VERSION
    assert cmd.days() == (date(2024, 8, 1), date(2024, 8, 1))
    assert cmd.interval() == "5m"
    again = p.decode_command(cmd.encode())
    assert again == cmd


def test_original_event_parses_unchanged() -> None:
    ev = p.decode_event(orjson.dumps(ORIGINAL_EVENT))
    for field, value in ORIGINAL_EVENT.items():
        assert getattr(ev, field) == value, field
    assert ev.component == "loader-producer"
    assert len(ev.event_id) == 32  # added for de-duplication when absent


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"command": "go"}, "command.command", "'start', 'stop' or 'ping'"),
        ({"time_range": "2024-08-01"}, "command.time_range", "YYYY-MM-DD:YYYY-MM-DD"),
        ({"time_range": "2024-08-02:2024-08-01"}, "command.time_range", "end day before start day"),
        ({"time_range": "2024-02-30:2024-03-01"}, "command.time_range", "day is out of range"),
        ({"symbol": "btc/usdt"}, "command.symbol", "exchange symbol"),
        ({"queue_id": None}, "command.queue_id", ""),
        ({"schema_version": 99}, "command.schema_version", "newer"),
    ],
)
def test_malformed_command_one_line_error_naming_field(change: dict, field: str, reason: str) -> None:
    raw = {**ORIGINAL_COMMAND, **change}
    with pytest.raises(p.ProtocolError) as err:
        p.decode_command(raw)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(field), msg
    assert reason in msg


def test_missing_field_and_bad_json() -> None:
    raw = dict(ORIGINAL_COMMAND)
    del raw["target"]
    with pytest.raises(p.ProtocolError, match=r"^command\.target: required field is missing$"):
        p.decode_command(raw)
    with pytest.raises(p.ProtocolError, match=r"^command: not valid JSON"):
        p.decode_command(b"{not json")
    with pytest.raises(p.ProtocolError, match=r"^command: expected a JSON object, got list"):
        p.decode_command(b"[1, 2]")


def test_event_status_validated() -> None:
    with pytest.raises(p.ProtocolError, match=r"^event\.status: "):
        p.decode_event({**ORIGINAL_EVENT, "status": "done"})


def test_identifiers_keep_original_shapes() -> None:
    qid = p.make_queue_id("BTCUSDT", "api_candles_5m", date(2024, 8, 1), "a1b2c3")
    assert qid == "wf-btcusdt-api_candles_5m-20240801-a1b2c3"
    assert p.make_producer_id("loader-api-candles", p.queue_id_suffix(qid)) == "loader-api-candles__a1b2c3"
    assert len(p.new_suffix()) == 6


def test_candle_record_round_trip_and_key() -> None:
    row = [
        1722470400000,
        "1.00000000",
        "2.00000000",
        "0.50000000",
        "1.50000000",
        "10.00000000",
        1722470699999,
        "15.00000000",
        7,
        "4.00000000",
        "6.00000000",
        "0",
    ]
    rec = p.candle_from_kline(row, "BTCUSDT", "5m", "binance-rest", "wf-x")
    doc = p.decode_record(p.encode_record(rec))
    assert doc["key"] == "BTCUSDT:5m:1722470400000"
    assert doc["open"] == "1.00000000" and doc["trades"] == 7
    assert "record" not in doc


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "record: not valid JSON"),
        (b'"text"', "record: expected a JSON object"),
        (b'{"record": "candle", "symbol": "BTCUSDT"}', "candle.interval: required field is missing"),
        (b'{"record": "weird"}', "unknown record kind"),
    ],
)
def test_bad_records_rejected_with_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(p.ProtocolError, match=reason):
        p.decode_record(raw)


def test_candle_type_checked() -> None:
    row = [1722470400000, 1.0, "2", "0.5", "1.5", "10", 1722470699999, "15", 7, "4", "6", "0"]
    rec = p.candle_from_kline(row, "BTCUSDT", "5m", "s", "q")
    with pytest.raises(p.ProtocolError, match=r"candle\.open: expected str, got float"):
        p.decode_record(p.encode_record(rec))


def test_end_marker() -> None:
    rec = p.decode_record(p.encode_record(p.end_marker("wf-q", "loader__abc", 3, 120)))
    assert rec["record"] == p.RECORD_END and rec["partition"] == 3 and rec["records"] == 120


ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = "streamforge_pipelines.protocol"


def _imports_of_protocol(path: Path) -> tuple[set[str], set[str]]:
    """The names ``path`` imports from the package ``streamforge_pipelines.protocol`` (absolute or
    relative) and the modules of the package it imports directly (``protocol.checks`` ...)."""
    names: set[str] = set()
    submodules: set[str] = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        module = f"{base}.{node.module}" if node.level and node.module else node.module or base
        if module == PROTOCOL:
            names.update(alias.name for alias in node.names)
        elif module.startswith(f"{PROTOCOL}."):
            submodules.add(module)
    return names, submodules


def test_public_face_is_the_package_all() -> None:
    """Code outside the protocol package imports its names from the package, each of them listed in
    ``__all__``, and, tests aside (they may import a private helper from its module), never reaches
    into the package's modules (its layout may change); ``__all__`` holds no private name and nothing
    the package does not define."""
    assert len(p.__all__) == len(set(p.__all__))
    assert [n for n in p.__all__ if n.startswith("_") or not hasattr(p, n)] == []
    sources = [
        f
        for folder in ("streamforge_pipelines", "bench", "tests")
        for f in (ROOT / folder).rglob("*.py")
        if "protocol" not in f.relative_to(ROOT).parts[:2]
    ]
    imported: dict[str, set[str]] = {}
    reaching_in: dict[str, set[str]] = {}
    for f in sources:
        names, submodules = _imports_of_protocol(f)
        for name in names:
            imported.setdefault(name, set()).add(str(f.relative_to(ROOT)))
        if submodules and f.relative_to(ROOT).parts[0] != "tests":
            reaching_in[str(f.relative_to(ROOT))] = submodules
    assert len(imported) > 30, (
        "the scan found too few imports of the protocol: is it looking in the right place?"
    )
    assert {n: files for n, files in imported.items() if n not in p.__all__} == {}
    assert reaching_in == {}
