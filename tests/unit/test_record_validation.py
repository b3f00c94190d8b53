"""Data records: what decodes is what the store can hold, and nothing but a one-line ProtocolError
comes out of the decoder, whatever the bytes.

Property-based (hypothesis, derandomized): arbitrary bytes, arbitrary JSON and near-valid records of
every kind (candle pages, single candles, trades pages, end markers with mutated fields) go through
:func:`~streamforge_pipelines.protocol.decode_record`; its verdict must equal the reference validator's
(``record_cases.reference_accepts``, written from the specification), its errors must be one bounded
line naming the field, and whatever it accepts must upsert into a real SQLite store and read back
unchanged. The malformed kinds of the hardening issue are checked one by one with the field their
reason must name, and real exchange data (the Binance captures, the simulator's klines and trades)
must pass.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from record_cases import (
    FIXTURES,
    agg_rows,
    candle_record,
    data_values,
    expected_documents,
    klines,
    malformed_records,
    page_record,
    reference_accepts,
    stored_document,
    trade_rows,
    trades_record,
)

from streamforge_pipelines import protocol as p
from streamforge_pipelines.datasets import CANDLES, TRADES
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.store import SqliteStore
from streamforge_pipelines.workers.archive_client import parse_trades_csv

PROPERTY = settings(
    derandomize=True,
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: An error line names the kind and field first.
PREFIXES = ("record", "candle.", "candles.", "trades.", "end.")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteStore]:
    db = SqliteStore(tmp_path_factory.mktemp("records") / "store.sqlite")
    yield db
    db.close()


def _store_and_compare(store: SqliteStore, raw: bytes) -> None:
    """Upsert an accepted record the way the connector does (pages bound as they are, documents
    otherwise) and read every document back unchanged."""
    value = orjson.loads(raw)
    kind = value.get("record", "candle")
    if kind == "end":
        return
    if kind == "trades":
        store.upsert(TRADES, p.decode_record(raw)["docs"])
    else:
        decoded = p.decode_record(raw, page_as_docs=False)
        if kind == "candles":
            store.upsert_pages(CANDLES, [decoded["page"]])
            store.upsert(CANDLES, p.decode_record(raw)["docs"])  # the documents' path too
        else:
            store.upsert(CANDLES, [decoded])
    table, expected = expected_documents(value)
    for doc in expected:
        assert stored_document(store.path, table, doc["key"]) == doc


@PROPERTY
@given(raw=data_values())
def test_decoder_refuses_in_one_line_or_accepts_what_the_store_holds(store: SqliteStore, raw: bytes) -> None:
    try:
        p.decode_record(raw)
        p.decode_record(raw, page_as_docs=False)
    except p.ProtocolError as exc:
        line = str(exc)
        assert "\n" not in line and len(line) <= 600 and line.startswith(PREFIXES), line
        assert not reference_accepts(raw), f"refused a valid record: {line}"
        return
    assert reference_accepts(raw), f"accepted an invalid record: {raw[:300]!r}"
    _store_and_compare(store, raw)


@pytest.mark.parametrize("case", malformed_records(1_700_000_000_000), ids=lambda c: c.name)
def test_every_malformed_kind_is_refused_naming_the_field(case) -> None:
    with pytest.raises(p.ProtocolError) as info:
        p.decode_record(case.value)
    line = str(info.value)
    assert line.startswith(case.reason), line
    assert "\n" not in line and len(line) <= 400, line  # a bounded excerpt, never the 900 KB value


def test_the_store_refuses_what_the_check_now_catches(tmp_path) -> None:
    """Why integers are checked: SQLite cannot hold 2**63 (the OverflowError of the issue)."""
    db = SqliteStore(tmp_path / "s.sqlite")
    try:
        row = klines(1_700_000_000_000, 1)[0]
        row[8] = 2**63
        with pytest.raises(OverflowError):
            db.upsert_pages(CANDLES, [("BTCUSDT", "1m", "binance-rest", "q", [row])])
        with pytest.raises(
            p.ProtocolError, match=r"^candles\.rows\[0\]\.trades: expected an integer from 0 to 2\*\*63-1"
        ):
            p.decode_record(orjson.dumps(page_record([row])))
    finally:
        db.close()


def test_real_exchange_data_passes() -> None:
    """The Binance captures and the simulator's output are valid, edge cases included (empty minutes
    with volume 0 and open = high = low = close, rows crossing a power of ten)."""
    rest = [
        r[:11] for r in orjson.loads((FIXTURES / "spot_rest_klines_BTCUSDT_1m_nautilus.json").read_bytes())
    ]
    archive = []
    for line in (FIXTURES / "vision_spot_klines_BTCUSDT-1h-2023-10-27.csv").read_text().splitlines():
        f = line.split(",")
        archive.append([int(f[0]), *f[1:6], int(f[6]), f[7], int(f[8]), f[9], f[10]])
    market = Market(7)
    pages = [(rest, "1m"), (archive, "1h")]
    for symbol in ("BTCUSDT", "ETHUSDT"):
        for interval in ("1s", "1m", "1h", "1d", "1M"):
            rows = market.klines(symbol, interval, 1_700_000_000_000, None, 1000, 1_760_000_000_000)
            pages.append(([r[:11] for r in rows], interval))
    total = 0
    for rows, interval in pages:
        docs = p.decode_record(orjson.dumps(page_record(rows, interval=interval)))["docs"]
        assert len(docs) == len(rows) > 0
        total += len(docs)
        for r in rows[:3]:
            p.decode_record(orjson.dumps(candle_record(r, interval=interval)))
    assert total > 5000
    empty = [r for rows, _ in pages for r in rows if r[5] in ("0", "0.00000000")]
    assert any(r[1] == r[2] == r[3] == r[4] for r in empty), "no empty candle among the samples"
    aggs = market.agg_trades("BTCUSDT", 1_760_000_000_000, limit=1000, start_ms=1_700_000_000_000)
    agg_page = trades_record(
        [[a["a"], a["p"], a["q"], a["f"], a["l"], a["T"], a["m"]] for a in aggs], symbol="BTCUSDT"
    )
    assert len(p.decode_record(orjson.dumps(agg_page))["docs"]) == len(aggs) == 1000
    archive_aggs = parse_trades_csv(b"7,4.18300000,11.51000000,14,15,1741564802990000,False,True\n", "agg")
    assert p.decode_record(orjson.dumps(trades_record(archive_aggs)))["docs"][0]["time"] == 1741564802990


def test_valid_pages_of_every_shape_are_accepted_fast_path_or_not() -> None:
    """Rows the bulk passes cannot clear (a row crossing a power of ten, prices written with different
    numbers of decimals) are valid: the exact row walk lets them through."""
    from record_cases import EDGE_ROWS

    rows = klines(1_700_000_000_000, len(EDGE_ROWS), EDGE_ROWS) + klines(1_700_000_600_000, 10)
    assert len(p.decode_record(orjson.dumps(page_record(rows)))["docs"]) == len(rows)
    assert len(p.decode_record(orjson.dumps(trades_record(agg_rows(1, 3) + agg_rows(3, 1)[:0])))["docs"]) == 3
    assert len(p.decode_record(orjson.dumps(trades_record(trade_rows(1, 3), kind="trade")))["docs"]) == 3


def test_end_markers_carry_integers() -> None:
    ok = p.end_marker("wf-q", "loader__abc", 3, 120)
    assert p.decode_record(orjson.dumps(ok))["records"] == 120
    for name, value, reason in [
        ("records", "120", r"^end\.records: expected an integer"),
        ("partition", -1, r"^end\.partition: expected an integer"),
        ("queue_id", "", r"^end\.queue_id: expected a non-empty str"),
        ("queue_id", "q" * 900_000, r"^end\.queue_id: expected at most 200 characters"),
    ]:
        with pytest.raises(p.ProtocolError, match=reason):
            p.decode_record(orjson.dumps({**ok, name: value}))
