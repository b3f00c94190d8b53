"""Dagster resources: thin wrappers that turn resource config + environment into :class:`Settings`.

Every field is optional: unset means "take it from the environment" (see the README's settings
table), so the same definitions run on the embedded stack and in production, switched by
configuration only. Secrets such as the ArangoDB password are only ever read from the environment
(or passed as ``dg.EnvVar``), never written here.
"""

from typing import Any, Literal

import dagster as dg

from ..settings import Settings
from ..store import Store, store_from_settings


class KafkaResource(dg.ConfigurableResource):
    """The Kafka cluster and topic names (``KAFKA_*`` variables when unset)."""

    bootstrap_servers: str | None = None
    topic_control: str | None = None
    topic_events: str | None = None
    topic_candles: str | None = None

    def overrides(self) -> dict[str, Any]:
        return {
            "kafka_bootstrap_servers": self.bootstrap_servers,
            "topic_control": self.topic_control,
            "topic_events": self.topic_events,
            "topic_candles": self.topic_candles,
        }


class StoreResource(dg.ConfigurableResource):
    """The document store: ArangoDB when ``arango_url`` / ``ARANGO_URL`` is set, else SQLite."""

    arango_url: str | None = None
    arango_db: str | None = None
    data_dir: str | None = None

    def overrides(self) -> dict[str, Any]:
        return {"arango_url": self.arango_url, "arango_db": self.arango_db, "data_dir": self.data_dir}

    def open(self, settings: Settings) -> Store:
        return store_from_settings(settings)


class ExchangeResource(dg.ConfigurableResource):
    """Binance-compatible REST base URL (``EXCHANGE_URL``)."""

    base_url: str | None = None

    def overrides(self) -> dict[str, Any]:
        return {"exchange_url": self.base_url}


class LoaderResource(dg.ConfigurableResource):
    """How a step runs its loaders: inside the step, or by commands to standalone loader workers."""

    launch: Literal["inprocess", "external"] = "inprocess"
    max_parallel_tasks: int = 4


def resolve_settings(*resources: KafkaResource | StoreResource | ExchangeResource) -> Settings:
    """Environment settings with the resources' explicit values on top."""
    overrides: dict[str, Any] = {}
    for r in resources:
        overrides.update({k: v for k, v in r.overrides().items() if v is not None})
    return Settings.from_env(**overrides)


def default_resources() -> dict[str, Any]:
    """The resources of every deployment; their values come from the environment."""
    return {
        "kafka": KafkaResource(),
        "store": StoreResource(),
        "exchange": ExchangeResource(),
        "loaders": LoaderResource(),
    }
