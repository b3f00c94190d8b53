"""The ``settings`` resource: the deployment's :class:`~streamforge_pipelines.settings.Settings`.

Every field is optional: unset means "take it from the environment" (the README's settings table,
read by the same :meth:`Settings.from_env` every worker uses), so the same definitions run on the
embedded stack and in production, switched by configuration only. The fields are the ones worth
seeing and overriding in the UI (where the services are); everything else comes from the
environment. The settings are resolved once when a run's step or a sensor tick starts, here and
nowhere else in the Dagster layer.

Secrets (``ARANGO_PASSWORD``, ``MINIO_ACCESS_KEY``, ``MINIO_SECRET_KEY``) are configured as
``dg.EnvVar`` references (:func:`secret_refs`): Dagster shows the variable's name, never its value.
``streamforge run`` does not use this resource: it hands Dagster the Settings object of the stack it
started (:func:`~streamforge_pipelines.resources.resources_for`).
"""

from typing import Any

import dagster as dg
from pydantic import Field

from ..settings import ENV_VARS, Settings

#: Settings field -> its environment variable.
_VAR_OF: dict[str, str] = {field: var for var, (field, _) in ENV_VARS.items()}
#: The settings that are secrets: configured as references to their environment variables only.
SECRETS: tuple[str, ...] = ("arango_password", "minio_access_key", "minio_secret_key")


def _field(name: str) -> Any:
    """An optional config field described as its setting is in the README's table."""
    var = _VAR_OF[name]
    return Field(default=None, description=f"{ENV_VARS[var][1]}. Unset = ${var}")


class SettingsResource(dg.ConfigurableResource[Settings]):
    """Where StreamForge's services are; unset fields come from the environment (README: Settings)."""

    data_dir: str | None = _field("data_dir")
    kafka_bootstrap_servers: str | None = _field("kafka_bootstrap_servers")
    topic_control: str | None = _field("topic_control")
    topic_events: str | None = _field("topic_events")
    topic_candles: str | None = _field("topic_candles")
    topic_candles_usdm: str | None = _field("topic_candles_usdm")
    topic_trades: str | None = _field("topic_trades")
    arango_url: str | None = _field("arango_url")
    arango_db: str | None = _field("arango_db")
    arango_username: str | None = _field("arango_username")
    arango_password: str | None = _field("arango_password")
    exchange_url: str | None = _field("exchange_url")
    minio_endpoint: str | None = _field("minio_endpoint")
    minio_bucket: str | None = _field("minio_bucket")
    minio_access_key: str | None = _field("minio_access_key")
    minio_secret_key: str | None = _field("minio_secret_key")

    def create_resource(self, context: dg.InitResourceContext) -> Settings:
        """The environment's settings with this resource's explicit values on top (config resolved:
        an ``EnvVar`` is its value by now)."""
        overrides = {name: getattr(self, name) for name in type(self).model_fields}
        return Settings.from_env(**{k: v for k, v in overrides.items() if v is not None})


def secret_refs() -> dict[str, dg.EnvVar]:
    """The secrets set in this environment, as ``dg.EnvVar`` references for :class:`SettingsResource`.

    An unset secret is left out rather than referenced: Dagster fails a run whose ``EnvVar`` is not
    set, and the embedded stack has no secrets at all.
    """
    refs = {name: dg.EnvVar(_VAR_OF[name]) for name in SECRETS}
    return {name: ref for name, ref in refs.items() if ref.get_value()}
