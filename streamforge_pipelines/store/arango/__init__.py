"""The production (ArangoDB) adapter of the store: :class:`ArangoStore`."""

from .store import ArangoStore

__all__ = ["ArangoStore"]
