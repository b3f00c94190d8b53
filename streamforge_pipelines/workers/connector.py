"""arango-connector: data topics -> store, idempotent, offsets committed only after the write.

One consumer-group member, consuming the topic of every dataset
(:func:`streamforge_pipelines.datasets.all_specs`, registered ones included: each spec names its
topic). Each poll takes a batch (``getmany``), decodes each record with its topic's dataset codec
(``spec.codec.check``: candle pages and single candles on a candle topic, trades pages on the trades
topic, a registered dataset's pages on its own), upserts the valid pages with their deterministic
keys in one store call per dataset (:meth:`~streamforge_pipelines.store.Store.upsert_pages`, off the
event loop), copies every record it cannot store to the topic's dead-letter topic (``<topic>.dlq``)
with its reason, and only then commits the offsets. End markers in the batch are acknowledged on
``queue-events`` after the commit: by then every record before the marker on that partition is
stored or dead-lettered. A crash between write and commit replays the batch; the upsert makes that
harmless. Batches are pipelined one deep: batch N+1 is fetched and decoded while batch N is written
in a worker thread; N+1 is written only after N is committed, so offsets are committed in order.

**Every record is stored or dead-lettered; no record stops the connector.**

* *Refused by the decoder* (the topic's codec; :func:`~streamforge_pipelines.protocol.decode_record`
  for what no codec reads): not JSON, an unknown kind, a missing field or a wrong type, and whatever
  the store cannot hold or would hold as right although it is wrong: times, ids and counts outside
  0 .. 2**63-1, ``close_time`` before ``open_time``, prices that are not positive decimal strings
  (``67890.12000000``; at most 20 digits each side of the point: no sign, exponent or NaN), volumes
  and quantities that are not non-negative ones, ``low <= open, close <= high`` broken, a symbol
  that is not 2-20 of ``A-Z0-9``, an unknown interval, open times or trade ids not increasing,
  ``source`` / ``queue_id`` empty or over 200 characters; and a record of another dataset on a topic
  (a trades page on a candle topic, a candle on the trades topic: ``record.record: a trades record
  on the candles topic``, after the other dataset's codec found nothing else wrong with it). The
  dead letter's reason is the decoder's one line naming the field and quoting at most a bounded
  excerpt of the value, e.g. ``candles.rows[3].high: 67000.5 is below low 67010.0`` (a page with one
  bad row goes whole). Metric: ``streamforge_errors_total{kind="invalid_record"}``.
* *Refused by the store* although decoded: when a write fails for a reason that lies in the data,
  the batch is written again in halves, down to single records, so that only the records the store
  still refuses are dead-lettered, with the reason ``store: <exception type>: <message>``, e.g.
  ``store: OverflowError: Python int too large to convert to SQLite INTEGER``; the rest is stored.
  Metric: ``streamforge_errors_total{kind="write_error"}``.
* *Store down*: an operational failure is not the data's fault and dead-letters nothing. It
  propagates: the batch is not committed, the connector stops with an error
  (``kind="store_unavailable"``, exit status 1 for the standalone worker) and, restarted, replays
  the batch (at least once; the upserts make that idempotent). :func:`store_failure_is_operational`
  tells the two apart by the exceptions in the failure's cause and context chain:

  - operational: ``OSError`` (connection refused or reset, timeouts; requests' errors are
    ``OSError``) and ``MemoryError``; SQLite's ``OperationalError`` (database is locked, disk I/O
    error, database or disk is full, read-only, cannot open), a bare ``DatabaseError`` (a corrupt
    file), ``InternalError`` and ``NotSupportedError``; a closed store; every python-arango error
    but a server answer HTTP 400 (a bad document or parameter) or 413 (too large): client-side
    errors, 401/403 (credentials), 404 (database or collection gone), 409 (write conflict), 5xx
    (unavailable), ...;
  - data: everything else, e.g. ``OverflowError`` / ``ValueError`` / ``TypeError`` binding a value,
    SQLite's ``IntegrityError``, ``DataError``, ``InterfaceError``, ``ProgrammingError``, ArangoDB's
    HTTP 400 and 413, the store's own row checks.

A dead letter is the JSON object ``{reason, topic, partition, offset, key, value, connector,
timestamp}``; ``value`` (and ``key``) is the record's, decoded as UTF-8 with undecodable bytes
replaced, whole as long as the dead letter stays within :data:`DLQ_MAX_BODY_BYTES` (3 MiB, under the
producer's 4 MiB request limit: a 900 KB record goes whole); a larger one carries the first
:data:`DLQ_TRUNCATED_BYTES` and ``value_truncated: true``, ``value_bytes: <size>`` (keys beyond
:data:`DLQ_MAX_KEY_BYTES` are cut alike). Metric: ``streamforge_records_total{outcome="dead_lettered"}``.

Progress per task goes to ``queue-events`` as ``loading`` events (at most about once a second per
task) with the number of the task's records this connector has stored.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

from .. import datasets
from ..datasets import DatasetSpec
from ..kafka import make_producer, stop_within
from ..kafka import monitor as broker_monitor
from ..protocol import (
    CONNECTOR,
    RECORD_CANDLE,
    RECORD_END,
    Event,
    PartitionCount,
    ProtocolError,
    decode_record,
    make_producer_id,
    new_suffix,
    now_s,
)
from ..settings import Settings
from ..store import Store, StoreError, store_from_settings, validate_collection_name
from .observability import (
    BATCHES,
    ERRORS,
    LATENCY,
    RECORDS,
    Timer,
    configure_logging,
    serve_metrics,
    settings_secrets,
)

log = logging.getLogger(__name__)

WORKER = CONNECTOR
PROGRESS_EVERY_S = 1.0
#: Largest dead letter (JSON) sent whole: under the producer's 4 MiB ``max_request_size`` with room
#: for the record's key and batch overhead.
DLQ_MAX_BODY_BYTES = 3 << 20
#: How much of a larger record's value a dead letter carries (JSON escapes can make it 6x longer).
DLQ_TRUNCATED_BYTES = 256 << 10
#: Longest key a dead letter copies (and sends as its own key).
DLQ_MAX_KEY_BYTES = 1 << 10
#: A write error's reason is cut to this many characters (one line).
REASON_CHARS = 500


@dataclass
class ConnectorStats:
    #: Documents stored (candles, trades, ...).
    stored: int = 0
    #: Records dead-lettered (refused by the decoder or by the store).
    dead_lettered: int = 0
    #: Of those, records the store refused (``store: ...`` reasons).
    write_errors: int = 0
    markers: int = 0
    batches: int = 0


@dataclass(eq=False)
class _Item:
    """One decoded data record to write: a page its dataset's codec checked."""

    rec: ConsumerRecord
    spec: DatasetSpec
    #: What ``spec.codec.check`` returned.
    page: Any
    queue_id: str
    #: Documents it holds.
    count: int


