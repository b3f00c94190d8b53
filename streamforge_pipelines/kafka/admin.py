"""Kafka administration helpers usable against any Kafka-compatible cluster.

Two jobs, both bounded in time:

* :func:`wait_ready` polls a cluster until it answers a metadata request (used after starting the
  embedded Tansu broker, and by processes that start before their Strimzi cluster is reachable);
* :func:`ensure_topics` creates the topics StreamForge needs with their partition counts, treats
  topics that already exist as success, and then waits until metadata shows every topic with all
  its partitions led by a broker. :func:`ensure_topics_sync` is the same for synchronous callers
  (Dagster ops, the CLI, test fixtures).

The metadata checks never ask the broker to auto-create topics: Tansu, like a Kafka broker with
``auto.create.topics.enable=true``, creates an unknown topic (with its own default partition
count) when a client's metadata request allows it, which would defeat the partition counts asked
for here.

This module must not import Dagster; workers use it too.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.protocol.metadata import MetadataRequest

__all__ = [
    "KafkaNotReadyError",
    "ensure_topics",
    "ensure_topics_sync",
    "wait_ready",
]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Pause between two metadata polls.
_POLL_INTERVAL_S = 0.1

#: Kafka's rule for topic names. Checked here because Tansu accepts any name.
_LEGAL_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")


class KafkaNotReadyError(TimeoutError):
    """The cluster did not answer, or topics did not appear, within the allowed time."""


# ---- readiness -----------------------------------------------------------------------------------


async def wait_ready(bootstrap_servers: str, timeout_s: float = 30.0, **client_kwargs: Any) -> int:
    """Wait until the cluster at ``bootstrap_servers`` answers a metadata request.

    ``client_kwargs`` go to :class:`aiokafka.client.AIOKafkaClient` (TLS/SASL settings of a
    production cluster). Returns the number of brokers the metadata names. Raises
    :class:`KafkaNotReadyError` with the last connection error after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    attempts = 0
    while True:
        attempts += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        request_timeout_ms = max(100, int(min(remaining, 5.0) * 1000))
        client = AIOKafkaClient(
            bootstrap_servers=bootstrap_servers, request_timeout_ms=request_timeout_ms, **client_kwargs
        )
        try:
            async with asyncio.timeout(remaining):
                await client.bootstrap()
            brokers = client.cluster.brokers()
            if brokers:
                log.debug("kafka at %s ready after %d attempt(s)", bootstrap_servers, attempts)
                return len(brokers)
            last_error = RuntimeError("metadata names no broker")
        except (KafkaError, OSError, TimeoutError) as exc:
            last_error = exc
        finally:
            await client.close()
        # Back off (0.1 s doubling up to 1 s): aiokafka logs every refused connection at ERROR.
        pause = min(_POLL_INTERVAL_S * 2 ** min(attempts - 1, 4), 1.0)
        await asyncio.sleep(min(pause, _remaining(deadline)))
    raise KafkaNotReadyError(
        f"Kafka at {bootstrap_servers} did not answer a metadata request within {timeout_s:.1f}s "
        f"({attempts} attempts; last error: {last_error!r})"
    )


# ---- topics --------------------------------------------------------------------------------------


async def ensure_topics(
    bootstrap_servers: str,
    topics: Mapping[str, int],
    *,
    replication_factor: int = 1,
    timeout_s: float = 30,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    **client_kwargs: Any,
) -> None:
    """Create the missing ``topics`` (name -> partitions) and wait until metadata shows them all.

    ``configs`` (name -> topic configs, e.g. ``Settings.topic_configs()``: ``cleanup.policy=compact``
    for the checkpoint topic) are set on the topics this call creates; existing topics keep theirs.

    A topic that already exists counts as created, whatever the reason (an earlier run, another
    process racing this one). An existing topic with a different partition count is kept as it is
    and logged as a warning: partition counts are never changed here. ``client_kwargs`` go to both
    aiokafka clients (TLS/SASL settings). Raises :class:`KafkaNotReadyError` when the cluster or
    the topics are not there within ``timeout_s``, and the broker's error for any other refusal
    (replication factor above the broker count on a real Kafka cluster, ...); an illegal topic name
    raises :class:`ValueError` before anything is sent.
    """
    for name, partitions in topics.items():
        if not _LEGAL_TOPIC.fullmatch(name):
            raise ValueError(f"illegal kafka topic name {name!r}: 1-249 characters of [a-zA-Z0-9._-]")
        if partitions < 1:
            raise ValueError(f"topic {name!r}: partitions must be >= 1, got {partitions}")
    if not topics:
        return
    deadline = time.monotonic() + timeout_s
    await wait_ready(bootstrap_servers, timeout_s, **client_kwargs)
    request_timeout_ms = max(1000, int(min(timeout_s, 30.0) * 1000))

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers, request_timeout_ms=request_timeout_ms, **client_kwargs
    )
    try:
        async with asyncio.timeout(_remaining(deadline)):
            await admin.start()
            results = await asyncio.gather(
                *(
                    _create_one(
                        admin,
                        name,
                        partitions,
                        replication_factor,
                        request_timeout_ms,
                        dict((configs or {}).get(name, {})),
                    )
                    for name, partitions in topics.items()
                )
            )
    except TimeoutError:
        raise KafkaNotReadyError(
            f"creating topics {sorted(topics)} on {bootstrap_servers} took longer than {timeout_s:.1f}s"
        ) from None
    finally:
        await admin.close()
    created = [name for name, was_created in zip(topics, results, strict=True) if was_created]
    if created:
        log.info("created kafka topics %s on %s", created, bootstrap_servers)

    await _wait_for_topics(bootstrap_servers, topics, deadline, timeout_s, client_kwargs)


