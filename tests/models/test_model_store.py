"""The model store contract, run against the local directory store and the MinIO adapter.

The MinIO adapter talks to a real S3-compatible server: moto's server, started on loopback by the
``s3_endpoint`` fixture (one per module) and stopped at the end; each test gets its own bucket.
Objects are corrupted "behind the store's back" through boto3, an independent S3 client.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import torch
from moto.server import ThreadedMotoServer

from streamforge_pipelines.models import (
    LocalModelStore,
    ModelIntegrityError,
    ModelNotFound,
    ModelStore,
    ModelStoreError,
    from_settings,
    save_and_register,
    state_dict_from_bytes,
    state_dict_to_bytes,
)
from streamforge_pipelines.models.minio_store import MinioModelStore
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.store import SqliteStore

ACCESS_KEY = "sf-test-access-AKIA0000"
SECRET_KEY = "sf-test-secret-4f9c2b7e1d"
_buckets = itertools.count()

CONFIG = {"hidden": 32, "layers": 2, "lr": 0.001, "seed": 7}
METRICS = {
    "gnn": {"accuracy": 0.58, "mcc": 0.16, "f1": 0.57},
    "majority": {"accuracy": 0.51, "mcc": 0.0, "f1": 0.0},
}
DATA_RANGE = {"start": "2024-08-01T00:00:00+00:00", "end": "2024-08-08T00:00:00+00:00", "snapshots": 168}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a moto S3 server running in this process."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )


@dataclass
class Backend:
    store: ModelStore
    #: Replace a stored object of a version (``model.pt`` / ``manifest.json``) with other bytes.
    overwrite: Callable[[str, str, str, bytes], None]
    scheme: str


@pytest.fixture(params=["local", "minio"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        root = tmp_path / "models"

        def overwrite_local(name: str, version: str, filename: str, data: bytes) -> None:
            (root / name / version).mkdir(parents=True, exist_ok=True)
            (root / name / version / filename).write_bytes(data)

        return Backend(LocalModelStore(root), overwrite_local, "file")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = f"sf-models-{next(_buckets)}"
    s3 = _s3(endpoint)

    def overwrite_s3(name: str, version: str, filename: str, data: bytes) -> None:
        s3.put_object(Bucket=bucket, Key=f"models/{name}/{version}/{filename}", Body=data)

    store = MinioModelStore(endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, bucket=bucket)
    return Backend(store, overwrite_s3, "s3")


def test_round_trip_bytes_and_manifest(backend: Backend) -> None:
    store = backend.store
    payload = bytes(range(256)) * 40
    before = datetime.now(UTC)
    ref = store.save(
        "gnn", payload, config=CONFIG, metrics=METRICS, data_range=DATA_RANGE, code_version="git:v1-2-gabc"
    )
    after = datetime.now(UTC)
    assert ref.uri.startswith(f"{backend.scheme}://") and ref.uri.endswith(f"/gnn/{ref.version}")
    data, manifest = store.load(ref.uri)
    assert data == payload
    assert manifest == ref.manifest
    assert (manifest.name, manifest.version, manifest.uri) == ("gnn", ref.version, ref.uri)
    assert manifest.config == CONFIG and manifest.metrics == METRICS and manifest.data_range == DATA_RANGE
    assert manifest.code_version == "git:v1-2-gabc"
    assert manifest.size_bytes == len(payload)
    import hashlib

    assert manifest.sha256 == hashlib.sha256(payload).hexdigest()
    assert ref.version.endswith("-" + manifest.sha256[:8])
    created = datetime.fromisoformat(manifest.created_at)
    assert created.tzinfo is not None and before <= created <= after  # stamped during save()
    assert store.manifest(ref.uri) == manifest
    assert store.load(ref.uri + "/model.pt")[0] == payload  # the payload's own URI is accepted too
    # A (start, end) pair and a default code version.
    ref2 = store.save("gnn", b"x", data_range=(datetime(2024, 8, 1, tzinfo=UTC), "2024-08-02"))
    assert ref2.manifest.data_range["end"] == "2024-08-02"
    assert ref2.manifest.data_range["start"].startswith("2024-08-01T00:00:00")
    assert ref2.manifest.code_version.startswith(("git:", "streamforge=="))


def test_torch_state_dict_round_trip(backend: Backend) -> None:
    torch.manual_seed(3)
    model = torch.nn.Linear(4, 2)
    ref = backend.store.save("linear", state_dict_to_bytes(model.state_dict()), config={"in": 4, "out": 2})
    data, manifest = backend.store.load(ref.uri)
    clone = torch.nn.Linear(manifest.config["in"], manifest.config["out"])
    assert not torch.equal(clone.weight, model.weight)
    clone.load_state_dict(state_dict_from_bytes(data))
    x = torch.randn(5, 4)
    assert torch.equal(clone(x), model(x))
    assert set(state_dict_from_bytes(data)) == {"weight", "bias"}


def test_versions_never_overwrite_and_list_in_save_order(backend: Backend) -> None:
    store = backend.store
    refs = [store.save("gnn", b"same payload", config={"i": i}) for i in range(4)]
    versions = [r.version for r in refs]
    assert len(set(versions)) == 4 and versions == sorted(versions)  # same hash, still distinct
    listed = store.list("gnn")
    assert [r.version for r in listed] == versions
    assert [r.manifest.config["i"] for r in listed] == [0, 1, 2, 3]
    assert store.latest("gnn") is not None and store.latest("gnn").version == versions[-1]  # type: ignore[union-attr]
    assert store.list("other") == [] and store.latest("other") is None

    # A clock that hands out a time already used: the save must not replace that version.
    t0 = datetime(2030, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    times = iter([t0, t0, t0 + timedelta(microseconds=1)])
    store._next_time = lambda: next(times)  # type: ignore[method-assign]
    first = store.save("clash", b"payload", config={"n": 1})
    second = store.save("clash", b"payload", config={"n": 2})
    assert first.version == "20300102T030405600000Z-" + first.manifest.sha256[:8]
    assert second.version == "20300102T030405600001Z-" + first.manifest.sha256[:8]
    assert store.load(first.uri)[1].config == {"n": 1}
    assert [r.manifest.config["n"] for r in store.list("clash")] == [1, 2]


def test_corrupt_payload_is_detected_on_load(backend: Backend) -> None:
    store = backend.store
    ref = store.save("gnn", b"\x00" * 1000, metrics=METRICS)
    backend.overwrite("gnn", ref.version, "model.pt", b"\x00" * 999 + b"\x01")
    with pytest.raises(ModelIntegrityError, match=r"sha256 .* does not match the manifest"):
        store.load(ref.uri)
    assert store.manifest(ref.uri).metrics == METRICS  # the manifest itself is still readable
    backend.overwrite("gnn", ref.version, "manifest.json", b"{not json")
    with pytest.raises(ModelStoreError, match="unreadable manifest"):
        store.load(ref.uri)


def test_missing_and_foreign_uris(backend: Backend) -> None:
    store = backend.store
    ref = store.save("gnn", b"abc")
    missing = ref.uri.replace(ref.version, "20000101T000000000000Z-00000000")
    with pytest.raises(ModelNotFound):
        store.load(missing)
    foreign = "file:///elsewhere/gnn/" + ref.version if backend.scheme == "s3" else "s3://b/models/gnn/x"
    with pytest.raises(ModelStoreError):
        store.load(foreign)
    with pytest.raises(ModelStoreError, match="bad version"):
        store.load(ref.uri.replace(ref.version, "latest"))
    for bad in ("../escape", "a/b", "", "x" * 65):
        with pytest.raises(ValueError, match="invalid model name"):
            store.save(bad, b"abc")
    with pytest.raises(TypeError, match="payload must be bytes"):
        store.save("gnn", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(ModelStoreError, match="not JSON-serialisable"):
        store.save("gnn", b"abc", config={"f": object()})


def test_delete_and_half_written_versions(backend: Backend) -> None:
    store = backend.store
    keep, drop = store.save("gnn", b"keep"), store.save("gnn", b"drop")
    store.delete(drop.uri)
    store.delete(drop.uri)  # already gone: no error
    assert [r.version for r in store.list("gnn")] == [keep.version]
    with pytest.raises(ModelNotFound):
        store.load(drop.uri)
    # A payload without its manifest (a save that crashed half-way) is not a version.
    backend.overwrite("gnn", "20990101T000000000000Z-deadbeef", "model.pt", b"orphan")
    assert [r.version for r in store.list("gnn")] == [keep.version]


def test_registry_record_written_beside_the_model(backend: Backend, tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "store.sqlite") as db:
        ref = save_and_register(
            backend.store, db, "gnn", b"weights", config=CONFIG, metrics=METRICS, data_range=DATA_RANGE
        )
        save_and_register(backend.store, db, "mlp", b"other", metrics={"mlp": {"mcc": 0.01}})
        records = db.list_model_records("gnn")
    assert records == [ref.record()]
    record = records[0]
    assert (record.name, record.version, record.uri) == ("gnn", ref.version, ref.uri)
    assert record.metrics == METRICS and record.data_range == DATA_RANGE
    assert record.code_version == ref.manifest.code_version and record.created_at == ref.manifest.created_at
    assert record.sha256 == ref.manifest.sha256
    assert backend.store.load(record.uri)[0] == b"weights"


def test_from_settings_chooses_the_adapter(tmp_path: Path, s3_endpoint: str) -> None:
    local = from_settings(Settings.from_env({"STREAMFORGE_DATA_DIR": str(tmp_path)}))
    assert isinstance(local, LocalModelStore) and local.root == (tmp_path / "models").resolve()
    env = {
        "STREAMFORGE_DATA_DIR": str(tmp_path),
        "MINIO_ENDPOINT": s3_endpoint,
        "MINIO_ACCESS_KEY": ACCESS_KEY,
        "MINIO_SECRET_KEY": SECRET_KEY,
        "MINIO_BUCKET": "sf-from-settings",
    }
    remote = from_settings(Settings.from_env(env))
    assert isinstance(remote, MinioModelStore)
    assert (remote.endpoint, remote.secure, remote.bucket) == (s3_endpoint[7:], False, "sf-from-settings")
    ref = remote.save("gnn", b"via settings")
    assert ref.uri.startswith("s3://sf-from-settings/models/gnn/")
    _s3(s3_endpoint).head_bucket(Bucket="sf-from-settings")  # created on first use
    assert remote.load(ref.uri)[0] == b"via settings"
    host_only = from_settings(Settings.from_env({**env, "MINIO_ENDPOINT": "minio.example:9000"}))
    assert isinstance(host_only, MinioModelStore) and not host_only.secure
    tls = from_settings(
        Settings.from_env({**env, "MINIO_ENDPOINT": "minio.example:9000", "MINIO_SECURE": "1"})
    )
    assert isinstance(tls, MinioModelStore) and tls.secure
    https = from_settings(Settings.from_env({**env, "MINIO_ENDPOINT": "https://minio.example"}))
    assert isinstance(https, MinioModelStore) and https.secure and https.endpoint == "minio.example"
    with pytest.raises(ModelStoreError, match="MINIO_ENDPOINT"):
        from_settings(Settings.from_env({**env, "MINIO_ENDPOINT": "ftp://minio.example"}))
    assert Settings.from_env(Settings.from_env(env).to_env()) == Settings.from_env(env)


def test_secrets_never_in_repr_or_logs(
    tmp_path: Path, s3_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    env = {
        "MINIO_ENDPOINT": s3_endpoint,
        "MINIO_ACCESS_KEY": ACCESS_KEY,
        "MINIO_SECRET_KEY": SECRET_KEY,
        "MINIO_BUCKET": "sf-secrets",
    }
    settings = Settings.from_env(env)
    redacted = settings.redacted()
    assert redacted["minio_secret_key"] == "***" and redacted["minio_access_key"] == "***"
    store = from_settings(settings)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger().debug("settings %s store %r", redacted, store)
        ref = store.save("gnn", b"secret-free", metrics=METRICS)
        store.load(ref.uri)
        store.list("gnn")
        with pytest.raises(ModelNotFound) as missing:
            store.load(ref.uri.replace(ref.version, "20000101T000000000000Z-00000000"))
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # real client logs were checked
    for text in (repr(settings), str(settings), repr(store), caplog.text, str(missing.value), str(ref)):
        assert SECRET_KEY not in text and ACCESS_KEY not in text
    wrong = MinioModelStore(s3_endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, bucket="no-such-bkt")
    assert wrong.list("gnn") == []
