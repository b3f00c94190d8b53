"""Resources that yield live clients: the document store and the model store.

A step or a sensor tick asks for ``store: dg.ResourceParam[Store]`` and gets a store that is open
for the step (or the tick) and closed after it, whatever happened; ``models:
dg.ResourceParam[ModelStore]`` is the model store the settings describe (a local directory, or MinIO
/ S3). Both depend on the ``settings`` resource (:mod:`.settings`, or the runner's Settings object),
so no asset or sensor turns configuration into a client itself.

No ``from __future__ import annotations`` in this package: Dagster recognises a nested resource
(``dg.ResourceDependency``) by its annotation object, not by a string.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from ..models import ModelStore, from_settings
from ..settings import Settings
from ..store import Store, store_from_settings


class StoreResource(dg.ConfigurableResource[Store]):
    """The document store (ArangoDB when ``ARANGO_URL`` is set, else SQLite), open while in use."""

    settings: dg.ResourceDependency[Settings]

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[Store]:
        with store_from_settings(self.settings) as db:
            yield db


class ModelStoreResource(dg.ConfigurableResource[ModelStore]):
    """The model store: MinIO / S3 when ``MINIO_ENDPOINT`` is set, else ``<data dir>/models``."""

    settings: dg.ResourceDependency[Settings]

    def create_resource(self, context: dg.InitResourceContext) -> ModelStore:
        return from_settings(self.settings)
