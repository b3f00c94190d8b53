"""The SQLite tables of the built-in datasets, generated from their specs, are the tables the store
wrote before datasets were specs: same columns, types, ``NOT NULL``, ``WITHOUT ROWID`` and indexes,
so a data file written then is read and upserted into as it is.

The expected DDL below is the adapter's former hand-written DDL, copied as it was.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from streamforge_pipelines.datasets import CANDLES, CANDLES_USDM, TRADES, DatasetSpec
from streamforge_pipelines.protocol import candle_key, trade_key
from streamforge_pipelines.store import SqliteStore
from streamforge_pipelines.store.sqlite.datasets import statements_of


def _former_candle_ddl(table: str) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS "{table}" (
    "key" TEXT PRIMARY KEY NOT NULL,
    "symbol" TEXT NOT NULL,
    "interval" TEXT NOT NULL,
    "open_time" INTEGER NOT NULL,
    "open" TEXT NOT NULL,
    "high" TEXT NOT NULL,
    "low" TEXT NOT NULL,
    "close" TEXT NOT NULL,
    "volume" TEXT NOT NULL,
    "close_time" INTEGER NOT NULL,
    "quote_volume" TEXT NOT NULL,
    "trades" INTEGER NOT NULL,
    "taker_buy_base" TEXT NOT NULL,
    "taker_buy_quote" TEXT NOT NULL,
    "source" TEXT NOT NULL,
    "queue_id" TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "{table}_symbol_interval_open_time"
    ON "{table}" ("symbol", "interval", "open_time");
"""


def _former_trade_ddl(table: str) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS "{table}" (
    "key" TEXT PRIMARY KEY NOT NULL,
    "symbol" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "id" INTEGER NOT NULL,
    "price" TEXT NOT NULL,
    "qty" TEXT NOT NULL,
    "quote_qty" TEXT,
    "first_trade_id" INTEGER,
    "last_trade_id" INTEGER,
    "time" INTEGER NOT NULL,
    "is_buyer_maker" INTEGER NOT NULL,
    "source" TEXT NOT NULL,
    "queue_id" TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS "{table}_symbol_kind_id" ON "{table}" ("symbol", "kind", "id");
CREATE INDEX IF NOT EXISTS "{table}_symbol_kind_time" ON "{table}" ("symbol", "kind", "time");
"""


FORMER = [(CANDLES, _former_candle_ddl), (CANDLES_USDM, _former_candle_ddl), (TRADES, _former_trade_ddl)]


def _statements(script: str) -> set[str]:
    return {" ".join(s.split()) for s in script.split(";") if s.strip()}


@pytest.mark.parametrize(("spec", "former"), FORMER, ids=lambda x: getattr(x, "name", ""))
def test_generated_ddl_is_the_former_ddl(spec: DatasetSpec, former) -> None:
    assert _statements(";".join(statements_of(spec).ddl)) == _statements(former(spec.collection))


def _schema(path: Path) -> dict[str, list[tuple]]:
    """Every table's columns (name, type, not null, primary key) and every index's columns."""
    conn = sqlite3.connect(path)
    try:
        out: dict[str, list[tuple]] = {}
        for name, kind in conn.execute("SELECT name, type FROM sqlite_master ORDER BY name"):
            if kind == "table":
                out[name] = [(c[1], c[2], c[3], c[5]) for c in conn.execute(f'PRAGMA table_info("{name}")')]
                (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()
                out[name].append(("WITHOUT ROWID" in sql,))
            elif kind == "index" and not name.startswith("sqlite_autoindex"):
                out[name] = [(c[2],) for c in conn.execute(f'PRAGMA index_info("{name}")')]
        return out
    finally:
        conn.close()


def test_a_file_written_with_the_former_tables_is_used_as_it_is(tmp_path: Path) -> None:
    old, new = tmp_path / "old.sqlite", tmp_path / "new.sqlite"
    conn = sqlite3.connect(old)
    for spec, former in FORMER:
        conn.executescript(former(spec.collection))
    conn.execute(
        'INSERT INTO "trades" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        (trade_key("BTCUSDT", "agg", 7), "BTCUSDT", "agg", 7, "1.5", "2", None, 7, 9, 1_000, 1, "s", "q"),
    )
    conn.commit()
    conn.close()
    with SqliteStore(new) as store:  # the same tables, generated
        for spec, _ in FORMER:
            store.count(spec, ("BTCUSDT", "agg" if spec is TRADES else "1m"), 0, 1)
    with SqliteStore(old) as store:
        (stored,) = store.read(TRADES, ("BTCUSDT", "agg"), 0, 2_000)
        assert stored["is_buyer_maker"] is True and stored["quote_qty"] is None and stored["id"] == 7
        candle = {
            "key": candle_key("BTCUSDT", "1m", 60_000),
            "symbol": "BTCUSDT",
            "interval": "1m",
            "open_time": 60_000,
            **dict.fromkeys(("open", "high", "low", "close", "volume", "quote_volume"), "1.0"),
            "close_time": 119_999,
            "trades": 3,
            "taker_buy_base": "0.5",
            "taker_buy_quote": "0.5",
            "source": "s",
            "queue_id": "q",
        }
        assert store.upsert(CANDLES, [candle]) == 1
        assert store.read(CANDLES, ("BTCUSDT", "1m"), 0, 2**53) == [candle]
    new_schema, old_schema = _schema(new), _schema(old)
    for spec, _ in FORMER:
        names = {n for n in old_schema if n == spec.collection or n.startswith(f"{spec.collection}_")}
        assert names and {n: new_schema.get(n) for n in names} == {n: old_schema[n] for n in names}
