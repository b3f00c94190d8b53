"""``streamforge simulator`` as a child process of a test, on a free loopback port."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streamforge_pipelines.stack import free_port

#: Bound on the simulator coming up (it answers /api/v3/ping).
START_WITHIN_S = 60.0


@contextmanager
def simulator_process(log_dir: Path, *args: str) -> Iterator[str]:
    """Start the simulator with ``args`` (e.g. ``--seed 42 --config FILE``), wait until it answers,
    yield its URL; stop it at the end. Its output goes to ``log_dir/simulator.log``, quoted when it
    exits early."""
    port = free_port()
    logfile = log_dir / "simulator.log"
    with open(logfile, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamforge_pipelines.cli", "simulator", "--port", str(port), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_WITHIN_S
        while True:
            assert proc.poll() is None, logfile.read_text()
            try:
                urllib.request.urlopen(f"{url}/api/v3/ping", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (
                    f"the simulator did not come up within {START_WITHIN_S:.0f}s"
                )
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
