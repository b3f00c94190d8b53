"""``dagster dev`` for the tests that work as a user does: the webserver and the daemon on a free
loopback port, in a session of their own, waited for until the webserver answers, and ended with
their whole process group (the code servers and the runs they launched included).

Also the helpers those tests share: :func:`tail` (the end of a log, for failure messages) and
:func:`stop_group` (SIGTERM, then SIGKILL, for any process started in a session of its own, such as
a browser).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from streamforge_pipelines.stack import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Bound on ``dagster dev`` answering (its code server loads the definitions first).
SERVER_START_S = 120.0
LOCATION = "streamforge_pipelines.definitions"


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log (what a failure message shows)."""
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _gone_within(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """End the process group of ``proc`` (started in a session of its own): SIGTERM, then SIGKILL.

    The leader is reaped first (the group of an unreaped leader still answers ``killpg``), then the
    rest of the group is waited for; the assertion fails the test if anything of it outlives SIGKILL.
    """
    pgid = proc.pid
    _signal(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    if not _gone_within(pgid, 5.0):
        _signal(pgid, signal.SIGKILL)
    proc.wait(10)
    assert _gone_within(pgid, 10.0), f"processes of group {pgid} outlived SIGKILL"


@contextmanager
def started_dagster_dev(env: Mapping[str, str], log: Path) -> Iterator[str]:
    """``dagster dev -m streamforge_pipelines.definitions`` with ``env`` (its ``DAGSTER_HOME`` and
    the stack's settings): its base URL once the webserver answers; stopped on exit."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port), "-m", LOCATION]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=dict(env), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dagster dev exited with {proc.returncode}:\n{tail(log)}")
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dagster webserver not up on {base} in {SERVER_START_S:.0f}s:\n{tail(log)}")
            time.sleep(0.5)
        yield base
    finally:
        stop_group(proc)
