"""The MinIO model store (minio-py): any S3-compatible server (MinIO, AWS S3, moto in the tests).

Objects: ``models/<name>/<version>/model.pt`` and ``models/<name>/<version>/manifest.json`` in one
bucket (``MINIO_BUCKET``, created on first use). The manifest is written after the payload and so
commits the version: listing shows only versions that have one. A version that exists is never
overwritten (the save checks first and takes the next version otherwise). URIs are
``s3://<bucket>/models/<name>/<version>`` — the standard S3 form, which ``mc``, ``aws s3`` and
boto3 understand given the endpoint; the endpoint itself is configuration (``MINIO_ENDPOINT``), not
part of the URI, so a model keeps its URI when the server moves.

Credentials come from :class:`~streamforge_pipelines.settings.Settings` (``MINIO_ACCESS_KEY``,
``MINIO_SECRET_KEY``, from the environment) and are never logged nor part of ``repr``.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

from streamforge_pipelines.models.base import (
    MANIFEST_NAME,
    PAYLOAD_NAME,
    ModelManifest,
    ModelNotFound,
    ModelStore,
    ModelStoreError,
    validate_model_name,
)

DEFAULT_BUCKET = "streamforge-models"
#: Key prefix of every model object in the bucket.
PREFIX = "models"
_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"})
_BUCKET_TAKEN = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


def split_endpoint(endpoint: str, secure: bool) -> tuple[str, bool]:
    """``host:port`` and whether to use TLS: an ``http://`` / ``https://`` endpoint says so itself."""
    if "://" in endpoint:
        parsed = urlparse(endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.netloc or parsed.path not in ("", "/"):
            raise ModelStoreError(
                f"MINIO_ENDPOINT must be host:port or http(s)://host:port, got {endpoint!r}"
            )
        return parsed.netloc, parsed.scheme == "https"
    return endpoint.rstrip("/"), secure


@contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    try:
        yield
    except S3Error as exc:
        if exc.code in _NOT_FOUND:
            raise ModelNotFound(f"{what}: not found ({exc.code})") from None
        raise ModelStoreError(f"{what} failed: {exc.code}: {exc.message}") from exc
    except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise ModelStoreError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


class MinioModelStore(ModelStore):
    """Model versions in ``bucket`` on the S3-compatible server at ``endpoint``."""

    def __init__(
        self,
        endpoint: str,
        *,
        access_key: str | None,
        secret_key: str | None,
        bucket: str = DEFAULT_BUCKET,
        secure: bool = False,
        region: str | None = None,
    ) -> None:
        super().__init__()
        host, tls = split_endpoint(endpoint, secure)
        self.endpoint = host
        self.secure = tls
        self.bucket = bucket
        self._client = Minio(host, access_key=access_key, secret_key=secret_key, secure=tls, region=region)
        self._credentials = (access_key, secret_key, region)
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    def __repr__(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"MinioModelStore({scheme}://{self.endpoint}, bucket={self.bucket!r})"

    # -- URIs ----------------------------------------------------------------------------------

    def uri_of(self, name: str, version: str) -> str:
        return f"s3://{self.bucket}/{PREFIX}/{name}/{version}"

    def parse_uri(self, uri: str) -> tuple[str, str]:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or parsed.netloc != self.bucket:
            raise ModelStoreError(f"{uri!r} is not an s3://{self.bucket}/ URI of this model store")
        parts = parsed.path.strip("/").split("/")
        if parts and parts[-1] in (PAYLOAD_NAME, MANIFEST_NAME):
            parts = parts[:-1]
        if len(parts) != 3 or parts[0] != PREFIX:
            raise ModelStoreError(
                f"not a model version URI: {uri!r} (expected s3://bucket/{PREFIX}/NAME/VERSION)"
            )
        return self._split_version_path(parts[1], parts[2], uri)

    @staticmethod
    def _key(name: str, version: str, filename: str) -> str:
        return f"{PREFIX}/{name}/{version}/{filename}"

    # -- the bucket ----------------------------------------------------------------------------

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (once per store; a concurrent creator is fine)."""
        if self._bucket_ready:
            return
        with self._bucket_lock, _s3_errors(f"creating bucket {self.bucket!r}"):
            if not self._bucket_ready:
                if not self._client.bucket_exists(self.bucket):
                    try:
                        self._client.make_bucket(self.bucket)
                    except S3Error as exc:
                        if exc.code not in _BUCKET_TAKEN:
                            raise
                self._bucket_ready = True

    def ping(self, timeout_s: float = 5.0) -> None:
        """One request, no retries: :class:`ModelStoreError` when the server does not answer within
        ``timeout_s`` or refuses the credentials (a bucket that does not exist yet is fine)."""
        access_key, secret_key, region = self._credentials
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s), retries=urllib3.Retry(total=0)
        )
        client = Minio(
            self.endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=self.secure,
            region=region,
            http_client=http,
        )
        try:
            with _s3_errors(f"checking bucket {self.bucket!r}"):
                client.bucket_exists(self.bucket)
        finally:
            http.clear()

    # -- adapter -------------------------------------------------------------------------------

    def _exists(self, key: str) -> bool:
        try:
            self._client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in _NOT_FOUND:
                return False
            raise
        return True

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        self._client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)

    def _write_version(self, name: str, version: str, payload: bytes, manifest: ModelManifest) -> bool:
        validate_model_name(name)
        self.ensure_bucket()
        with _s3_errors(f"saving model {self.uri_of(name, version)}"):
            if self._exists(self._key(name, version, MANIFEST_NAME)) or self._exists(
                self._key(name, version, PAYLOAD_NAME)
            ):
                return False
            self._put(self._key(name, version, PAYLOAD_NAME), payload, "application/octet-stream")
            self._put(self._key(name, version, MANIFEST_NAME), manifest.to_json(), "application/json")
        return True

    def _get(self, key: str) -> bytes:
        with _s3_errors(f"reading s3://{self.bucket}/{key}"):
            response = self._client.get_object(self.bucket, key)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

    def _read_manifest(self, name: str, version: str) -> ModelManifest:
        data = self._get(self._key(name, version, MANIFEST_NAME))
        return ModelManifest.from_json(data, self.uri_of(name, version))

    def _read_payload(self, name: str, version: str) -> bytes:
        return self._get(self._key(name, version, PAYLOAD_NAME))

    def _versions(self, name: str) -> list[str]:
        prefix = f"{PREFIX}/{name}/"
        with _s3_errors(f"listing {self.uri_of(name, '')}"):
            if not self._client.bucket_exists(self.bucket):
                return []
            objects = list(self._client.list_objects(self.bucket, prefix=prefix, recursive=True))
        versions = []
        for obj in objects:
            rest = (obj.object_name or "")[len(prefix) :]
            version, _, filename = rest.partition("/")
            if filename == MANIFEST_NAME:
                versions.append(version)
        return versions

    def delete(self, uri: str) -> None:
        name, version = self.parse_uri(uri)
        with _s3_errors(f"deleting {uri}"):
            # The manifest first: a half-deleted version is no longer listed.
            for filename in (MANIFEST_NAME, PAYLOAD_NAME):
                try:
                    self._client.remove_object(self.bucket, self._key(name, version, filename))
                except S3Error as exc:
                    if exc.code not in _NOT_FOUND:
                        raise
