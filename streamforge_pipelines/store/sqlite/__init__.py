"""The embedded (SQLite) adapter of the store: :class:`SqliteStore`."""

from .store import SqliteStore

__all__ = ["SqliteStore"]
