"""Nothing StreamForge starts listens beyond loopback.

The local stack (:class:`~streamforge_pipelines.stack.Stack` with no Kafka configured: the embedded
Tansu broker, the exchange simulator, the connector serving ``/metrics`` on ``METRICS_PORT``), a
standalone loader worker with ``METRICS_PORT`` and a dummy mode with its health server: every TCP
socket any of them (or a child of theirs) listens on is bound to 127.0.0.1 or ::1, and each of
them listens on at least one (so the check cannot pass on processes that listen on nothing).

Listening sockets are read from ``/proc/net/tcp`` and ``/proc/net/tcp6`` (state ``0A``) and mapped
to processes by the socket inodes in ``/proc/<pid>/fd``: no tool needed, Linux only. The reader is
itself checked against a socket this test binds to 0.0.0.0.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamforge_pipelines.settings import ENV_VARS
from streamforge_pipelines.stack import Stack, free_port

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux /proc")

#: Seconds every process gets to open its listening sockets.
LISTEN_WITHIN_S = 60.0
LISTEN = "0A"


def _address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``/proc/net/tcp*``'s ``0100007F`` / 32 hex digits: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def listening_sockets() -> dict[int, tuple[str, int]]:
    """Socket inode -> (address, port) of every listening TCP socket of this network namespace."""
    out: dict[int, tuple[str, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != LISTEN:
                continue
            addr, port = f[1].rsplit(":", 1)
            out[int(f[9])] = (str(_address(addr)), int(port, 16))
    return out


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def process_tree(pid: int) -> set[int]:
    """``pid`` and all its descendants."""
    kids, out, todo = _children(), set(), [pid]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo.extend(kids.get(p, []))
    return out


def listens_of(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` or one of its descendants listens on."""
    sockets = listening_sockets()
    found: list[tuple[str, int]] = []
    for p in process_tree(pid):
        try:
            fds = list(Path(f"/proc/{p}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in sockets:
                    found.append(sockets[inode])
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def test_the_reader_sees_a_socket_open_to_every_interface() -> None:
    """The check below can fail: a socket bound to 0.0.0.0 by this process is found and not loopback."""
    with socket.socket() as wide, socket.socket() as narrow:
        wide.bind(("0.0.0.0", 0))
        wide.listen()
        narrow.bind(("127.0.0.1", 0))
        narrow.listen()
        mine = listens_of(os.getpid())
        assert ("0.0.0.0", wide.getsockname()[1]) in mine
        assert ("127.0.0.1", narrow.getsockname()[1]) in mine
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and is_loopback("::ffff:127.0.0.1")


@pytest.fixture
def started(make_settings, tmp_path: Path) -> Iterator[dict[str, int]]:
    """Name -> pid of every StreamForge process this test starts, all running."""
    settings = make_settings(partitions=1, kafka_bootstrap_servers=None, metrics_port=free_port())
    with Stack(settings) as stack:
        live = stack.settings
        assert stack.broker is not None and stack.broker.pid is not None  # its own broker, not the session's
        base = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
        env = {**base, **live.to_env()}
        extra: list[subprocess.Popen[bytes]] = []
        try:
            ping = ["dummy", "kafka-ping", "--count", "0", "--duration", "120", "--interval", "1"]
            for name, args, more in (
                ("loader", ["worker", "loader"], {"METRICS_PORT": str(free_port())}),
                ("dummy", ping, {}),
            ):
                with open(tmp_path / f"{name}.log", "wb") as log:  # the child keeps its own copy
                    extra.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "streamforge_pipelines.cli", *args],
                            env={**env, **more},
                            stdout=log,
                            stderr=subprocess.STDOUT,
                        )
                    )
            pids = {name: proc.pid for name, (proc, _) in stack.procs.items()}
            pids["broker"] = stack.broker.pid
            pids["loader"], pids["dummy"] = extra[0].pid, extra[1].pid
            yield pids
        finally:
            for proc in extra:
                proc.terminate()
            for proc in extra:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def test_nothing_streamforge_starts_listens_beyond_loopback(started: dict[str, int]) -> None:
    assert {"broker", "simulator", "connector", "loader", "dummy"} <= started.keys()
    listens: dict[str, list[tuple[str, int]]] = {}
    deadline = time.monotonic() + LISTEN_WITHIN_S
    while True:
        listens = {name: listens_of(pid) for name, pid in started.items()}
        if all(listens.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    silent = [name for name, found in listens.items() if not found]
    assert not silent, f"no listening socket within {LISTEN_WITHIN_S}s for {silent}: {listens}"
    wide = {name: [a for a in found if not is_loopback(a[0])] for name, found in listens.items()}
    assert not any(wide.values()), f"listening beyond loopback: {wide}"
