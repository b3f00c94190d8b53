"""The local-directory model store (the embedded default): ``<root>/<name>/<version>/``.

Each version directory holds ``model.pt`` and ``manifest.json``. A save writes both into a hidden
temporary directory next to it (each file flushed and fsynced), then renames that directory to the
version's name: the rename is atomic, so a reader sees either the whole version or nothing, and a
crash leaves at most a ``.tmp-*`` directory that listing ignores. An existing version is never
replaced (the rename is refused and the save takes the next version). URIs are ``file://`` URIs of
the version directory.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

from streamforge_pipelines.models.base import (
    MANIFEST_NAME,
    PAYLOAD_NAME,
    ModelManifest,
    ModelNotFound,
    ModelStore,
    ModelStoreError,
    validate_model_name,
)


class LocalModelStore(ModelStore):
    """Model versions under ``root`` (created on first save)."""

    def __init__(self, root: str | Path) -> None:
        super().__init__()
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalModelStore({str(self.root)!r})"

    def uri_of(self, name: str, version: str) -> str:
        return (self.root / name / version).as_uri()

    def parse_uri(self, uri: str) -> tuple[str, str]:
        parsed = urlparse(uri)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            raise ModelStoreError(f"{uri!r} is not a file:// URI of the local model store at {self.root}")
        path = Path(unquote(parsed.path))
        if path.name in (PAYLOAD_NAME, MANIFEST_NAME):
            path = path.parent
        if path.parent.parent != self.root:
            raise ModelStoreError(f"{uri!r} is not in the local model store at {self.root}")
        return self._split_version_path(path.parent.name, path.name, uri)

    def delete(self, uri: str) -> None:
        name, version = self.parse_uri(uri)
        shutil.rmtree(self.root / name / version, ignore_errors=True)

    # -- adapter -------------------------------------------------------------------------------

    def _write_version(self, name: str, version: str, payload: bytes, manifest: ModelManifest) -> bool:
        model_dir = self.root / validate_model_name(name)
        final = model_dir / version
        if final.exists():
            return False
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = model_dir / f".tmp-{version}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            _write_file(tmp / PAYLOAD_NAME, payload)
            _write_file(tmp / MANIFEST_NAME, manifest.to_json())
            try:
                # os.rename onto an existing non-empty directory fails (ENOTEMPTY/EEXIST): never replaces.
                os.rename(tmp, final)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    return False
                raise
            _fsync_dir(model_dir)
        except OSError as exc:
            raise ModelStoreError(f"cannot save model {name!r} under {self.root}: {exc}") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return True

    def _read(self, name: str, version: str, filename: str) -> bytes:
        path = self.root / name / version / filename
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ModelNotFound(
                f"no model version {self.uri_of(name, version)} ({filename} missing)"
            ) from None
        except OSError as exc:
            raise ModelStoreError(f"cannot read {path}: {exc}") from exc

    def _read_manifest(self, name: str, version: str) -> ModelManifest:
        return ModelManifest.from_json(self._read(name, version, MANIFEST_NAME), self.uri_of(name, version))

    def _read_payload(self, name: str, version: str) -> bytes:
        return self._read(name, version, PAYLOAD_NAME)

    def _versions(self, name: str) -> list[str]:
        model_dir = self.root / name
        if not model_dir.is_dir():
            return []
        return [
            p.name
            for p in model_dir.iterdir()
            if not p.name.startswith(".") and (p / MANIFEST_NAME).is_file()
        ]


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
