"""Names the store puts into SQL and AQL: collections, document keys, fields, databases.

Every collection name goes through :func:`validate_collection_name` and every dataset field name
through :func:`validate_field_name` before it reaches a query (both adapters write them into the
statement text); every value travels as a bound parameter. Keys follow ArangoDB's ``_key`` alphabet
and length limit, so both adapters accept and refuse the same keys.
"""

from __future__ import annotations

import re

from .errors import InvalidNameError

TASKS_COLLECTION = "tasks"
#: The completeness ledger: one ledger record per (symbol, interval, day).
LEDGER_COLLECTION = "ledger"
#: The model registry: one model record per saved model version.
MODELS_COLLECTION = "models"
#: Names used by the adapters for their own tables/collections; not usable for dataset documents.
RESERVED_NAMES: frozenset[str] = frozenset(
    {
        TASKS_COLLECTION,
        LEDGER_COLLECTION,
        MODELS_COLLECTION,
        "graph_nodes",
        "graph_edges",
        "assets",
        "relations",
        "asset_snapshots",
    }
)

#: Collection/table names: a letter, then letters, digits and underscores (valid in both SQLite
#: identifiers and ArangoDB collection names, and never needing escapes).
_COLLECTION_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
#: Dataset field names: the same alphabet, so they are SQLite column names and AQL attribute names
#: as they are.
_FIELD_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: Document keys (dataset keys, queue ids, asset symbols, snapshot ids): ArangoDB's ``_key``
#: alphabet and length limit.
_KEY_MAX_LEN = 254
KEY_PATTERN = r"[A-Za-z0-9_\-:.@()+,=;$!*'%]{1,254}"
_KEY_RE = re.compile(KEY_PATTERN)
_KEY_CHARS_RE = re.compile(r"[A-Za-z0-9_\-:.@()+,=;$!*'%]*")
#: ArangoDB database names (traditional naming): a letter, then letters, digits, ``_`` and ``-``.
_DATABASE_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}")


def validate_collection_name(name: str, *, allow_reserved: bool = False) -> str:
    """Return ``name`` if it is a safe collection/table name, else raise :class:`InvalidNameError`."""
    if not isinstance(name, str) or _COLLECTION_NAME_RE.fullmatch(name) is None:
        raise InvalidNameError(f"invalid collection name {name!r}: must match {_COLLECTION_NAME_RE.pattern}")
    if not allow_reserved and name in RESERVED_NAMES:
        raise InvalidNameError(f"collection name {name!r} is reserved by the store")
    return name


def validate_field_name(name: str) -> str:
    """Return ``name`` if it is a safe dataset field name, else raise :class:`InvalidNameError`."""
    if not isinstance(name, str) or _FIELD_NAME_RE.fullmatch(name) is None:
        raise InvalidNameError(f"invalid field name {name!r}: must match {_FIELD_NAME_RE.pattern}")
    return name


def validate_key(key: str, what: str = "key") -> str:
    """Return ``key`` if it is a valid document key, else raise :class:`InvalidNameError`."""
    if not is_valid_key(key):
        raise InvalidNameError(f"invalid {what} {key!r}: must match {KEY_PATTERN}")
    return key


def is_valid_key(key: object) -> bool:
    """Whether ``key`` is a valid document key (see :func:`validate_key`)."""
    return isinstance(key, str) and _KEY_RE.fullmatch(key) is not None


def keys_valid(keys: list[str]) -> bool:
    """Whether every one of ``keys`` (strings) is a valid document key: one regex pass over the
    joined keys plus a length check, much cheaper than a match per key at thousands of keys."""
    return (
        _KEY_CHARS_RE.fullmatch("".join(keys)) is not None
        and min(map(len, keys)) >= 1
        and max(map(len, keys)) <= _KEY_MAX_LEN
    )


def validate_database_name(name: str) -> str:
    """Return ``name`` if it is a valid ArangoDB database name, else raise :class:`InvalidNameError`."""
    if not isinstance(name, str) or _DATABASE_NAME_RE.fullmatch(name) is None:
        raise InvalidNameError(f"invalid database name {name!r}: must match {_DATABASE_NAME_RE.pattern}")
    return name
