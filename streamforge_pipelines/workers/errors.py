"""Errors raised by workers.

::

    WorkerError
    ├── ExchangeError            the exchange answered with an error
    │   ├── ExchangeRejected     4xx with a Binance error code: bad symbol, bad interval ... (final)
    │   ├── RateLimited          429 / 418: wait ``retry_after`` seconds (retriable)
    │   │   └── WafBlocked       403 from the exchange's web application firewall (CDN): pause, retry
    │   └── ExchangeUnavailable  5xx, timeouts, dropped connections, truncated bodies (retriable)
    └── TaskInvalid              a command that cannot be carried out as given (final)

    TaskStopped                  asked to stop (``stop`` command, cancelled run): ``interrupted``, no error

``retriable`` tells the retry loop whether trying again can help; nothing checks types for that.
"""

from __future__ import annotations


class WorkerError(Exception):
    retriable: bool = False


class TaskInvalid(WorkerError):
    """The command cannot be carried out as given (unknown type, empty range, ...)."""


class TaskStopped(Exception):
    """The task was asked to stop (a ``stop`` command on ``queue-control``, a cancelled Dagster run)
    and ended at a page boundary: reported as ``interrupted`` (what it produced is flushed), not as
    an error, so it is not a :class:`WorkerError`."""


class ExchangeError(WorkerError):
    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ExchangeRejected(ExchangeError):
    """The exchange refused the request itself: retrying the same request cannot help."""


class RateLimited(ExchangeError):
    retriable = True

    def __init__(self, message: str, *, status: int, retry_after: float) -> None:
        super().__init__(message, status=status, code=-1003)
        self.retry_after = retry_after


class WafBlocked(RateLimited):
    """HTTP 403 from the exchange's web application firewall (Binance: a CloudFront HTML page, no
    error code), which Binance documents as a WAF rule violation that "may also be rate-related":
    every request of the process pauses ``retry_after`` seconds, then it is tried again (bounded)."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, status=403, retry_after=retry_after)
        self.code = None


class ExchangeUnavailable(ExchangeError):
    retriable = True
