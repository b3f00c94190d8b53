"""The model store interface: save a trained model with its manifest, load it back verified.

A saved model is one **version** of a named model: the payload bytes (a ``torch.save`` of a state
dict, see :func:`state_dict_to_bytes`, or any bytes) and a **manifest** (``manifest.json``) that
records the config, the metrics, the data range it was trained on, the code version, when it was
created and the payload's sha256, which :meth:`ModelStore.load` checks. Versions are
``YYYYMMDDTHHMMSSffffffZ-<8 hex of the payload sha256>``: fixed width, so they sort in save order as
strings, and a store never overwrites one (a collision gets the next microsecond).

Adapters: :class:`~streamforge_pipelines.models.local.LocalModelStore` (a directory, ``file://``
URIs; the embedded default) and :class:`~streamforge_pipelines.models.minio_store.MinioModelStore`
(MinIO or any S3-compatible server, ``s3://bucket/models/<name>/<version>`` URIs).
"""

from __future__ import annotations

import builtins
import hashlib
import io
import re
import subprocess
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from streamforge_pipelines.store import ModelRecord

if TYPE_CHECKING:
    import torch

#: Object names inside a version: the payload and its manifest (written last: it commits the version).
PAYLOAD_NAME = "model.pt"
MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1

#: Model names: path- and key-safe (no ``/``), at most 64 characters.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_VERSION_RE = re.compile(r"\d{8}T\d{12}Z-[0-9a-f]{8}")
_VERSION_TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"

#: A data range: ``{"start": ..., "end": ..., **anything else}``, or a ``(start, end)`` pair.
DataRange = Mapping[str, Any] | tuple[Any, Any]


class ModelStoreError(Exception):
    """A model store operation failed."""


