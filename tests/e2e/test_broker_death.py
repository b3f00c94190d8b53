"""The broker dies in the middle of ``streamforge run``: one clear line, exit 1, and the summary of
what arrived.

The run starts its own embedded broker (no ``KAFKA_BOOTSTRAP_SERVERS``), the simulator and the
connector, and loads 60 days of 1m candles from REST. Once the progress lines show candles stored,
the test SIGKILLs the broker process (a child of the run). The run must end within 15 s — the
acceptance's bound on noticing and reporting, a deadline against a hang, not a performance figure —
with exit status 1, one ``error: broker 127.0.0.1:<port> is not answering (...)`` line on stderr
and no traceback, and still print its ``--json`` summary, whose stored count is what the store
file really holds.
"""

from __future__ import annotations

import json
import os
import queue
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streamforge_pipelines.settings import ENV_VARS

#: The acceptance's bound on the run's answer after the broker died.
ANSWER_WITHIN_S = 15.0
#: Bound on the wait for the load to get going (starting the stack, Dagster, the first pages).
START_WITHIN_S = 180.0
_STORED = re.compile(r"^progress: loaded \d+/\d+, stored (\d+)/")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out.extend(int(c) for c in text)
    return out


def _broker_of(pid: int) -> tuple[int, int]:
    """PID and port of the embedded broker the run started (its child named ``tansu``)."""
    for child in _children(pid):
        try:
            comm = Path(f"/proc/{child}/comm").read_text().strip()
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if comm == "tansu":
            url = argv[argv.index(b"--listener-url") + 1].decode()
            return child, int(url.rsplit(":", 1)[1])
    raise AssertionError(f"no tansu child of the run (pid {pid}): {_children(pid)}")


def _stored_in(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute(
            "SELECT COUNT(*) FROM candles WHERE interval = '1m' AND open_time >= ? AND open_time < ?",
            (1722470400000, 1727654400000),  # 2024-08-01 .. 2024-09-29 inclusive
        ).fetchone()
    return int(n)


def test_broker_killed_mid_load(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update({"STREAMFORGE_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "dagster")})
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamforge_pipelines.cli",
            "run",
            "--start",
            "2024-08-01",
            "--end",
            "2024-09-29",
            "--interval",
            "1m",
            "--source",
            "rest",
            "--no-analytics",
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    stderr: list[str] = []

    def read_stderr() -> None:
        assert run.stderr is not None
        for line in run.stderr:
            stderr.append(line.rstrip("\n"))
            lines.put(line)
        lines.put(None)

    stdout: list[str] = []

    def read_stdout() -> None:
        assert run.stdout is not None
        stdout.append(run.stdout.read())

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    out_reader = threading.Thread(target=read_stdout, daemon=True)
    out_reader.start()
    try:
        deadline = time.monotonic() + START_WITHIN_S
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no candle stored within {START_WITHIN_S:.0f}s: {stderr[-5:]}")
            if line is None:
                pytest.fail(f"the run ended before the broker was killed: {stderr[-5:]}")
            found = _STORED.match(line)
            if found and int(found.group(1)) > 0:
                break
        broker_pid, port = _broker_of(run.pid)
        os.kill(broker_pid, 9)
        try:
            run.wait(timeout=ANSWER_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no answer within {ANSWER_WITHIN_S:.0f}s of the broker's death: {stderr[-5:]}")
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    reader.join(10)
    out_reader.join(10)

    assert run.returncode == 1
    assert not any("Traceback" in line for line in stderr), "\n".join(stderr)
    errors = [line for line in stderr if not line.startswith("progress: ")]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"error: broker 127.0.0.1:{port} is not answering ("), errors[0]

    summary = json.loads("".join(stdout))
    assert summary["ok"] is False
    assert summary["error"] == errors[0].removeprefix("error: ")
    assert summary["expected_candles"] == 10 * 60 * 1440  # the universe, 60 days of 1m
    stored = _stored_in(tmp_path / "data" / "streamforge.db")
    assert 0 < summary["stored_candles"] == stored < summary["expected_candles"]
    assert summary["missing_candles"] == summary["expected_candles"] - stored


@pytest.mark.parametrize(
    ("worker", "ready"),
    [("connector", "connector arango-connector__"), ("loader", "loader-producer serving")],
)
def test_a_worker_stops_with_one_line_when_its_broker_dies(tmp_path: Path, worker: str, ready: str) -> None:
    """A standalone worker (connector, loader-producer) whose broker dies exits 1 with one line."""
    from streamforge_pipelines.embedded.broker import EmbeddedBroker

    broker = EmbeddedBroker(log_dir=tmp_path)
    broker.start()
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(
        {
            "STREAMFORGE_DATA_DIR": str(tmp_path / "data"),
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "KAFKA_UNAVAILABLE_S": "2",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamforge_pipelines.cli", "worker", worker],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr: list[str] = []
    seen = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            stderr.append(line.rstrip("\n"))
            if ready in line:
                seen.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert seen.wait(START_WITHIN_S), f"the {worker} did not start: {stderr[-5:]}"
        port = broker.port
        os.kill(broker.pid or 0, 9)
        try:
            proc.wait(timeout=ANSWER_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the {worker} did not stop within {ANSWER_WITHIN_S:.0f}s of the broker's death")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        broker.stop()
    reader.join(10)
    assert proc.returncode == 1
    assert not any("Traceback" in line for line in stderr), "\n".join(stderr[-20:])
    assert stderr[-1].startswith(f"error: broker 127.0.0.1:{port} is not answering ("), stderr[-3:]
    # aiokafka's retries against the dead broker: once per 10 s, not thousands of lines
    assert sum("Unable connect to node" in line for line in stderr) <= 2
