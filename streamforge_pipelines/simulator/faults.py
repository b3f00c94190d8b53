"""Seeded fault injection for the exchange simulator's REST API (an aiohttp middleware).

What a loader must survive against the real exchange, per endpoint (longest matching path prefix
in :attr:`FaultConfig.endpoints`, else :attr:`FaultConfig.default`):

* ``latency``: ``latency_ms`` plus a uniform ``[0, jitter_ms)`` delay before the handler runs, on a
  ``latency_rate`` share of the requests;
* ``server_error``: HTTP 500/502/503/504 (``server_error_statuses``), the handler not run, with an
  empty body (``server_error_empty_share`` of them) or a Binance-like ``{"code", "msg"}`` body
  (500: -1001, 502: -1006, 503: -1008, 504: -1007);
* ``waf_block``: HTTP 403 with CloudFront's HTML "The request could not be satisfied" page
  (``text/html``), as observed when Binance's WAF blocks a client;
* ``truncated``: the handler's answer with its full ``Content-Length`` but only the first half of
  the body, then the connection is closed (aiohttp clients raise ``ClientPayloadError``);
* ``malformed``: HTTP 200 whose body is the handler's JSON cut in the middle, with a matching
  ``Content-Length`` (clients get a JSON decode error);
* ``drop``: the connection is closed without any response (``ServerDisconnectedError``).

At most one of ``server_error``, ``waf_block``, ``truncated``, ``malformed`` and ``drop`` happens to
a request (their rates add up to at most 1); latency comes on top. ``truncated`` and ``malformed``
only apply to handler answers with a bytes body (``web.Response``); others pass unchanged.

Determinism: each request draws the same number of values from one ``random.Random(rng_seed)``,
synchronously when it enters the middleware, so a given seed and a given sequence of request paths
give the same faults. Concurrent requests reach the middleware in an order the network decides, so
with concurrency the same seed can hand the same faults to different requests.

What fired is counted per injector (:attr:`FaultInjector.counts`) and, for every injector of the
process, on the simulator's ``/metrics`` as ``streamforge_simulator_faults_total{route, kind}``
(``route``: ``/api/v3``, ``/data/spot``, ...; ``kind``: a :class:`Fault` value or ``delayed``).

Fields consumed elsewhere (the WebSocket streams and the depth code read them from the same
config; this middleware ignores them): ``ws_disconnect_rate`` (share of stream connections closed
by the server), ``depth_gap_rate`` (share of depth diff events dropped, leaving a ``U``/``u``
sequence gap) and ``stale_snapshot_rate`` (share of depth snapshots served with an old
``lastUpdateId``).

Loaded from JSON for the CLI (``--faults faults.json``) with :meth:`FaultConfig.from_dict` /
:meth:`FaultConfig.from_json`; endpoint entries override the default's fields::

    {"default": {"latency_ms": 20, "jitter_ms": 30, "server_error_rate": 0.01},
     "endpoints": {"/api/v3/klines": {"drop_rate": 0.02, "truncated_rate": 0.02}},
     "ws_disconnect_rate": 0.001}
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
import prometheus_client
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

__all__ = [
    "CLOUDFRONT_403_HTML",
    "Fault",
    "FaultConfig",
    "FaultDecision",
    "FaultInjector",
    "FaultRates",
    "fault_middleware",
]

Sleep = Callable[[float], Awaitable[Any]]


class Fault(StrEnum):
    """What happens to one request (besides latency)."""

    NONE = "none"
    SERVER_ERROR = "server_error"
    WAF_BLOCK = "waf_block"
    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    DROP = "drop"


#: Order in which the exclusive faults take their share of ``[0, 1)``.
_EXCLUSIVE = (Fault.DROP, Fault.WAF_BLOCK, Fault.SERVER_ERROR, Fault.TRUNCATED, Fault.MALFORMED)


@dataclass(frozen=True)
class FaultRates:
    """Faults of one endpoint group; rates are probabilities per request."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    latency_rate: float = 1.0
    server_error_rate: float = 0.0
    waf_block_rate: float = 0.0
    truncated_rate: float = 0.0
    malformed_rate: float = 0.0
    drop_rate: float = 0.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"fault field {f.name!r} must be a number, got {value!r}")
            if value < 0:
                raise ValueError(f"fault field {f.name!r} must be >= 0, got {value!r}")
            if f.name.endswith("_rate") and value > 1:
                raise ValueError(f"fault rate {f.name!r} must be <= 1, got {value!r}")
        if sum(self.rate(kind) for kind in _EXCLUSIVE) > 1 + 1e-9:
            raise ValueError("the rates of server_error, waf_block, truncated, malformed, drop exceed 1")

    def rate(self, kind: Fault) -> float:
        """The rate of an exclusive fault."""
        return float(getattr(self, f"{kind.value}_rate"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: FaultRates | None = None) -> FaultRates:
        """Rates from a mapping; missing fields come from ``base`` (or the defaults)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        return dataclasses.replace(base if base is not None else cls(), **dict(data))


@dataclass(frozen=True)
class FaultConfig:
    """Fault injection of one simulator: default rates, per-path-prefix overrides, stream faults."""

    default: FaultRates = field(default_factory=FaultRates)
    #: Path prefix -> rates; the longest matching prefix wins over :attr:`default`.
    endpoints: Mapping[str, FaultRates] = field(default_factory=dict)
    server_error_statuses: tuple[int, ...] = (500, 502, 503, 504)
    #: Share of server errors answered with an empty body (the rest: a Binance-like JSON body).
    server_error_empty_share: float = 0.5
    #: Consumed by the WebSocket streams: share of connections the server closes.
    ws_disconnect_rate: float = 0.0
    #: Consumed by the depth stream: share of diff events dropped (an update-id gap).
    depth_gap_rate: float = 0.0
    #: Consumed by the depth snapshot endpoints (``/api/v3/depth``, ``/fapi/v1/depth``, via
    #: ``app.StaleSnapshots``): share of snapshots served 1–5 s old (older ``lastUpdateId``).
    stale_snapshot_rate: float = 0.0
    #: False: the middleware passes every request through untouched.
    enabled: bool = True

    def __post_init__(self) -> None:
        if not self.server_error_statuses or any(not 500 <= s <= 599 for s in self.server_error_statuses):
            raise ValueError("server_error_statuses must be non-empty 5xx codes")
        for name in (
            "server_error_empty_share",
            "ws_disconnect_rate",
            "depth_gap_rate",
            "stale_snapshot_rate",
        ):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        for prefix in self.endpoints:
            if not prefix.startswith("/"):
                raise ValueError(f"endpoint prefix {prefix!r} must start with '/'")

    def rates_for(self, path: str) -> FaultRates:
        """The rates of ``path``: the longest matching endpoint prefix, else the default."""
        best: str | None = None
        for prefix in self.endpoints:
            if path.startswith(prefix) and (best is None or len(prefix) > len(best)):
                best = prefix
        return self.default if best is None else self.endpoints[best]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultConfig:
        """A config from JSON-like data; endpoint entries override the default's fields.

        Unknown keys raise ``ValueError`` naming them.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault config key(s): {', '.join(unknown)}")
        kwargs: dict[str, Any] = {k: v for k, v in data.items() if k not in ("default", "endpoints")}
        default = FaultRates.from_dict(data.get("default") or {})
        endpoints = {
            str(prefix): FaultRates.from_dict(rates, base=default)
            for prefix, rates in (data.get("endpoints") or {}).items()
        }
        if "server_error_statuses" in kwargs:
            kwargs["server_error_statuses"] = tuple(int(s) for s in kwargs["server_error_statuses"])
        return cls(default=default, endpoints=endpoints, **kwargs)

    @classmethod
    def from_json(cls, source: str | Path | bytes) -> FaultConfig:
        """A config from a JSON file path, or from JSON text given as ``bytes``."""
        raw = source if isinstance(source, bytes) else Path(source).read_bytes()
        data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("a fault config must be a JSON object")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form :meth:`from_dict` reads back."""
        data = dataclasses.asdict(self)
        data["endpoints"] = {p: dataclasses.asdict(r) for p, r in self.endpoints.items()}
        data["server_error_statuses"] = list(self.server_error_statuses)
        return data


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """What the injector does to one request."""

    kind: Fault
    delay_s: float
    #: 5xx status of a server error.
    status: int
    #: A server error's body is empty.
    empty_body: bool
    #: A value in [0, 1) for the variable parts of a fault (the CloudFront request id).
    variant: float


CLOUDFRONT_403_HTML = """<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN" \
"http://www.w3.org/TR/html4/loose.dtd">
<HTML><HEAD><META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=iso-8859-1">
<TITLE>ERROR: The request could not be satisfied</TITLE>
</HEAD><BODY>
<H1>403 ERROR</H1>
<H2>The request could not be satisfied.</H2>
<HR noshade size="1px">
Request blocked.
We can't connect to the server for this app or website at this time. There might be too much traffic \
or a configuration error. Try again later, or contact the app or website owner.
<BR clear="all">
If you provide content to customers through CloudFront, you can find steps to troubleshoot and help \
prevent this error by reviewing the CloudFront documentation.
<BR clear="all">
<HR noshade size="1px">
<PRE>
Generated by cloudfront (CloudFront)
Request ID: {request_id}
</PRE>
<ADDRESS>
</ADDRESS>
</BODY></HTML>"""

_SERVER_ERROR_BODIES: dict[int, dict[str, Any]] = {
    500: {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."},
    502: {"code": -1006, "msg": "An unexpected response was received from the message bus. "
          "Execution status unknown."},
    503: {"code": -1008, "msg": "Server is currently overloaded with other requests. "
          "Please try again in a few minutes."},
    504: {"code": -1007, "msg": "Timeout waiting for response from backend server. "
          "Send status unknown; execution status unknown."},
}  # fmt: skip
_JSON_HEADERS = {"Content-Type": "application/json;charset=UTF-8"}


class _TruncatedResponse(web.StreamResponse):
    """Announces ``len(body)`` bytes, sends the first ``keep`` of them, then closes the connection."""

    def __init__(self, request: web.Request, source: web.Response, body: bytes, keep: int) -> None:
        super().__init__(status=source.status, reason=source.reason, headers=source.headers)
        self.content_length = len(body)
        self._request = request
        self._part = body[:keep]

    async def write_eof(self, data: bytes = b"") -> None:
        if self._part:
            await self.write(self._part)
        transport = self._request.transport
        if transport is not None:
            transport.close()  # flushes what was written, then FIN: the body ends short


#: The same counts as :attr:`FaultInjector.counts`, on the simulator's ``/metrics`` (every injector).
FAULTS = prometheus_client.Counter(
    "streamforge_simulator_faults_total",
    "Requests of the exchange simulator by injected fault (none, server_error, truncated, ...; delayed)",
    ["route", "kind"],
)


class FaultInjector:
    """Draws the faults of a request sequence from a seeded RNG; :attr:`middleware` applies them."""

    def __init__(self, config: FaultConfig, *, rng_seed: int, sleep: Sleep = asyncio.sleep) -> None:
        self.config = config
        self.rng = random.Random(rng_seed)
        self.sleep = sleep
        #: How many requests got each fault (``Fault.NONE`` included) and how many were delayed.
        self.counts: Counter[str] = Counter()
        self.middleware: Middleware = self._make_middleware()

    def decide(self, path: str) -> FaultDecision:
        """The fault of the next request to ``path``; always draws five values from the RNG."""
        rates = self.config.rates_for(path)
        u_latency, u_jitter, u_kind, u_status, u_variant = (self.rng.random() for _ in range(5))
        delay_ms = 0.0
        if (rates.latency_ms or rates.jitter_ms) and u_latency < rates.latency_rate:
            delay_ms = rates.latency_ms + u_jitter * rates.jitter_ms
        kind, edge = Fault.NONE, 0.0
        for candidate in _EXCLUSIVE:
            edge += rates.rate(candidate)
            if u_kind < edge:
                kind = candidate
                break
        statuses = self.config.server_error_statuses
        status = statuses[min(int(u_status * len(statuses)), len(statuses) - 1)]
        return FaultDecision(
            kind=kind,
            delay_s=delay_ms / 1000,
            status=status,
            empty_body=u_variant < self.config.server_error_empty_share,
            variant=u_variant,
        )

    def _make_middleware(self) -> Middleware:
        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not self.config.enabled:
                return await handler(request)
            decision = self.decide(request.path)  # before any await: arrival order decides
            self.counts[decision.kind.value] += 1
            route = "/".join(request.path.split("/")[:3])  # as the requests counter: /api/v3, /data/spot
            FAULTS.labels(route, decision.kind.value).inc()
            if decision.delay_s > 0:
                self.counts["delayed"] += 1
                FAULTS.labels(route, "delayed").inc()
                await self.sleep(decision.delay_s)
            return await self._apply(decision, request, handler)

        return middleware

    async def _apply(
        self, decision: FaultDecision, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        kind = decision.kind
        if kind is Fault.DROP:
            transport = request.transport
            if transport is not None:
                transport.close()
            # aiohttp's attempt to send this fails quietly on the closed transport.
            return web.Response(status=500)
        if kind is Fault.WAF_BLOCK:
            request_id = f"{int(decision.variant * 2**64):016x}"
            html = CLOUDFRONT_403_HTML.replace("{request_id}", request_id)
            return web.Response(
                text=html,
                status=403,
                content_type="text/html",
                headers={"Server": "CloudFront", "X-Cache": "Error from cloudfront"},
            )
        if kind is Fault.SERVER_ERROR:
            body = _SERVER_ERROR_BODIES.get(decision.status, _SERVER_ERROR_BODIES[500])
            if decision.empty_body:
                return web.Response(status=decision.status)
            return web.Response(body=orjson.dumps(body), status=decision.status, headers=_JSON_HEADERS)
        response = await handler(request)
        if kind is Fault.NONE or not isinstance(response, web.Response) or response.prepared:
            return response
        body = response.body
        if not isinstance(body, bytes | bytearray) or len(body) < 2:
            return response
        cut = len(body) // 2
        if kind is Fault.TRUNCATED:
            return _TruncatedResponse(request, response, bytes(body), cut)
        response.body = bytes(body[:cut])  # MALFORMED: cut mid-JSON, consistent Content-Length
        return response


def fault_middleware(config: FaultConfig, *, rng_seed: int) -> Middleware:
    """An aiohttp middleware injecting ``config``'s faults, deterministic for ``rng_seed``.

    Same seed and same sequence of sequential requests: same faults (see the module docstring for
    concurrency). Use :class:`FaultInjector` directly for its counts or an injected ``sleep``.
    """
    return FaultInjector(config, rng_seed=rng_seed).middleware