@dataclass
class _Prepared:
    """One decoded batch, ready to be written."""

    offsets: dict[TopicPartition, int]
    items: list[_Item] = field(default_factory=list)
    dead: list[tuple[ConsumerRecord, str]] = field(default_factory=list)
    markers: list[tuple[ConsumerRecord, dict[str, Any]]] = field(default_factory=list)


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (bounded; cycles cut)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 32:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo.extend((e.__context__, e.__cause__))
    return seen


#: SQLite errors that lie in the bound values or the statement (the rest of ``sqlite3.Error`` is the
#: database's state: locked, I/O, full, corrupt).
_SQLITE_DATA_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
)
#: ArangoDB's answers that refuse the documents themselves: bad document/parameter, too large.
_ARANGO_DATA_HTTP = frozenset({400, 413})
#: The message both adapters raise once closed.
_STORE_CLOSED = "store is closed"


def store_failure_is_operational(exc: BaseException) -> bool:
    """Whether a store write failed for a reason outside the data written (the store is locked, full,
    corrupt, unreachable, closed ...): then the batch must not be dead-lettered but replayed later.
    Decided by every exception in the cause/context chain (the module docstring has the list)."""
    arango = sys.modules.get("arango.exceptions")  # loaded only with the ArangoDB adapter
    for e in _exception_chain(exc):
        if isinstance(e, OSError | MemoryError):
            return True
        if isinstance(e, sqlite3.Error) and not isinstance(e, _SQLITE_DATA_ERRORS):
            return True
        if isinstance(e, sqlite3.ProgrammingError) and "closed" in str(e):
            return True
        if isinstance(e, StoreError) and str(e) == _STORE_CLOSED:
            return True
        if arango is not None and isinstance(e, arango.ArangoError):
            if (
                getattr(e, "source", None) != "server"
                or getattr(e, "http_code", None) not in _ARANGO_DATA_HTTP
            ):
                return True
    return False


