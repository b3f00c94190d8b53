"""No secret reaches a log line: URL credentials and the secret settings' values are redacted by the
handler :func:`~streamforge_pipelines.workers.observability.configure_logging` installs, for every
logger (third-party ones included), in the message, its arguments, ``extra=`` fields and tracebacks."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from streamforge_pipelines.settings import Settings
from streamforge_pipelines.store.arango import ArangoStore
from streamforge_pipelines.workers.observability import (
    configure_logging,
    redact,
    redact_handlers,
    settings_secrets,
)

PASSWORD = "s3cr3t-Pa55"
URL = f"http://streamforge:{PASSWORD}@arango.internal:8529"


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger's handlers and level back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


class Client:
    """A third-party object whose ``str`` carries the URL (as python-arango's client does)."""

    def __str__(self) -> str:
        return f"<ArangoClient {URL}>"


def test_every_kind_of_record_field_is_redacted(root_logging: None) -> None:
    settings = Settings.from_env({"ARANGO_URL": URL, "ARANGO_PASSWORD": "another-secret-1"})
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream, secrets=settings_secrets(settings))
    arango = logging.getLogger("arango.http")  # a library's logger, not one of ours
    arango.debug("request to %s", URL)
    arango.debug("client %s, password %s", Client(), "another-secret-1")
    logging.getLogger("streamforge_pipelines.x").info(
        f"connecting to {URL}", extra={"url": URL, "detail": {"hosts": [URL]}, "client": Client()}
    )
    try:
        raise ConnectionError(f"cannot reach {URL}")
    except ConnectionError:
        logging.getLogger("urllib3.connectionpool").exception("failed")
    text = stream.getvalue()
    records = [orjson.loads(line) for line in text.splitlines()]
    assert len(records) == 4
    assert PASSWORD not in text and "another-secret-1" not in text and "streamforge:" not in text
    assert records[0]["msg"] == "request to http://***@arango.internal:8529"
    assert records[1]["msg"] == "client <ArangoClient http://***@arango.internal:8529>, password ***"
    assert records[2]["url"] == "http://***@arango.internal:8529"
    assert records[2]["detail"] == {"hosts": ["http://***@arango.internal:8529"]}
    assert records[2]["client"] == "<ArangoClient http://***@arango.internal:8529>"
    assert "ConnectionError: cannot reach http://***@arango.internal:8529" in records[3]["exc"]


def test_redact_shapes() -> None:
    assert redact("http://u:p@h:1/db?x=1") == "http://***@h:1/db?x=1"
    assert redact("postgres://u:p@ss@db/x") == "postgres://***@db/x"  # an unencoded @ in the password
    assert redact("https://token@host") == "https://***@host"
    assert redact("http://host:8529/path and mail a@b.c") == "http://host:8529/path and mail a@b.c"
    assert redact("no secret here", ["hunter22"]) == "no secret here"
    # a password with an unencoded "/" breaks the URL shape; settings_secrets still catches it
    odd = Settings.from_env({"ARANGO_URL": "http://root:pa/ss-word@h:8529"})
    assert "pa/ss-word" in settings_secrets(odd)
    assert "pa/ss-word" not in redact("http://root:pa/ss-word@h:8529", settings_secrets(odd))


def test_handlers_set_up_elsewhere_get_the_filter(root_logging: None) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    redact_handlers()
    redact_handlers()  # once is enough
    assert len(handler.filters) == 1
    logging.getLogger("requests").debug("GET %s", URL)
    assert PASSWORD not in stream.getvalue() and "http://***@arango.internal:8529" in stream.getvalue()


def test_the_arango_store_repr_holds_no_password() -> None:
    store = ArangoStore.__new__(ArangoStore)  # no server needed for its repr
    store.url, store.db_name = URL, "streamforge"
    assert PASSWORD not in repr(store) and "arango.internal:8529" in repr(store)
