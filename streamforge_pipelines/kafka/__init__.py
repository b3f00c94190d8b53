"""Kafka plumbing for any Kafka-compatible cluster (the embedded Tansu broker, Strimzi).

* :mod:`.admin` — readiness (:func:`wait_ready`) and topics with their partition counts
  (:func:`ensure_topics`, :func:`ensure_topics_sync`);
* :mod:`.health` — is the broker answering? A socket probe and a background :class:`BrokerMonitor`;
* :mod:`.io` — producer settings, bounded client stops, a one-shot task raced against the broker's
  health, and the ``queue-events`` :class:`EventEmitter`.

A layer below the workers, the queue-manager and the Dagster code, above the kernel: it imports
:mod:`streamforge_pipelines.protocol` and nothing else of StreamForge, and never Dagster. (The name
shadows nothing: StreamForge uses aiokafka, and nothing imports a top-level ``kafka`` package.)
"""

from .admin import KafkaNotReadyError, ensure_topics, ensure_topics_sync, wait_ready
from .health import (
    BrokerMonitor,
    BrokerUnavailable,
    monitor,
    not_answering,
    probe,
    probe_server,
    release,
    split_bootstrap,
)
from .io import INTERRUPT_REPORT_S, EventEmitter, make_producer, stop_within, unless_broker_dies

__all__ = [
    "INTERRUPT_REPORT_S",
    "BrokerMonitor",
    "BrokerUnavailable",
    "EventEmitter",
    "KafkaNotReadyError",
    "ensure_topics",
    "ensure_topics_sync",
    "make_producer",
    "monitor",
    "not_answering",
    "probe",
    "probe_server",
    "release",
    "split_bootstrap",
    "stop_within",
    "unless_broker_dies",
    "wait_ready",
]
