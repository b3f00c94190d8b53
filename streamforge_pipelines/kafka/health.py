"""Is the Kafka broker answering? A probe for start-up checks and a monitor for long-running work.

A Kafka client does not tell its user that the cluster is gone: aiokafka logs ``Unable connect to
node`` at every retry (thousands of lines), a consumer's ``getmany`` keeps returning nothing, and a
producer's send waits for its request timeout. So StreamForge asks the broker itself:

* :func:`probe` sends Kafka ApiVersions and Metadata requests to each bootstrap server over a plain
  socket (no event loop, no client library state) and raises :class:`BrokerUnavailable` when none
  of them answers — one line naming the servers and the reason, e.g.
  ``broker 127.0.0.1:40123 is not answering (connection refused)``;
* :class:`BrokerMonitor` probes in a daemon thread every ``interval_s`` and reports the broker
  down once it has failed every probe for ``down_after_s`` seconds (``KAFKA_UNAVAILABLE_S``).
  :meth:`BrokerMonitor.check` is cheap (it reads the thread's verdict), so loops that wait on
  Kafka (the queue-manager following ``queue-events``, the connector's poll loop, the standalone
  loader) call it on every turn and stop with that one line instead of waiting forever.

:func:`monitor` returns the process-wide monitor of a bootstrap string, so a run and the Dagster
step it executes in the same process share one probing thread.

It imports nothing of StreamForge (only the standard library), and never Dagster.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable

__all__ = [
    "BrokerMonitor",
    "BrokerUnavailable",
    "monitor",
    "not_answering",
    "probe",
    "probe_server",
    "release",
    "split_bootstrap",
]

log = logging.getLogger(__name__)

_API_VERSIONS = 18
_METADATA = 3
_CLIENT_ID = b"streamforge-probe"


class BrokerUnavailable(ConnectionError):
    """The Kafka broker does not answer; ``str(err)`` is one line naming it and the reason."""

    retriable = True

    def __init__(self, bootstrap: str, reason: str) -> None:
        super().__init__(not_answering(bootstrap, reason))
        self.bootstrap = bootstrap
        self.reason = reason


def split_bootstrap(bootstrap: str) -> list[tuple[str, int]]:
    """``"a:9092,[::1]:9093"`` -> ``[("a", 9092), ("::1", 9093)]``; :class:`ValueError` when malformed."""
    out = []
    for item in (s.strip() for s in bootstrap.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port[,host:port...], got {bootstrap!r}")
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise ValueError(f"expected host:port[,host:port...], got {bootstrap!r}")
    return out


def probe_server(host: str, port: int, *, timeout_s: float) -> int:
    """Send ApiVersions v0 and Metadata v1 over one connection; return the number of brokers.

    Raises :class:`OSError` when the connection fails, :class:`ValueError` or :class:`struct.error`
    when the answer is not a successful Kafka response.
    """
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        # ApiVersions v0: empty body.
        body = _request(sock, _API_VERSIONS, 0, 1, b"")
        (error_code,) = struct.unpack_from(">h", body, 0)
        if error_code != 0:
            raise ValueError(f"ApiVersions answered error code {error_code}")
        # Metadata v1 with an empty topic array: brokers only, and no topic gets auto-created.
        body = _request(sock, _METADATA, 1, 2, struct.pack(">i", 0))
        (n_brokers,) = struct.unpack_from(">i", body, 0)
        if n_brokers < 1:
            raise ValueError("Metadata answered with no broker")
        return int(n_brokers)


def probe(bootstrap: str, *, timeout_s: float = 2.0) -> int:
    """The number of brokers the first answering bootstrap server names; :class:`BrokerUnavailable`
    (one line: every server, the last reason) when none answers within ``timeout_s`` each."""
    try:
        servers = split_bootstrap(bootstrap)
    except ValueError as exc:
        raise BrokerUnavailable(bootstrap, f"bad address: {exc}") from None
    reason = "no answer"
    for host, port in servers:
        try:
            return probe_server(host, port, timeout_s=timeout_s)
        except (OSError, ValueError, struct.error) as exc:
            reason = _reason(exc)
    raise BrokerUnavailable(bootstrap, reason)


def not_answering(bootstrap: str, reason: str) -> str:
    """``broker 127.0.0.1:9092 is not answering (connection refused)`` (plural for several)."""
    servers = [s.strip() for s in bootstrap.split(",") if s.strip()]
    name = f"broker {servers[0]} is" if len(servers) == 1 else f"brokers {', '.join(servers)} are"
    return f"{name} not answering ({reason})"


class BrokerMonitor:
    """Probes the broker in a daemon thread; :meth:`check` raises once it has been down long enough.

    ``down_after_s``: how long every probe must fail before the broker counts as down (a broker that
    answers again before that was only slow). ``interval_s``: the pause between two probes.
    """

    def __init__(self, bootstrap: str, *, down_after_s: float = 5.0, interval_s: float = 0.5) -> None:
        self.bootstrap = bootstrap
        self.down_after_s = down_after_s
        self.interval_s = interval_s
        #: Whether the broker's process is alive, when this process started it (the embedded
        #: broker): a broker that exited is down at once, not after ``down_after_s``.
        self.alive: Callable[[], bool] | None = None
        self._failing_since: float | None = None
        self._reason = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> BrokerMonitor:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="broker-monitor", daemon=True)
                self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                probe(self.bootstrap, timeout_s=max(0.5, min(2.0, self.down_after_s / 2)))
            except BrokerUnavailable as exc:
                self._reason = exc.reason
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.warning("%s", exc)
            else:
                if self._failing_since is not None:
                    log.warning("broker %s answers again", self.bootstrap)
                self._failing_since = None
            # A plain sleep, not ``Event.wait(timeout)``: a lock's timed wait is an absolute deadline
            # on CLOCK_MONOTONIC, which a process under libfaketime (the tests' clock a year ahead)
            # never reaches; the thread is a daemon and stops within one interval.
            time.sleep(self.interval_s)

    @property
    def down_for(self) -> float:
        """Seconds every probe has failed (0 while the broker answers)."""
        since = self._failing_since
        return 0.0 if since is None else time.monotonic() - since

    def _why(self) -> str | None:
        if self.alive is not None and not self.alive():
            return "the embedded broker exited"
        down = self.down_for
        if down < self.down_after_s or down == 0.0:
            return None
        return f"{self._reason} for {down:.0f}s"

    @property
    def down(self) -> bool:
        """The broker is not answering right now (some probe failed, or its process exited)."""
        return self.down_for > 0 or (self.alive is not None and not self.alive())

    def failure(self) -> str | None:
        """The one-line reason once the broker has been down for ``down_after_s`` (at once when its
        process is known to have exited), else None."""
        why = self._why()
        return None if why is None else not_answering(self.bootstrap, why)

    def check(self) -> None:
        """Raise :class:`BrokerUnavailable` when :meth:`failure` has a reason."""
        why = self._why()
        if why is not None:
            raise BrokerUnavailable(self.bootstrap, why)


_MONITORS: dict[str, BrokerMonitor] = {}
_MONITORS_LOCK = threading.Lock()


def monitor(
    bootstrap: str, *, down_after_s: float = 5.0, alive: Callable[[], bool] | None = None
) -> BrokerMonitor:
    """The process-wide, started monitor of ``bootstrap`` (created on first use); ``alive``: see
    :attr:`BrokerMonitor.alive` (given by whoever started the broker)."""
    with _MONITORS_LOCK:
        found = _MONITORS.get(bootstrap)
        if found is None:
            found = _MONITORS[bootstrap] = BrokerMonitor(bootstrap, down_after_s=down_after_s)
        found.down_after_s = min(found.down_after_s, down_after_s)
        if alive is not None:
            found.alive = alive
        return found.start()


def release(bootstrap: str) -> None:
    """Stop and forget the monitor of ``bootstrap`` (its broker was stopped on purpose)."""
    with _MONITORS_LOCK:
        found = _MONITORS.pop(bootstrap, None)
    if found is not None:
        found.stop()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "no answer in time"
    if isinstance(exc, socket.gaierror):
        return f"unknown host: {exc.strerror or exc}"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return f"not a Kafka answer: {exc}"


def _request(sock: socket.socket, api_key: int, api_version: int, correlation_id: int, body: bytes) -> bytes:
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(_CLIENT_ID)) + _CLIENT_ID
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    if not 4 <= size <= 16 * 1024 * 1024:
        raise ValueError(f"implausible Kafka response size {size}")
    response = _recv_exact(sock, size)
    (got_id,) = struct.unpack_from(">i", response, 0)
    if got_id != correlation_id:
        raise ValueError(f"Kafka response correlation id {got_id}, expected {correlation_id}")
    return response[4:]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks: list[bytes] = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("connection closed by the peer in the middle of a response")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)
