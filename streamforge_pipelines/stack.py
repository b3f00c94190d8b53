"""The local stack: whatever the settings leave unset, started on loopback as child processes.

* no ``KAFKA_BOOTSTRAP_SERVERS`` → the embedded Tansu broker, and the StreamForge topics on it;
* no ``EXCHANGE_URL`` → the exchange simulator (``streamforge simulator``);
* ``connector=True`` → one ``arango-connector`` worker (``streamforge worker connector``).

With everything configured (production), nothing is started and only the topics are ensured.
``streamforge run``, ``streamforge dev`` and the end-to-end tests all use this one module.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from .embedded.broker import EmbeddedBroker
from .kafka_admin import ensure_topics_sync
from .settings import Settings

log = logging.getLogger(__name__)


class StackError(RuntimeError):
    """A part of the local stack did not come up; the message says which and why."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Stack:
    """``with Stack(settings) as stack: stack.settings`` — settings with every address filled in."""

    def __init__(self, settings: Settings, *, connector: bool = True, log_dir: Path | None = None) -> None:
        self.base = settings
        self.settings = settings
        self.want_connector = connector
        self.log_dir = Path(log_dir or settings.data_dir / "logs")
        self.broker: EmbeddedBroker | None = None
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self.connector_metrics_url: str | None = None

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Settings:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.base.data_dir.mkdir(parents=True, exist_ok=True)
        updates: dict[str, object] = {}
        try:
            if self.base.kafka_bootstrap_servers is None:
                self.broker = EmbeddedBroker(log_dir=self.log_dir)
                self.broker.start()
                updates["kafka_bootstrap_servers"] = self.broker.bootstrap_servers
            if self.base.exchange_url is None:
                updates["exchange_url"] = self._start_simulator()
            self.settings = self.base.model_copy(update=updates)
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
        except BaseException:
            self.stop()
            raise
        return self.settings

    def _spawn(
        self, name: str, args: list[str], extra_env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        logfile = self.log_dir / f"{name}.log"
        env = {**os.environ, **self.settings.to_env(), **(extra_env or {})}
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamforge_pipelines.cli", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.procs[name] = (proc, logfile)
        log.info("started %s (pid %s), log %s", name, proc.pid, logfile)
        return proc

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
                raise StackError(
                    f"exchange simulator exited with {proc.returncode}:\n{_tail(self.procs['simulator'][1])}"
                )
            try:
                with urllib.request.urlopen(f"{url}/api/v3/ping", timeout=1) as resp:
                    if resp.status == 200:
                        return url
            except OSError:
                time.sleep(0.1)
        raise StackError(
            f"exchange simulator did not answer on {url} within 30s:\n{_tail(self.procs['simulator'][1])}"
        )

    def check(self) -> None:
        """Raise :class:`StackError` if a child process has died."""
        for name, (proc, logfile) in self.procs.items():
            if proc.poll() is not None:
                raise StackError(f"{name} exited with {proc.returncode}:\n{_tail(logfile)}")

    def stop(self) -> None:
        for _name, (proc, _) in reversed(list(self.procs.items())):
            if proc.poll() is None:
                proc.terminate()
        for name, (proc, _) in self.procs.items():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop on SIGTERM; killing it", name)
                proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