class ModelNotFound(ModelStoreError, KeyError):
    """No model version at that URI."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "model not found"


class ModelIntegrityError(ModelStoreError):
    """The stored payload does not match the sha256 its manifest records (corrupt or tampered)."""


@dataclass(frozen=True)
class ModelManifest:
    """What ``manifest.json`` holds."""

    name: str
    version: str
    uri: str
    created_at: str
    code_version: str
    sha256: str
    size_bytes: int
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    data_range: dict[str, Any] = field(default_factory=dict)
    payload: str = PAYLOAD_NAME
    schema_version: int = MANIFEST_SCHEMA_VERSION

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: bytes, where: str) -> ModelManifest:
        try:
            doc = orjson.loads(data)
            known = {f: doc[f] for f in cls.__dataclass_fields__ if f in doc}
            return cls(**known)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise ModelStoreError(f"unreadable manifest at {where}: {exc}") from exc


@dataclass(frozen=True)
class ModelRef:
    """A saved model version: where it is and its manifest."""

    name: str
    version: str
    uri: str
    manifest: ModelManifest

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest.metrics

    def record(self) -> ModelRecord:
        """The registry record of this version (for :meth:`Store.put_model_record`)."""
        m = self.manifest
        return ModelRecord(
            name=self.name,
            version=self.version,
            uri=self.uri,
            metrics=m.metrics,
            data_range=m.data_range,
            code_version=m.code_version,
            created_at=m.created_at,
            sha256=m.sha256,
        )


class ModelStore(ABC):
    """Saves, lists, loads and deletes model versions. Thread-safe."""

    def __init__(self) -> None:
        self._clock_lock = threading.Lock()
        self._last_time: datetime | None = None

    # -- the interface -------------------------------------------------------------------------

    def save(
        self,
        name: str,
        payload: bytes,
        *,
        config: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        data_range: DataRange | None = None,
        code_version: str | None = None,
    ) -> ModelRef:
        """Store ``payload`` as a new version of ``name`` with its manifest; never overwrites.

        ``config``, ``metrics`` and ``data_range`` must be JSON-serialisable (numpy scalars and
        datetimes are converted); ``code_version`` defaults to :func:`code_version`.
        """
        validate_model_name(name)
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise TypeError(f"payload must be bytes (see state_dict_to_bytes), got {type(payload).__name__}")
        data = bytes(payload)
        digest = hashlib.sha256(data).hexdigest()
        config_doc = _json_dict(config or {}, "config")
        metrics_doc = _json_dict(metrics or {}, "metrics")
        range_doc = _json_dict(_data_range(data_range), "data_range")
        code = code_version if code_version is not None else detect_code_version()
        for _ in range(100):
            created = self._next_time()
            version = f"{created.strftime(_VERSION_TIME_FORMAT)}-{digest[:8]}"
            manifest = ModelManifest(
                name=name,
                version=version,
                uri=self.uri_of(name, version),
                created_at=created.isoformat(timespec="microseconds"),
                code_version=code,
                sha256=digest,
                size_bytes=len(data),
                config=config_doc,
                metrics=metrics_doc,
                data_range=range_doc,
            )
            if self._write_version(name, version, data, manifest):
                return ModelRef(name=name, version=version, uri=manifest.uri, manifest=manifest)
        raise ModelStoreError(f"could not find a free version for model {name!r}")  # pragma: no cover

    def load(self, uri: str) -> tuple[bytes, ModelManifest]:
        """The payload and manifest of the version at ``uri``; :class:`ModelIntegrityError` when the
        payload's sha256 is not the manifest's, :class:`ModelNotFound` when there is no such version."""
        name, version = self.parse_uri(uri)
        manifest = self._read_manifest(name, version)
        data = self._read_payload(name, version)
        actual = hashlib.sha256(data).hexdigest()
        if actual != manifest.sha256 or len(data) != manifest.size_bytes:
            raise ModelIntegrityError(
                f"model {uri}: payload sha256 {actual} ({len(data)} bytes) does not match the manifest's "
                f"{manifest.sha256} ({manifest.size_bytes} bytes): the stored object is corrupt"
            )
        return data, manifest

    def manifest(self, uri: str) -> ModelManifest:
        """The manifest of the version at ``uri`` (the payload is not read)."""
        return self._read_manifest(*self.parse_uri(uri))

    def list(self, name: str) -> list[ModelRef]:
        """Every complete version of ``name`` (those with a manifest), oldest first."""
        validate_model_name(name)
        refs = []
        for version in sorted(self._versions(name)):
            manifest = self._read_manifest(name, version)
            refs.append(ModelRef(name=name, version=version, uri=manifest.uri, manifest=manifest))
        return refs

    def latest(self, name: str) -> ModelRef | None:
        """The newest version of ``name``, or None."""
        versions = sorted(self._versions(validate_model_name(name)))
        if not versions:
            return None
        manifest = self._read_manifest(name, versions[-1])
        return ModelRef(name=name, version=versions[-1], uri=manifest.uri, manifest=manifest)

    @abstractmethod
    def delete(self, uri: str) -> None:
        """Remove the version at ``uri`` (payload and manifest); no error when it is already gone."""

    @abstractmethod
    def uri_of(self, name: str, version: str) -> str:
        """The URI of a version in this store."""

    @abstractmethod
    def parse_uri(self, uri: str) -> tuple[str, str]:
        """``(name, version)`` of a URI of this store (also accepted: the URI of its ``model.pt``
        or ``manifest.json``); :class:`ModelStoreError` for a URI of another store."""

    # -- what an adapter implements ------------------------------------------------------------

    @abstractmethod
    def _write_version(self, name: str, version: str, payload: bytes, manifest: ModelManifest) -> bool:
        """Write payload then manifest; False (nothing written) when ``version`` already exists."""

    @abstractmethod
    def _read_manifest(self, name: str, version: str) -> ModelManifest: ...

    @abstractmethod
    def _read_payload(self, name: str, version: str) -> bytes: ...

    @abstractmethod
    def _versions(self, name: str) -> builtins.list[str]:
        """Versions of ``name`` that have a manifest, any order."""

    # -- helpers -------------------------------------------------------------------------------

    def _next_time(self) -> datetime:
        """Now (UTC, microseconds), strictly after the last time this store handed out."""
        with self._clock_lock:
            now = datetime.now(UTC)
            if self._last_time is not None and now <= self._last_time:
                now = self._last_time + timedelta(microseconds=1)
            self._last_time = now
            return now

    @staticmethod
    def _split_version_path(name: str, version: str, uri: str) -> tuple[str, str]:
        validate_model_name(name)
        if _VERSION_RE.fullmatch(version) is None:
            raise ModelStoreError(f"not a model version URI: {uri!r} (bad version {version!r})")
        return name, version


def validate_model_name(name: str) -> str:
    """``name`` if it is a valid model name (``[A-Za-z0-9][A-Za-z0-9_.-]{0,63}``), else ValueError."""
    if not isinstance(name, str) or _NAME_RE.fullmatch(name) is None or name in {".", ".."}:
        raise ValueError(f"invalid model name {name!r}: must match {_NAME_RE.pattern}")
    return name


def _data_range(value: DataRange | None) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, tuple):
        start, end = value
        return {"start": start, "end": end}
    return dict(value)


def _json_dict(value: Mapping[str, Any], what: str) -> dict[str, Any]:
    try:
        data = orjson.dumps(
            dict(value), option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z
        )
    except TypeError as exc:
        raise ModelStoreError(f"model {what} is not JSON-serialisable: {exc}") from exc
    result: dict[str, Any] = orjson.loads(data)
    return result


@lru_cache(maxsize=1)
def detect_code_version() -> str:
    """``git describe --always --dirty --tags`` of the source checkout, else ``streamforge==<version>``."""
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        try:
            out = subprocess.run(
                ["git", "-C", str(root), "describe", "--always", "--dirty", "--tags"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            if out:
                return f"git:{out}"
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        return f"streamforge=={metadata.version('streamforge')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "unknown"


def state_dict_to_bytes(state_dict: Mapping[str, torch.Tensor]) -> bytes:
    """A state dict as the bytes of ``torch.save`` (tensors moved to the CPU first)."""
    import torch

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buf)
    return buf.getvalue()


def state_dict_from_bytes(data: bytes, map_location: str = "cpu") -> dict[str, torch.Tensor]:
    """The state dict saved by :func:`state_dict_to_bytes` (``weights_only``: no code is unpickled)."""
    import torch

    loaded = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    if not isinstance(loaded, dict):
        raise ModelStoreError(f"payload is not a state dict but a {type(loaded).__name__}")
    return loaded
