"""The local stack: whatever the settings leave unset, started on loopback as child processes.

* no ``KAFKA_BOOTSTRAP_SERVERS`` → the embedded Tansu broker, and the StreamForge topics on it;
* no ``EXCHANGE_URL`` → the exchange simulator (``streamforge simulator``);
* ``connector=True`` → one ``arango-connector`` worker (``streamforge worker connector``);
* ``streams=True`` → one stream worker (``streamforge worker streams``: ``loader-ws-*``), kept
  running by a supervisor thread that starts it again whenever it exits (as a Kubernetes Deployment
  would), with a capped exponential delay between quick restarts; ``streamforge dev`` asks for it.

With everything configured (production), nothing is started and only the topics are ensured;
a configured broker that does not answer is one line naming ``KAFKA_BOOTSTRAP_SERVERS`` before
anything else happens. ``streamforge run``, ``streamforge dev`` and the end-to-end tests all use
this one module.

While the stack runs, a :class:`~streamforge_pipelines.kafka.health.BrokerMonitor` probes the
broker; :meth:`Stack.failure` is the one line that says what broke (the broker not answering, a
child process that exited; not the supervised stream worker, which is started again), for the run
to stop on and report.

Children get only the settings their role needs (:data:`CHILD_SETTINGS`): the simulator sees no
store or object-store credentials, the connector no object-store or exchange settings.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from .embedded.broker import EmbeddedBroker
from .kafka import BrokerMonitor, ensure_topics_sync
from .kafka import monitor as broker_monitor
from .preflight import check_data_dir, check_kafka, check_simulator_config
from .settings import ENV_VARS, Settings

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """A part of the local stack did not come up or died; the message is one line saying which and why."""


#: The settings (environment variables, by prefix or name) each child process of the stack needs.
CHILD_SETTINGS: dict[str, tuple[str, ...]] = {
    "simulator": ("SIMULATOR_", "LOG_LEVEL"),
    "connector": ("KAFKA_", "ARANGO_", "STREAMFORGE_DATA_DIR", "METRICS_", "LOG_LEVEL"),
    "loader": ("KAFKA_", "EXCHANGE_", "LOADER_", "ARCHIVE_", "METRICS_", "LOG_LEVEL"),
    "streams": ("KAFKA_", "EXCHANGE_", "LIVE_", "METRICS_", "LOG_LEVEL"),
}

#: Children the stack starts again when they exit (the others' exit is a failure of the stack).
SUPERVISED: frozenset[str] = frozenset({"streams"})
#: Seconds between the supervisor's looks at its children; the first and the longest delay before
#: starting an exited child again (doubling while it keeps exiting within ``STEADY_S``).
SUPERVISE_EVERY_S = 0.5
RESTART_DELAY_S = 0.5
RESTART_DELAY_MAX_S = 30.0
STEADY_S = 60.0


def child_env(settings: Settings, role: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process of ``role`` (``loader-2`` is a ``loader``): this process's
    environment without any StreamForge setting, then only the settings of :data:`CHILD_SETTINGS`."""
    wanted = CHILD_SETTINGS[role.split("-", 1)[0]]
    base = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    mine = {k: v for k, v in settings.to_env().items() if k.startswith(wanted)}
    return {**base, **mine, **(extra or {})}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _last_words(path: Path) -> str:
    """The line of a child's log that says why it ended: the last error-looking line, else the last."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    for line in reversed(lines[-40:]):
        if any(w in line for w in ("Error", "error", "Exception", "exited", "refused")):
            return line if len(line) <= 300 else line[:300] + "…"
    return lines[-1][:300] if lines else ""


def _ended(name: str, code: int, logfile: Path) -> str:
    why = _last_words(logfile)
    return f"{name} exited with code {code}" + (f": {why}" if why else "") + f" (log: {logfile})"


class Stack:
    """``with Stack(settings) as stack: stack.settings`` — settings with every address filled in."""

    def __init__(
        self,
        settings: Settings,
        *,
        connector: bool = True,
        streams: bool = False,
        log_dir: Path | None = None,
    ) -> None:
        self.base = settings
        self.settings = settings
        self.want_connector = connector
        self.want_streams = streams
        self.log_dir = Path(log_dir or settings.data_dir / "logs")
        self.broker: EmbeddedBroker | None = None
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self.connector_metrics_url: str | None = None
        self.streams_metrics_url: str | None = None
        self.health: BrokerMonitor | None = None
        #: Supervised child -> times it was started again; when it last started; its next restart.
        self.restarts: dict[str, int] = {}
        self._started_at: dict[str, float] = {}
        self._restart_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Settings:
        check_simulator_config(self.base)  # before anything starts: a bad file is one line
        check_data_dir(self.base.data_dir)
        if self.base.kafka_bootstrap_servers is not None:
            check_kafka(self.base.kafka_bootstrap_servers)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        updates: dict[str, object] = {}
        try:
            if self.base.kafka_bootstrap_servers is None:
                self.broker = EmbeddedBroker(log_dir=self.log_dir)
                self.broker.start()
                updates["kafka_bootstrap_servers"] = self.broker.bootstrap_servers
            if self.base.exchange_url is None:
                updates["exchange_url"] = self._start_simulator()
            self.settings = self.base.model_copy(update=updates)
            broker = self.broker
            self.health = broker_monitor(
                self.settings.kafka_bootstrap_servers or "",
                down_after_s=self.base.kafka_unavailable_s,
                alive=None if broker is None else lambda: broker.running,
            )
            ensure_topics_sync(
                self.settings.kafka_bootstrap_servers or "",
                self.settings.topics(),
                configs=self.settings.topic_configs(),
            )
            if self.want_connector:
                port = self.base.metrics_port or free_port()
                self._spawn("connector", ["worker", "connector"], {"METRICS_PORT": str(port)})
                self.connector_metrics_url = f"http://127.0.0.1:{port}/metrics"
                log.info("connector metrics on %s", self.connector_metrics_url)
            if self.want_streams:
                self._spawn_streams()
                self._supervisor = threading.Thread(
                    target=self._supervise_loop, name="stack-supervisor", daemon=True
                )
                self._supervisor.start()
        except BaseException:
            self.stop()
            raise
        return self.settings

    def _spawn(
        self, name: str, args: list[str], extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        logfile = self.log_dir / f"{name}.log"
        env = child_env(self.settings, name, extra_env)
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamforge_pipelines.cli", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.procs[name] = (proc, logfile)
        self._started_at[name] = time.monotonic()
        log.info("started %s (pid %s), log %s", name, proc.pid, logfile)
        return proc

    def _spawn_streams(self) -> subprocess.Popen[bytes]:
        """The stream worker, its metrics on a free port (or ``METRICS_PORT`` + 1 when one is set)."""
        port = self.base.metrics_port + 1 if self.base.metrics_port else free_port()
        proc = self._spawn("streams", ["worker", "streams"], {"METRICS_PORT": str(port)})
        self.streams_metrics_url = f"http://127.0.0.1:{port}/metrics"
        return proc

    def supervise(self) -> list[str]:
        """Start again each supervised child that exited, once its restart delay has passed; one line
        per child started again."""
        lines: list[str] = []
        now = time.monotonic()
        for name in sorted(SUPERVISED & set(self.procs)):
            proc, logfile = self.procs[name]
            if proc.poll() is None:
                continue
            if name not in self._restart_at:
                quick = now - self._started_at.get(name, now) < STEADY_S
                self._failures[name] = self._failures.get(name, 0) + 1 if quick else 1
                delay = min(RESTART_DELAY_MAX_S, RESTART_DELAY_S * 2 ** (self._failures[name] - 1))
                self._restart_at[name] = now + delay
                log.warning("%s; starting it again in %.1fs", _ended(name, proc.returncode, logfile), delay)
            if now < self._restart_at[name] or self._stopping.is_set():
                continue
            del self._restart_at[name]
            new = self._spawn_streams()  # (the one supervised child)
            self.restarts[name] = self.restarts.get(name, 0) + 1
            lines.append(f"{name} started again (pid {new.pid}, restart {self.restarts[name]})")
        return lines

    def _supervise_loop(self) -> None:
        while not self._stopping.wait(SUPERVISE_EVERY_S):
            try:
                self.supervise()
            except Exception:  # a failed restart is tried again on the next look
                log.exception("supervising the stack's children")

    def _start_simulator(self) -> str:
        port = free_port()
        proc = self._spawn(
            "simulator",
            [
                "simulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--seed",
                str(self.base.simulator_seed),
                *(["--config", str(self.base.simulator_config)] if self.base.simulator_config else []),
            ],
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(_ended("exchange simulator", proc.returncode, self.procs["simulator"][1]))
            try:
                with urllib.request.urlopen(f"{url}/api/v3/ping", timeout=1) as resp:
                    if resp.status == 200:
                        return url
            except OSError:
                time.sleep(0.1)
        logfile = self.procs["simulator"][1]
        raise StackError(f"exchange simulator did not answer on {url} within 30s (log: {logfile})")

    def failure(self) -> str | None:
        """One line saying what broke, or None: the broker not answering (for ``KAFKA_UNAVAILABLE_S``;
        at once when the embedded broker's process is gone), else a child process that exited."""
        line = self.health.failure() if self.health is not None else None
        if line is not None:
            return line
        for name, (proc, logfile) in list(self.procs.items()):
            if name not in SUPERVISED and proc.poll() is not None:
                return _ended(name, proc.returncode, logfile)
        return None

    def check(self) -> None:
        """Raise :class:`StackError` (one line) if the broker is gone or a child process has died."""
        line = self.failure()
        if line is not None:
            raise StackError(line)

    def stop(self) -> None:
        self._stopping.set()  # no restart while (and after) the children are stopped
        if self._supervisor is not None:
            self._supervisor.join(timeout=10)
            self._supervisor = None
        # A child that talks to a broker that is gone cannot hand anything back: do not wait long.
        grace = 20.0 if self.failure() is None else 3.0
        for _name, (proc, _) in reversed(list(self.procs.items())):
            if proc.poll() is None:
                proc.terminate()
        for name, (proc, _) in self.procs.items():
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop on SIGTERM; killing it", name)
                proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
