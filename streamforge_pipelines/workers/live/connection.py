"""One combined-stream connection kept alive: subscriptions, pacing, silence, reconnects and rotation.

:class:`StreamConnection` keeps a set of stream names subscribed on one combined-stream URL
(``…/stream``) for as long as it runs, whatever happens to the socket under it:

* **pongs** — the ``websockets`` client answers the server's pings with pongs echoing their payload
  (Binance: a ping every 20 s spot / 3 min USD-M, no pong within 1 / 10 min closes the connection);
  the client sends no pings of its own, which would count against the incoming-message limit;
* **pacing** — control messages (``SUBSCRIBE`` / ``UNSUBSCRIBE``) go out at most
  :attr:`Limits.max_outgoing_per_s` a second, one below the exchange's limit so the pongs fit (5 on
  spot, 10 on USD-M; more closes the connection); at most :attr:`Limits.max_streams` streams per
  connection (1024 / 200), which the caller shards by (:func:`shard`);
* **silence watchdog** — a connection on which nothing at all arrives for
  :attr:`Lifecycle.silence_s` is dropped and opened again; a stream that delivers nothing for
  :attr:`Lifecycle.stream_silence_s` after it was subscribed is reported silent
  (:meth:`StreamConnection.silent`): an exchange accepts a well-formed stream of a symbol it does not
  list and then says nothing, which no client can tell from a quiet market except by watching;
* **reconnects** — a connection lost (closed, reset, refused, silent) is opened again after a capped
  exponential backoff with full jitter (:class:`~streamforge_pipelines.workers.backoff.Backoff`), so
  the clients that lost one exchange together do not return together;
* **rotation** — before the exchange's 24-hour limit (:attr:`Lifecycle.rotate_after_s`), or when the
  exchange announces a planned shutdown (``serverShutdown``), a successor connection is opened with
  the same streams while the old one keeps reading; the old one closes only once the successor has
  delivered, so nothing is lost. During the overlap both deliver: the handlers drop what they have
  seen (trade ids, candle open times and book update ids only move forward).

Every frame's payload goes to ``on_message(stream_name, payload)``; events about the connection
(``connected``, ``lost``, ``rotated``, ``refused``) go to ``on_state``. Nothing here knows what a
stream means: :mod:`.streams` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from ..backoff import Backoff

__all__ = [
    "SPOT_LIMITS",
    "USDM_LIMITS",
    "Lifecycle",
    "Limits",
    "StreamConnection",
    "SubscriptionRefused",
    "shard",
]

log = logging.getLogger(__name__)

State = Literal["connected", "lost", "rotated", "refused"]
MessageHandler = Callable[[str, dict[str, Any]], None]
StateHandler = Callable[[State, str], None]

#: Streams per SUBSCRIBE message (a long list in one message is one of the five a second).
SUBSCRIBE_CHUNK = 200


class SubscriptionRefused(Exception):
    """The exchange answered a SUBSCRIBE with an error (an invalid stream, too many streams)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """An exchange's rules for one connection."""

    max_streams: int
    #: Control messages a second the client sends (the exchange's limit minus one for the pongs).
    max_outgoing_per_s: float


SPOT_LIMITS = Limits(max_streams=1024, max_outgoing_per_s=4)
USDM_LIMITS = Limits(max_streams=200, max_outgoing_per_s=9)


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """How long silence is tolerated, how reconnects back off, when connections rotate."""

    silence_s: float = 30.0
    stream_silence_s: float = 120.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    #: Rotate before Binance's 24-hour limit (23 h 30 min).
    rotate_after_s: float = 84_600.0
    open_timeout_s: float = 10.0
    #: How long a SUBSCRIBE may wait for its answer, and a successor for its first message.
    reply_timeout_s: float = 10.0


def shard(names: Sequence[str], max_streams: int) -> list[list[str]]:
    """Stream names in groups of at most ``max_streams`` (one connection each), in order."""
    return [list(names[i : i + max_streams]) for i in range(0, len(names), max_streams)]


class _Pacer:
    """At most ``rate`` sends a second (a sliding one-second window)."""

    def __init__(self, rate: float) -> None:
        self.rate = max(1, int(rate))
        self.sent: list[float] = []

    async def wait(self) -> None:
        while True:
            now = time.monotonic()
            self.sent = [t for t in self.sent if t > now - 1.0]
            if len(self.sent) < self.rate:
                self.sent.append(now)
                return
            await asyncio.sleep(self.sent[0] + 1.0 - now)


@dataclass(eq=False)
class _Session:
    """One socket: its reader task, the time of its last frame, whether it has delivered data."""

    ws: ClientConnection
    opened_at: float
    pacer: _Pacer
    last_frame: float = field(default_factory=time.monotonic)
    delivered: asyncio.Event = field(default_factory=asyncio.Event)
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
    replies: dict[int, asyncio.Future[Any]] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None


