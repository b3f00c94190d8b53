"""The store's exceptions: one base (:class:`StoreError`) that callers catch, and two refinements."""

from __future__ import annotations


class StoreError(Exception):
    """A store operation failed (bad input, or the backend refused)."""


class InvalidNameError(StoreError, ValueError):
    """A collection/table name or document key that the store will not put into a query."""


class TaskNotFound(StoreError, KeyError):
    """No task record has the requested ``queue_id``."""

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return str(self.args[0]) if self.args else "task not found"
