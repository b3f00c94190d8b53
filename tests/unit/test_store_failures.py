"""The connector tells a store failure that lies in the data (dead-letter the record) from one that
lies in the store (stop, commit nothing, replay on restart).

SQLite's failures are real ones, produced by a real store: a value SQLite cannot bind (2**63), a
constraint raised by a trigger, a write lock held by another connection, a database at its page
limit ("database or disk is full"), a closed store. ArangoDB's are python-arango's own exception
classes around the HTTP answers ArangoDB gives (no server runs here), wrapped by the adapter's own
error handling, and the connection error requests raises when nothing listens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import requests
from arango.exceptions import ArangoClientError, DocumentInsertError
from arango.request import Request
from arango.response import Response
from record_cases import klines

from streamforge_pipelines.datasets import CANDLES
from streamforge_pipelines.store import SqliteStore, StoreError
from streamforge_pipelines.store.arango.connection import arango_errors
from streamforge_pipelines.workers.connector import store_failure_is_operational, write_error_reason

PAGE = ("BTCUSDT", "1m", "binance-rest", "wf-q", klines(1_700_000_000_000, 3))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    db = SqliteStore(tmp_path / "store.sqlite", busy_timeout_s=0.2)
    db.count(CANDLES, ("BTCUSDT", "1m"), 0, 1)  # creates the candles table
    yield db
    db.close()


def _failure(write: Callable[[], object]) -> BaseException:
    with pytest.raises(Exception) as info:
        write()
    return info.value


def test_a_value_sqlite_cannot_hold_is_the_datas_fault(store: SqliteStore) -> None:
    row = klines(1_700_000_000_000, 1)[0]
    row[8] = 2**63
    exc = _failure(lambda: store.upsert_pages(CANDLES, [("BTCUSDT", "1m", "s", "q", [row])]))
    assert isinstance(exc, OverflowError)
    assert not store_failure_is_operational(exc)
    assert (
        write_error_reason(exc) == "store: OverflowError: Python int too large to convert to SQLite INTEGER"
    )


def test_a_constraint_is_the_datas_fault(store: SqliteStore) -> None:
    conn = sqlite3.connect(store.path)
    conn.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON candles WHEN NEW.queue_id = 'wf-q' "
        "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    )
    conn.close()
    exc = _failure(lambda: store.upsert_pages(CANDLES, [PAGE]))
    assert isinstance(exc, StoreError) and isinstance(exc.__cause__, sqlite3.IntegrityError)
    assert not store_failure_is_operational(exc)
    assert write_error_reason(exc) == "store: StoreError: SQLite write failed: refused by the test"


def test_a_locked_database_is_the_stores(store: SqliteStore) -> None:
    locker = sqlite3.connect(store.path)
    locker.execute("BEGIN IMMEDIATE")
    try:
        exc = _failure(lambda: store.upsert_pages(CANDLES, [PAGE]))
    finally:
        locker.rollback()
        locker.close()
    assert "database is locked" in str(exc)
    assert store_failure_is_operational(exc)
    store.upsert_pages(CANDLES, [PAGE])  # and once the lock is gone, the same write succeeds
    assert store.count(CANDLES, ("BTCUSDT", "1m"), 0, 2**62) == 3


def test_a_full_database_is_the_stores(store: SqliteStore) -> None:
    conn = store._connection()  # the store's own connection: the page limit is per connection
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {pages}")
    rows = klines(1_700_000_000_000, 2000)
    exc = _failure(lambda: store.upsert_pages(CANDLES, [("BTCUSDT", "1m", "s", "q", rows)]))
    assert "full" in str(exc)
    assert store_failure_is_operational(exc)


def test_a_closed_store_is_the_stores(store: SqliteStore) -> None:
    store.close()
    exc = _failure(lambda: store.upsert_pages(CANDLES, [PAGE]))
    assert store_failure_is_operational(exc)


def _arango_answer(status: int, error_num: int | None, message: str) -> DocumentInsertError:
    body = {"error": True, "code": status, "errorNum": error_num, "errorMessage": message}
    resp = Response(
        "post", "http://127.0.0.1:8529/_db/x/_api/import", {}, status, message, orjson.dumps(body).decode()
    )
    resp.body, resp.error_code, resp.error_message, resp.is_success = body, error_num, message, False
    return DocumentInsertError(resp, Request("post", "/_api/import"))


def _through_adapter(exc: BaseException) -> BaseException:
    """``exc`` as the ArangoDB adapter raises it (its ``arango_errors`` wrapping)."""

    def fail() -> None:
        with arango_errors("upsert into 'candles'"):
            raise exc

    return _failure(fail)


@pytest.mark.parametrize(
    ("status", "error_num", "message", "operational"),
    [
        (400, 1221, "illegal document key", False),
        (400, 600, "VPack error: invalid document", False),
        (413, None, "Payload Too Large", False),
        (401, 11, "not authorized to execute this request", True),
        (403, 11, "forbidden", True),
        (404, 1203, "collection or view not found", True),
        (409, 1200, "write-write conflict", True),
        (500, 4, "internal error", True),
        (503, 503, "service unavailable", True),
    ],
)
def test_arango_answers(status: int, error_num: int | None, message: str, operational: bool) -> None:
    exc = _through_adapter(_arango_answer(status, error_num, message))
    assert isinstance(exc, StoreError)
    assert store_failure_is_operational(exc) is operational


def test_arango_unreachable_is_the_stores() -> None:
    refused = requests.exceptions.ConnectionError(
        "HTTPConnectionPool(host='127.0.0.1', port=8529): [Errno 111]"
    )
    assert store_failure_is_operational(refused)  # python-arango lets requests' errors through
    assert store_failure_is_operational(_through_adapter(ArangoClientError("no connection")))
