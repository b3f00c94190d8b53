"""Dagster resources: the deployment's settings, and the live clients built from them.

* ``settings`` — :class:`~streamforge_pipelines.settings.Settings`, resolved once per step or tick
  (:class:`SettingsResource`: the environment with explicit config on top, secrets as ``dg.EnvVar``);
* ``store`` — an open :class:`~streamforge_pipelines.store.Store` (:class:`StoreResource`);
* ``models`` — the :class:`~streamforge_pipelines.models.ModelStore` (:class:`ModelStoreResource`);
* ``loaders`` — how a step runs its loaders (:class:`LoaderResource`).

:func:`resources_for` builds them, from the environment (``dagster dev``, the daemon, a code server)
or from a Settings object (``streamforge run`` hands over the stack it started: nothing goes through
``os.environ``).
"""

from typing import Any

from ..settings import Settings
from .clients import ModelStoreResource, StoreResource
from .loaders import LoaderResource
from .settings import SECRETS, SettingsResource, secret_refs

__all__ = [
    "SECRETS",
    "LoaderResource",
    "ModelStoreResource",
    "SettingsResource",
    "StoreResource",
    "resources_for",
    "secret_refs",
]


def resources_for(settings: Settings | None = None) -> dict[str, Any]:
    """The resources of the definitions.

    With ``settings``, that object as it is (Dagster wraps a plain value as a resource): the runs see
    exactly the settings of the caller's stack. Without, a :class:`SettingsResource` that reads the
    environment when a step or tick starts, with the secrets set there as ``dg.EnvVar`` references.
    """
    source: Settings | SettingsResource = (
        settings if settings is not None else SettingsResource(**secret_refs())
    )
    return {
        "settings": source,
        "store": StoreResource(settings=source),
        "models": ModelStoreResource(settings=source),
        "loaders": LoaderResource(),
    }
