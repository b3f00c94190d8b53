"""Fixtures for the store contract tests: one factory per adapter.

``sqlite`` always runs, on a file under ``tmp_path``. ``arango`` runs only when ``ARANGO_URL`` is
set (``ARANGO_USERNAME`` / ``ARANGO_PASSWORD`` / ``ARANGO_DB`` are read too); each test gets its
own database, named ``<ARANGO_DB or streamforge>_ct_<unique>``, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streamforge_pipelines.store import SqliteStore, Store

StoreFactory = Callable[[], Store]

ARANGO_SKIP_REASON = (
    "ArangoDB contract tests need a server: set ARANGO_URL (and ARANGO_USERNAME, ARANGO_PASSWORD, "
    "ARANGO_DB if needed) to run them"
)


def _sqlite_factory(tmp_path: Path) -> Iterator[StoreFactory]:
    path = tmp_path / "store.sqlite"
    opened: list[Store] = []

    def make() -> Store:
        store = SqliteStore(path)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def _arango_factory() -> Iterator[StoreFactory]:
    url = os.environ.get("ARANGO_URL")
    if not url:
        pytest.skip(ARANGO_SKIP_REASON)
    from arango import ArangoClient

    from streamforge_pipelines.store.arango import ArangoStore

    username = os.environ.get("ARANGO_USERNAME") or "root"
    password = os.environ.get("ARANGO_PASSWORD") or ""
    prefix = os.environ.get("ARANGO_DB") or "streamforge"
    db_name = f"{prefix}_ct_{uuid.uuid4().hex[:12]}"[-64:]
    opened: list[Store] = []

    def make() -> Store:
        store = ArangoStore(url, db_name=db_name, username=username, password=password)
        opened.append(store)
        return store

    try:
        yield make
    finally:
        for store in opened:
            store.close()
        client = ArangoClient(hosts=url)
        try:
            client.db("_system", username=username, password=password).delete_database(
                db_name, ignore_missing=True
            )
        finally:
            client.close()


@pytest.fixture(
    params=["sqlite", pytest.param("arango", marks=pytest.mark.arango)],
)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of stores that all see the same backing data (file or database)."""
    if request.param == "sqlite":
        yield from _sqlite_factory(tmp_path)
    else:
        yield from _arango_factory()


@pytest.fixture
def store(make_store: StoreFactory) -> Store:
    """A fresh, empty store of the parametrized kind."""
    return make_store()
