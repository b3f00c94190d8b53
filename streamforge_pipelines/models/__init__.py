"""The model store: trained models with their manifests, in a local directory or in MinIO.

:func:`from_settings` picks the adapter from configuration: :class:`MinioModelStore` when
``MINIO_ENDPOINT`` is set, else :class:`LocalModelStore` under ``STREAMFORGE_DATA_DIR/models``.
:func:`save_and_register` saves a model and writes its registry record into the store
(:meth:`Store.put_model_record`). The MinIO adapter (and minio-py) is imported lazily.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from streamforge_pipelines.models.base import (
    DataRange,
    ModelIntegrityError,
    ModelManifest,
    ModelNotFound,
    ModelRef,
    ModelStore,
    ModelStoreError,
    detect_code_version,
    state_dict_from_bytes,
    state_dict_to_bytes,
    validate_model_name,
)
from streamforge_pipelines.models.local import LocalModelStore

if TYPE_CHECKING:
    from streamforge_pipelines.models.minio_store import MinioModelStore
    from streamforge_pipelines.settings import Settings
    from streamforge_pipelines.store.base import Store

__all__ = [
    "DataRange",
    "LocalModelStore",
    "MinioModelStore",
    "ModelIntegrityError",
    "ModelManifest",
    "ModelNotFound",
    "ModelRef",
    "ModelStore",
    "ModelStoreError",
    "detect_code_version",
    "from_settings",
    "save_and_register",
    "state_dict_from_bytes",
    "state_dict_to_bytes",
    "validate_model_name",
]


def from_settings(settings: Settings) -> ModelStore:
    """The model store the settings describe: MinIO when ``MINIO_ENDPOINT`` is set, else the local
    directory ``STREAMFORGE_DATA_DIR/models``."""
    if settings.minio_endpoint:
        from streamforge_pipelines.models.minio_store import MinioModelStore

        return MinioModelStore(
            settings.minio_endpoint,
            access_key=settings.minio_access_key,
            secret_key=settings.minio_secret_key,
            bucket=settings.minio_bucket,
            secure=settings.minio_secure,
        )
    return LocalModelStore(settings.models_dir)


def save_and_register(
    model_store: ModelStore,
    store: Store,
    name: str,
    payload: bytes,
    *,
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    data_range: DataRange | None = None,
    code_version: str | None = None,
) -> ModelRef:
    """Save a model version in ``model_store`` and put its registry record into ``store``."""
    ref = model_store.save(
        name, payload, config=config, metrics=metrics, data_range=data_range, code_version=code_version
    )
    store.put_model_record(ref.record())
    return ref


def __getattr__(name: str) -> Any:
    if name == "MinioModelStore":
        from streamforge_pipelines.models.minio_store import MinioModelStore

        return MinioModelStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