def write_error_reason(exc: BaseException) -> str:
    """A dead letter's reason for a record the store refused: ``store: <type>: <message>``, one
    bounded line."""
    text = " ".join(f"store: {type(exc).__name__}: {exc}".split())
    return text if len(text) <= REASON_CHARS else f"{text[:REASON_CHARS]}…"


def decode_data_record(spec: DatasetSpec, raw: bytes) -> tuple[str, Any]:
    """``(kind, checked page)`` of a record on ``spec``'s topic, or ``(RECORD_END, marker)``; raises a
    one-line :class:`ProtocolError` for a record to dead-letter.

    A record of a kind the topic's codec reads (``record``; none means a single ``candle``, as older
    producers wrote) is checked by that codec. A record another dataset's codec reads is checked by
    that codec first (so a bad one gets its reason) and then refused as off its topic. Anything else
    (not JSON, not an object, an end marker, a kind no dataset reads) goes to the protocol's own
    decoder, which returns a checked end marker or says why not."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    kind = value.get("record", RECORD_CANDLE) if type(value) is dict else None
    codec = spec.codec
    if kind in codec.kinds:
        return kind, codec.check(value)
    reader = None if kind is None or kind == RECORD_END else datasets.for_kind(kind)
    if reader is None:
        marker = decode_record(raw)
        if marker.get("record") != RECORD_END:  # pragma: no cover - every other kind is a dataset's
            raise ProtocolError(f"record.record: a {kind} record on the {spec.name} topic")
        return RECORD_END, marker
    reader.codec.check(value)
    raise ProtocolError(f"record.record: a {kind} record on the {spec.name} topic")


def _dead_letter_body(
    rec: ConsumerRecord, reason: str, connector: str, *, truncate: bool = False
) -> tuple[bytes, bytes | None]:
    """The dead letter of ``rec`` (JSON) and its key, bounded (see the module docstring); with
    ``truncate`` the value is cut however small the letter (for a broker that refused it whole)."""
    raw = rec.value or b""
    key = rec.key if rec.key is None or len(rec.key) <= DLQ_MAX_KEY_BYTES else rec.key[:DLQ_MAX_KEY_BYTES]
    body: dict[str, Any] = {
        "reason": reason,
        "topic": rec.topic,
        "partition": rec.partition,
        "offset": rec.offset,
        "key": (key or b"").decode("utf-8", "replace"),
        "value": raw.decode("utf-8", "replace"),
        "connector": connector,
        "timestamp": now_s(),
    }
    encoded = orjson.dumps(body)
    if truncate or len(encoded) > DLQ_MAX_BODY_BYTES:
        body["value"] = raw[:DLQ_TRUNCATED_BYTES].decode("utf-8", "replace")
        body["value_truncated"] = True
        body["value_bytes"] = len(raw)
        encoded = orjson.dumps(body)
    return encoded, key


class Connector:
    """Consumes the topic of every dataset into ``store`` until stopped."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        max_batch: int = 10_000,
        producer_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        #: topic -> dataset, for every dataset known now (built-in and registered). Spot and USD-M
        #: futures candles of a symbol share keys: each market is a dataset with its own topic and
        #: collection.
        self.specs: dict[str, DatasetSpec] = {spec.topic(settings): spec for spec in datasets.all_specs()}
        for spec in self.specs.values():  # a bad name would fail every write, not one record's
            validate_collection_name(spec.collection)
        self.max_batch = max_batch
        self.producer_id = producer_id or make_producer_id(WORKER, new_suffix())
        self.stats = ConnectorStats()
        self._stored_per_task: Counter[str] = Counter()
        self._progress_sent: dict[str, float] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> ConnectorStats:
        """Consume until ``stop`` is set; the batch in hand is finished and committed first."""
        bootstrap = self.settings.kafka_bootstrap_servers or ""
        self._consumer = AIOKafkaConsumer(
            *self.specs,
            bootstrap_servers=bootstrap,
            group_id=self.settings.consumer_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 << 20,
            fetch_max_bytes=32 << 20,
            session_timeout_ms=6000,  # a JoinGroup waits about half of it; 6 s is Kafka's minimum
            fetch_max_wait_ms=50,  # the 500 ms default stalls the pipeline on an idle partition
        )
        self._producer = make_producer(bootstrap)
        health = broker_monitor(bootstrap, down_after_s=self.settings.kafka_unavailable_s)
        await self._producer.start()
        await self._consumer.start()
        log.info("connector %s consuming %s", self.producer_id, sorted(self.specs))
        self.ready.set()
        pending: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                health.check()  # the broker gone: stop with one line; the batch in hand is replayed
                batch = await self._consumer.getmany(timeout_ms=200, max_records=self.max_batch)
                if not batch:
                    if pending is not None and pending.done():  # surfaces a failed write now
                        await pending
                        pending = None
                    continue
                # Decode this batch while the previous one is still being written (the store
                # releases the GIL while it writes); then write it once the previous is committed.
                prepared = self._prepare(batch)
                if pending is not None:
                    await pending
                pending = asyncio.create_task(self._apply(prepared))
        finally:
            # With the broker gone nothing can be committed, dead-lettered or handed back: the
            # uncommitted batches are replayed by whoever consumes next (the upserts are idempotent).
            bound = 1.0 if health.down else None
            try:
                if pending is not None:
                    await stop_within(pending, bound)
            finally:
                await stop_within(self._consumer.stop(), bound)
                await stop_within(self._producer.stop(), bound)
                log.info("connector %s stopped: %s", self.producer_id, self.stats)
        return self.stats

    def _prepare(self, batch: Mapping[TopicPartition, list[ConsumerRecord]]) -> _Prepared:
        """Decode and sort one batch: what to write where, what to dead-letter, which markers."""
        out = _Prepared(offsets={tp: records[-1].offset + 1 for tp, records in batch.items() if records})
        with Timer(LATENCY.labels(WORKER, "decode")):
            for tp, records in batch.items():
                spec = self.specs[tp.topic]
                for rec in records:
                    try:
                        kind, page = decode_data_record(spec, rec.value or b"")
                    except ProtocolError as exc:
                        out.dead.append((rec, str(exc)))
                        continue
                    except Exception as exc:  # a decoder bug must not stop ingestion either
                        log.exception("decoding %s[%s]@%s failed", rec.topic, rec.partition, rec.offset)
                        out.dead.append(
                            (rec, f"record: cannot be decoded ({type(exc).__name__}: {exc})"[:REASON_CHARS])
                        )
                        continue
                    if kind == RECORD_END:
                        out.markers.append((rec, page))
                    else:
                        codec = spec.codec
                        out.items.append(_Item(rec, spec, page, codec.queue_id(page), codec.count(page)))
        return out

    async def _apply(self, batch: _Prepared) -> None:
        """Write a decoded batch, dead-letter what could not be stored, commit its offsets, then ack
        its markers. A store failure that is not the data's propagates: nothing is committed."""
        assert self._consumer is not None and self._producer is not None
        refused: list[tuple[_Item, str]] = []
        with Timer(LATENCY.labels(WORKER, "batch")):
            if batch.items:
                try:
                    refused = await asyncio.to_thread(self._write, batch.items)
                except Exception as exc:
                    ERRORS.labels(WORKER, "store_unavailable").inc()
                    log.error(
                        "store write failed, batch of %d records not committed (a restart replays it): %s",
                        len(batch.items),
                        " ".join(f"{type(exc).__name__}: {exc}".split())[:REASON_CHARS],
                    )
                    raise
            if batch.dead:
                await self._dead_letter(batch.dead, "invalid_record")
            if refused:
                await self._dead_letter([(item.rec, reason) for item, reason in refused], "write_error")
                self.stats.write_errors += len(refused)
            await self._consumer.commit(batch.offsets)
        not_stored = {id(item) for item, _ in refused}
        per_task: Counter[str] = Counter()
        for item in batch.items:
            if id(item) not in not_stored:
                per_task[item.queue_id] += item.count
        stored = sum(per_task.values())
        self.stats.stored += stored
        self.stats.batches += 1
        self.stats.markers += len(batch.markers)
        BATCHES.labels(WORKER).inc()
        RECORDS.labels(WORKER, "stored").inc(stored)
        self._stored_per_task.update(per_task)
        for rec, marker in batch.markers:
            await self._emit_marker(rec, marker)
        await self._emit_progress(per_task)

    def _write(self, items: list[_Item], depth: int = 0) -> list[tuple[_Item, str]]:
        """Write ``items`` (in a worker thread: the event loop keeps fetching meanwhile); returns the
        records the store refuses for a reason in the data, with that reason. A refused batch is
        written again in halves until each refused record is alone (k bad records among n cost
        about 2·k·log2(n) writes). An operational failure (:func:`store_failure_is_operational`)
        propagates."""
        try:
            self._write_items(items)
            return []
        except Exception as exc:
            if store_failure_is_operational(exc):
                raise
            if len(items) == 1:
                return [(items[0], write_error_reason(exc))]
            if depth == 0:
                log.warning(
                    "store refused a batch of %d records (%s): writing it in halves to find the culprits",
                    len(items),
                    write_error_reason(exc),
                )
        half = len(items) // 2
        return self._write(items[:half], depth + 1) + self._write(items[half:], depth + 1)

    def _write_items(self, items: list[_Item]) -> None:
        """One store call per dataset: its checked pages, in the order they came."""
        by_dataset: dict[int, tuple[DatasetSpec, list[Any]]] = {}
        for item in items:
            by_dataset.setdefault(id(item.spec), (item.spec, []))[1].append(item.page)
        for spec, pages in by_dataset.values():
            self.store.upsert_pages(spec, pages)

    async def _dead_letter(self, dead: list[tuple[ConsumerRecord, str]], kind: str) -> None:
        """Copy ``dead`` (record, reason) to their topics' dead-letter topics and wait for the broker."""
        assert self._producer is not None
        futures = []
        for rec, reason in dead:
            log.warning(
                "dead-lettering %s[%s]@%s: %s",
                rec.topic,
                rec.partition,
                rec.offset,
                reason,
                extra={
                    "topic": rec.topic,
                    "partition": rec.partition,
                    "offset": rec.offset,
                    "reason": reason,
                },
            )
            body, key = _dead_letter_body(rec, reason, self.producer_id)
            futures.append(await self._producer.send(self.settings.dlq_topic(rec.topic), body, key=key))
        for (rec, reason), result in zip(
            dead, await asyncio.gather(*futures, return_exceptions=True), strict=True
        ):
            if isinstance(result, MessageSizeTooLargeError | RecordTooLargeError):
                # a broker with a smaller message limit than ours (Kafka's default is 1 MiB)
                body, key = _dead_letter_body(rec, reason, self.producer_id, truncate=True)
                await self._producer.send_and_wait(self.settings.dlq_topic(rec.topic), body, key=key)
            elif isinstance(result, BaseException):
                raise result
        self.stats.dead_lettered += len(dead)
        RECORDS.labels(WORKER, "dead_lettered").inc(len(dead))
        ERRORS.labels(WORKER, kind).inc(len(dead))

    async def _send_event(self, event: Event) -> None:
        assert self._producer is not None
        await self._producer.send_and_wait(
            self.settings.topic_events, event.encode(), key=event.queue_id.encode()
        )

    async def _emit_marker(self, rec: ConsumerRecord, marker: dict[str, Any]) -> None:
        queue_id = str(marker["queue_id"])
        part = PartitionCount(partition=rec.partition, records=int(marker["records"]), offset=rec.offset)
        await self._send_event(
            Event(
                queue_id=queue_id,
                producer=self.producer_id,
                status="finished",
                finished=True,
                records_written=self._stored_per_task.get(queue_id, 0),
                partitions=[part],
                message=f"end marker stored on {rec.topic}[{rec.partition}]",
                timestamp=now_s(),
            )
        )

    async def _emit_progress(self, per_task: Counter[str]) -> None:
        now = time.monotonic()
        for queue_id in per_task:
            if now - self._progress_sent.get(queue_id, 0.0) < PROGRESS_EVERY_S:
                continue
            self._progress_sent[queue_id] = now
            await self._send_event(
                Event(
                    queue_id=queue_id,
                    producer=self.producer_id,
                    status="loading",
                    records_written=self._stored_per_task[queue_id],
                    timestamp=now_s(),
                )
            )


async def serve_connector(settings: Settings) -> ConnectorStats:
    """The standalone worker: consume until SIGTERM/SIGINT, then finish the batch and stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    store = store_from_settings(settings)
    try:
        return await Connector(settings, store).run(stop)
    finally:
        store.close()


def main(settings: Settings) -> None:
    configure_logging(settings.log_level, secrets=settings_secrets(settings))
    serve_metrics(settings.metrics_port, settings.metrics_host)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        import uvloop

        uvloop.run(serve_connector(settings))
    except ImportError:  # pragma: no cover - uvloop is a dependency; this keeps Windows usable
        asyncio.run(serve_connector(settings))
