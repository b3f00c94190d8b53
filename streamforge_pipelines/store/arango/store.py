"""The production store: ArangoDB through python-arango (8.x), with the same semantics as the SQLite
adapter.

Its parts: :mod:`.connection` (client, database, collections and indexes created on first use, AQL
and bulk imports, durability), :mod:`.datasets` (one collection per dataset spec, AQL from the spec)
and :mod:`.records` (task records, the ledger, the correlations graph, the model registry). The
configured database is created on first use when the account may.
"""

from __future__ import annotations

from .datasets import ArangoDatasets
from .records import ArangoRecords


class ArangoStore(ArangoDatasets, ArangoRecords):
    """The store in an ArangoDB database: ``ArangoStore(url, db_name=, username=, password=,
    create_database=True, sync=False, request_timeout=60.0)`` (``url`` may list several
    coordinators, comma-separated)."""