class StreamConnection:
    """A set of stream names kept subscribed on one combined-stream URL (see the module docstring)."""

    def __init__(
        self,
        url: str,
        names: Iterable[str],
        on_message: MessageHandler,
        *,
        limits: Limits = SPOT_LIMITS,
        lifecycle: Lifecycle | None = None,
        on_state: StateHandler | None = None,
        rng: random.Random | None = None,
        label: str = "",
    ) -> None:
        self.url = url
        self.names: list[str] = list(dict.fromkeys(names))
        if len(self.names) > limits.max_streams:
            raise ValueError(f"{len(self.names)} streams on one connection: at most {limits.max_streams}")
        self.on_message = on_message
        self.on_state = on_state or (lambda state, detail: None)
        self.limits = limits
        self.lifecycle = lifecycle or Lifecycle()
        self.label = label or url
        lc = self.lifecycle
        self._backoff = Backoff(1 << 30, lc.backoff_base_s, lc.backoff_cap_s, rng or random.Random())
        self._closed = asyncio.Event()
        self._session: _Session | None = None
        self._next_id = 0
        #: Monotonic time each name was (re)subscribed, and of its last message.
        self._subscribed_at: dict[str, float] = {}
        self._last_seen: dict[str, float] = {}
        #: Names the exchange refused (not retried).
        self.refused: set[str] = set()
        self.reconnects = 0
        self.rotations = 0
        self.messages = 0

    # -- public

    async def run(self) -> None:
        """Keep the streams subscribed until :meth:`close`."""
        attempt = 0
        session: _Session | None = None
        while not self._closed.is_set():
            if session is None:
                try:
                    session = await self._open()
                except (OSError, WebSocketException, TimeoutError, SubscriptionRefused) as exc:
                    attempt += 1
                    delay = self._backoff.delay(attempt)
                    log.warning(
                        "%s: connecting failed (%s); again in %.1fs", self.label, _one_line(exc), delay
                    )
                    self.on_state("lost", _one_line(exc))
                    await self._pause(delay)
                    continue
                attempt = 0
                self._session = session
                self.on_state("connected", self.url)
            reason = await self._watch(session)
            if reason == "closed":
                break
            if reason == "rotate":
                successor = await self._successor()
                await self._close_session(session)
                if successor is not None:
                    self.rotations += 1
                    session = self._session = successor
                    self.on_state("rotated", "")
                    continue
                reason = "the successor connection failed"
            else:
                await self._close_session(session)
            session = None
            if not self._closed.is_set():
                self.reconnects += 1
                attempt += 1
                log.warning("%s: connection lost (%s); reconnecting", self.label, reason)
                self.on_state("lost", reason)
                await self._pause(self._backoff.delay(attempt))
        if session is not None:
            await self._close_session(session)

    async def close(self) -> None:
        """Stop: close the socket, end :meth:`run`."""
        self._closed.set()
        if self._session is not None:
            await self._close_session(self._session)

    async def subscribe(self, names: Iterable[str]) -> None:
        """Add streams (live SUBSCRIBE on the open socket; every later socket subscribes them too)."""
        new = [n for n in dict.fromkeys(names) if n not in self.names]
        if len(self.names) + len(new) > self.limits.max_streams:
            raise ValueError(f"at most {self.limits.max_streams} streams on one connection")
        self.names.extend(new)
        if self._session is not None and new:
            await self._request(self._session, "SUBSCRIBE", new)

    async def unsubscribe(self, names: Iterable[str]) -> None:
        """Drop streams (live UNSUBSCRIBE on the open socket)."""
        gone = [n for n in dict.fromkeys(names) if n in self.names]
        self.names = [n for n in self.names if n not in gone]
        for n in gone:
            self._subscribed_at.pop(n, None)
            self._last_seen.pop(n, None)
        if self._session is not None and gone:
            with contextlib.suppress(SubscriptionRefused, TimeoutError, WebSocketException):
                await self._request(self._session, "UNSUBSCRIBE", gone)

    def silent(self, now: float | None = None) -> list[str]:
        """Subscribed streams from which nothing arrived for :attr:`Lifecycle.stream_silence_s`."""
        now = time.monotonic() if now is None else now
        limit = self.lifecycle.stream_silence_s
        return [
            n
            for n, since in self._subscribed_at.items()
            if now - max(since, self._last_seen.get(n, since)) >= limit
        ]

    @property
    def connected(self) -> bool:
        return self._session is not None and not self._closed.is_set()

    # -- sockets

    async def _open(self) -> _Session:
        ws = await connect(
            self.url,
            ping_interval=None,
            compression=None,
            open_timeout=self.lifecycle.open_timeout_s,
            max_size=1 << 22,
            max_queue=None,
            proxy=None,
        )
        session = _Session(ws=ws, opened_at=time.monotonic(), pacer=_Pacer(self.limits.max_outgoing_per_s))
        session.reader = asyncio.create_task(self._read(session))
        try:
            wanted = [n for n in self.names if n not in self.refused]
            for chunk in shard(wanted, SUBSCRIBE_CHUNK):
                await self._request(session, "SUBSCRIBE", chunk)
        except BaseException:
            await self._close_session(session)
            raise
        return session

    async def _request(self, session: _Session, method: str, names: list[str]) -> None:
        await session.pacer.wait()
        self._next_id += 1
        req_id = self._next_id
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        session.replies[req_id] = reply
        await session.ws.send(orjson.dumps({"method": method, "params": names, "id": req_id}).decode())
        try:
            async with asyncio.timeout(self.lifecycle.reply_timeout_s):
                answer = await reply
        finally:
            session.replies.pop(req_id, None)
        if isinstance(answer, dict) and "error" in answer:
            error = answer["error"]
            msg = error.get("msg") if isinstance(error, dict) else error
            if method == "SUBSCRIBE":
                self.refused.update(names)
                self.on_state("refused", f"{msg}: {', '.join(names[:5])}")
            raise SubscriptionRefused(f"{method} {names[:3]}...: {msg}")
        if method == "SUBSCRIBE":
            now = time.monotonic()
            for n in names:
                self._subscribed_at[n] = now

    async def _read(self, session: _Session) -> None:
        """Every frame of the socket to the handler until it closes."""
        handle = self.on_message
        seen = self._last_seen
        try:
            async for raw in session.ws:
                now = time.monotonic()
                session.last_frame = now
                try:
                    msg = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    log.warning("%s: a frame that is not JSON: %.80r", self.label, raw)
                    continue
                if type(msg) is not dict:
                    continue
                data = msg.get("data")
                if data is not None:
                    name = msg.get("stream", "")
                    if name == "!serverShutdown" or (
                        type(data) is dict and data.get("e") == "serverShutdown"
                    ):
                        session.shutdown.set()
                        continue
                    self.messages += 1
                    seen[name] = now
                    session.delivered.set()
                    try:
                        handle(name, data)
                    except Exception:  # one message the handler cannot take must not end the stream
                        log.exception("%s: handling a %s message failed", self.label, name)
                elif "id" in msg and ("result" in msg or "error" in msg):
                    reply = session.replies.get(msg["id"])
                    if reply is not None and not reply.done():
                        reply.set_result(msg)
                elif msg.get("e") == "serverShutdown":
                    session.shutdown.set()
        except WebSocketException:
            pass
        finally:
            for reply in session.replies.values():
                if not reply.done():
                    reply.set_exception(ConnectionError("connection closed"))

    async def _watch(self, session: _Session) -> str:
        """Wait until the socket must go: ``rotate`` (age or serverShutdown), or why it was lost."""
        lc = self.lifecycle
        assert session.reader is not None
        while not self._closed.is_set():
            now = time.monotonic()
            # a planned shutdown first: the exchange closes the socket right after announcing it
            if session.shutdown.is_set() or now - session.opened_at >= lc.rotate_after_s:
                return "rotate"
            if session.reader.done():
                code = session.ws.close_code
                return f"closed by the exchange ({code}: {session.ws.close_reason or 'no reason'})"
            if now - session.last_frame >= lc.silence_s:
                return f"silent for {lc.silence_s:g}s"
            deadline = min(session.last_frame + lc.silence_s, session.opened_at + lc.rotate_after_s)
            wait_s = max(0.01, min(deadline - now, 1.0))
            signals = [
                asyncio.ensure_future(session.shutdown.wait()),
                asyncio.ensure_future(self._closed.wait()),
            ]
            await asyncio.wait(
                [session.reader, *signals], timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
            )
            for w in signals:
                w.cancel()
        return "closed"

    async def _successor(self) -> _Session | None:
        """A new socket with the same streams that has delivered (the old one still reading), or None."""
        try:
            successor = await self._open()
        except (OSError, WebSocketException, TimeoutError, SubscriptionRefused) as exc:
            log.warning("%s: opening the successor failed (%s)", self.label, _one_line(exc))
            return None
        try:
            async with asyncio.timeout(self.lifecycle.reply_timeout_s):
                await successor.delivered.wait()
        except TimeoutError:
            pass  # a quiet market: the successor is subscribed, which is what matters
        return successor

    async def _close_session(self, session: _Session) -> None:
        if self._session is session:
            self._session = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await session.ws.close()
        if session.reader is not None:
            session.reader.cancel()
            with contextlib.suppress(BaseException):
                await session.reader

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closed.wait()


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