def ensure_topics_sync(
    bootstrap_servers: str,
    topics: Mapping[str, int],
    *,
    replication_factor: int = 1,
    timeout_s: float = 30,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    **client_kwargs: Any,
) -> None:
    """:func:`ensure_topics` for synchronous code.

    Runs with :func:`asyncio.run`; when the calling thread already runs an event loop, it runs in a
    short-lived helper thread instead (``asyncio.run`` cannot nest).
    """
    _run_sync(
        ensure_topics(
            bootstrap_servers,
            topics,
            replication_factor=replication_factor,
            timeout_s=timeout_s,
            configs=configs,
            **client_kwargs,
        )
    )


async def _create_one(
    admin: AIOKafkaAdminClient,
    name: str,
    partitions: int,
    replication_factor: int,
    timeout_ms: int,
    configs: dict[str, str] | None = None,
) -> bool:
    """Create one topic (with ``configs``); True if created, False if it already existed."""
    try:
        new = NewTopic(
            name=name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            topic_configs=configs or {},
        )
        response = await admin.create_topics(
            [new],
            timeout_ms=timeout_ms,
        )
        # aiokafka returns the CreateTopics response instead of raising: turn its per-topic error
        # codes into the matching exceptions.
        for topic_error in getattr(response, "topic_errors", []):
            code, message = topic_error[1], topic_error[2] if len(topic_error) > 2 else None
            if code:
                error_cls = for_code(code)
                raise error_cls(f"topic {topic_error[0]!r}: {message or error_cls.__name__}")
    except TopicAlreadyExistsError:
        log.debug("kafka topic %s already exists", name)
        return False
    return True


async def _wait_for_topics(
    bootstrap_servers: str,
    topics: Mapping[str, int],
    deadline: float,
    timeout_s: float,
    client_kwargs: Mapping[str, Any],
) -> None:
    """Poll metadata (without auto-creation) until every topic has all its partitions led."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap_servers, **client_kwargs)
    pending: dict[str, str] = {name: "not polled yet" for name in topics}
    warned: set[str] = set()
    try:
        async with asyncio.timeout(_remaining(deadline)):
            await client.bootstrap()
            while True:
                node_id = client.get_random_node()
                if node_id is None:
                    pending = {name: "no broker known" for name in topics}
                    await asyncio.sleep(_POLL_INTERVAL_S)
                    continue
                response = await client.send(
                    node_id, MetadataRequest(list(topics), allow_auto_topic_creation=False)
                )
                pending = {}
                for entry in response.to_object()["topics"]:
                    name = entry["topic"]
                    if name not in topics:
                        continue
                    state = _topic_state(entry, topics[name], warned)
                    if state:
                        pending[name] = state
                seen = {entry["topic"] for entry in response.to_object()["topics"]}
                pending.update({name: "absent from metadata" for name in topics if name not in seen})
                if not pending:
                    return
                await asyncio.sleep(_POLL_INTERVAL_S)
    except TimeoutError:
        detail = "; ".join(f"{name}: {why}" for name, why in sorted(pending.items()))
        raise KafkaNotReadyError(
            f"topics not ready on {bootstrap_servers} within {timeout_s:.1f}s: {detail}"
        ) from None
    finally:
        await client.close()


def _topic_state(entry: Mapping[str, Any], wanted: int, warned: set[str]) -> str:
    """Why a topic's metadata entry is not ready yet ('' when it is)."""
    name = entry["topic"]
    if entry["error_code"]:
        return f"error {for_code(entry['error_code']).__name__}"
    partitions = entry["partitions"]
    if not partitions:
        return "no partitions yet"
    if len(partitions) != wanted and name not in warned:
        warned.add(name)
        log.warning(
            "kafka topic %s exists with %d partitions, %d asked for; keeping %d",
            name,
            len(partitions),
            wanted,
            len(partitions),
        )
    leaderless = [p["partition"] for p in partitions if p["error_code"] or p["leader"] < 0]
    if leaderless:
        return f"partitions without leader: {sorted(leaderless)}"
    return ""


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _run_sync(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion from synchronous code, even inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["result"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=runner, name="streamforge-kafka-admin", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]
