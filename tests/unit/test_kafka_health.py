"""The broker probe and monitor (:mod:`streamforge_pipelines.kafka.health`) against real brokers:
the session's Tansu, one started and SIGKILLed here, a closed port and an HTTP server."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest

from streamforge_pipelines.embedded.broker import EmbeddedBroker
from streamforge_pipelines.kafka import BrokerMonitor, BrokerUnavailable, probe, split_bootstrap
from streamforge_pipelines.stack import free_port

#: Bound on waiting for the monitor's verdict (it probes every 0.1 s here).
VERDICT_WITHIN_S = 30.0


def _wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + VERDICT_WITHIN_S
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {VERDICT_WITHIN_S:.0f}s")
        time.sleep(0.05)


def test_probe_answers_for_a_live_broker(kafka_bootstrap: str) -> None:
    assert probe(kafka_bootstrap) >= 1
    # one dead server in the list does not matter while another answers
    assert probe(f"127.0.0.1:{free_port()},{kafka_bootstrap}") >= 1


def test_probe_names_a_closed_port() -> None:
    port = free_port()
    with pytest.raises(BrokerUnavailable) as err:
        probe(f"127.0.0.1:{port}")
    assert str(err.value) == f"broker 127.0.0.1:{port} is not answering (connection refused)"


def test_probe_refuses_what_is_not_kafka() -> None:
    """A server that answers something else (an HTTP error page) is not a broker."""
    server = socket.create_server(("127.0.0.1", 0))

    def answer_http() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=answer_http, daemon=True)
    thread.start()
    try:
        with pytest.raises(BrokerUnavailable, match=r"is not answering \(not a Kafka answer: implausible"):
            probe(f"127.0.0.1:{server.getsockname()[1]}", timeout_s=5)
    finally:
        thread.join(5)
        server.close()


@pytest.mark.parametrize("bad", ["", "host", "host:", ":9092", "host:99999", "host:port"])
def test_split_bootstrap_refuses_malformed(bad: str) -> None:
    with pytest.raises(ValueError, match="expected host:port"):
        split_bootstrap(bad)


def test_monitor_reports_a_killed_broker(tmp_path) -> None:
    broker = EmbeddedBroker(log_dir=tmp_path)
    broker.start()
    monitor = BrokerMonitor(broker.bootstrap_servers, down_after_s=1.0, interval_s=0.1).start()
    try:
        _wait_for(lambda: monitor._failing_since is None and monitor.down_for == 0.0, "first probe")
        monitor.check()  # healthy: nothing raised
        assert monitor.failure() is None and not monitor.down
        os.kill(broker.pid or 0, signal.SIGKILL)
        _wait_for(lambda: monitor.failure() is not None, "the dead broker reported")
        line = monitor.failure()
        assert line is not None
        assert line.startswith(f"broker {broker.bootstrap_servers} is not answering (connection refused for ")
        with pytest.raises(BrokerUnavailable):
            monitor.check()
        assert monitor.down_for >= 1.0
    finally:
        monitor.stop()
        broker.stop()


def test_monitor_knows_at_once_when_told_the_process_exited(kafka_bootstrap: str) -> None:
    alive = {"yes": True}
    monitor = BrokerMonitor(kafka_bootstrap, down_after_s=60.0, interval_s=0.1)
    monitor.alive = lambda: alive["yes"]
    monitor.start()
    try:
        assert monitor.failure() is None
        alive["yes"] = False
        assert monitor.failure() == f"broker {kafka_bootstrap} is not answering (the embedded broker exited)"
        assert monitor.down
    finally:
        monitor.stop()
