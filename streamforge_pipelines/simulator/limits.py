"""Binance's REST rate limits for the exchange simulator: weight headers, 429s and escalating 418 bans.

``reference/BINANCE_API.md`` section 2 describes what is modelled:

* ``REQUEST_WEIGHT``: 6000 weight per 1 minute per client address; ``RAW_REQUESTS``: 300000 requests
  per 5 minutes. Both use fixed windows aligned to the clock (window ``n`` covers
  ``[n * length, (n + 1) * length)`` in epoch ms), as Binance's are aligned to the minute.
* Every response carries ``X-MBX-USED-WEIGHT-1M`` and the legacy ``X-MBX-USED-WEIGHT`` (same value):
  the weight the client has used in the current 1-minute window.
* A request that would take the client over a limit is answered ``429`` with ``Retry-After``: the
  whole seconds until the limited window ends, and the ``-1003`` body.
* A client that sends another request before that window ends is banned: ``418`` with
  ``Retry-After`` (seconds until the ban ends) and the "IP banned until <epoch ms>" body. Every
  request during a ban gets the same ``418``. Bans double for repeat offenders, from
  ``ban_initial_s`` (2 minutes) up to ``ban_max_s`` (3 days).

Choices where Binance's behaviour is not documented:

* A rejected request (429 or 418) is not charged: neither its weight nor its raw count.
* The first request after a 429 in the same window is banned (``tolerated_after_429 = 0``).
* The ban count of a client never decays (for the lifetime of the :class:`RateLimiter`).
* Binance documents no message for ``RAW_REQUESTS``; this one follows the weight message's pattern.
* The header name stays ``X-MBX-USED-WEIGHT-1M`` when tests shorten ``window_1m_ms`` (clients parse
  the name); the 429 message names the configured window (``1 MINUTE`` for 60 000 ms).

The client is ``request.remote`` (the peer address) unless ``client_of`` says otherwise; to tell
clients apart on one machine, connect from different loopback addresses (``127.0.0.2`` ...).

Request weight is the caller's :data:`WeightOf` function: :func:`make_weight_of` builds one from a
path -> weight table (:data:`ROUTE_WEIGHTS`) and path -> parameter-dependent weight functions
(:data:`PARAM_WEIGHTS`: spot depth, USD-M futures klines and depth by ``limit``);
:func:`default_weight_of` is the one built from both tables.

Wiring (the limiter outermost, so every admitted request is charged, also one that then fails)::

    limiter = RateLimiter(LimitsConfig())
    app = web.Application(
        middlewares=[rate_limit_middleware(limiter, weight_of=default_weight_of, clock=clock), ...]
    )
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

__all__ = [
    "HEADER_USED_WEIGHT",
    "HEADER_USED_WEIGHT_1M",
    "PARAM_WEIGHTS",
    "ROUTE_WEIGHTS",
    "Decision",
    "LimitsConfig",
    "ParamWeight",
    "RateLimiter",
    "WeightOf",
    "default_weight_of",
    "futures_depth_weight",
    "futures_klines_weight",
    "make_weight_of",
    "rate_limit_middleware",
    "remote_client",
    "spot_depth_weight",
    "weight_rate_limit",
]

Clock = Callable[[], int]
#: Request -> its weight.
WeightOf = Callable[[web.Request], int]
#: Query parameters -> weight, for endpoints whose weight depends on them.
ParamWeight = Callable[[Mapping[str, str]], int]
ClientOf = Callable[[web.Request], str]

HEADER_USED_WEIGHT_1M: Final = "X-MBX-USED-WEIGHT-1M"
HEADER_USED_WEIGHT: Final = "X-MBX-USED-WEIGHT"
_JSON_HEADERS: Final = {"Content-Type": "application/json;charset=UTF-8"}

#: Fixed request weights per path (section 2 of the reference; USD-M ping/time/exchangeInfo: 1).
#: Paths with a parameter-dependent weight list the weight of their default ``limit`` here.
ROUTE_WEIGHTS: dict[str, int] = {
    "/api/v3/ping": 1,
    "/api/v3/time": 1,
    "/api/v3/exchangeInfo": 20,
    "/api/v3/depth": 5,
    "/api/v3/trades": 25,
    "/api/v3/historicalTrades": 25,
    "/api/v3/aggTrades": 4,
    "/api/v3/klines": 2,
    "/api/v3/uiKlines": 2,
    "/api/v3/avgPrice": 2,
    "/fapi/v1/ping": 1,
    "/fapi/v1/time": 1,
    "/fapi/v1/exchangeInfo": 1,
    "/fapi/v1/klines": 5,
    "/fapi/v1/continuousKlines": 5,
    "/fapi/v1/indexPriceKlines": 5,
    "/fapi/v1/markPriceKlines": 5,
    "/fapi/v1/premiumIndexKlines": 5,
    "/fapi/v1/depth": 10,
}


def _limit_param(query: Mapping[str, str], default: int) -> int:
    """The ``limit`` parameter, or ``default`` when absent or not a positive integer."""
    text = query.get("limit")
    if text is None or not text.isdigit() or int(text) < 1:
        return default
    return int(text)


def spot_depth_weight(query: Mapping[str, str]) -> int:
    """GET /api/v3/depth: 1-100 -> 5, 101-500 -> 25, 501-1000 -> 50, 1001-5000 (and capped) -> 250."""
    limit = _limit_param(query, 100)
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def futures_klines_weight(query: Mapping[str, str]) -> int:
    """GET /fapi/v1/klines (and its variants): [1,100) -> 1, [100,500) -> 2, [500,1000] -> 5, > 1000 -> 10."""
    limit = _limit_param(query, 500)
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


def futures_depth_weight(query: Mapping[str, str]) -> int:
    """GET /fapi/v1/depth: <= 50 -> 2, 100 -> 5, 500 -> 10, 1000 -> 20 (default limit 500)."""
    limit = _limit_param(query, 500)
    if limit <= 50:
        return 2
    if limit <= 100:
        return 5
    if limit <= 500:
        return 10
    return 20


#: Paths whose weight depends on their query parameters.
PARAM_WEIGHTS: dict[str, ParamWeight] = {
    "/api/v3/depth": spot_depth_weight,
    "/fapi/v1/klines": futures_klines_weight,
    "/fapi/v1/continuousKlines": futures_klines_weight,
    "/fapi/v1/indexPriceKlines": futures_klines_weight,
    "/fapi/v1/markPriceKlines": futures_klines_weight,
    "/fapi/v1/premiumIndexKlines": futures_klines_weight,
    "/fapi/v1/depth": futures_depth_weight,
}


def make_weight_of(
    route_weights: Mapping[str, int] = ROUTE_WEIGHTS,
    param_weights: Mapping[str, ParamWeight] = PARAM_WEIGHTS,
    *,
    unknown: int = 0,
) -> WeightOf:
    """A :data:`WeightOf`: ``param_weights[path](query)``, else ``route_weights[path]``, else ``unknown``."""

    def weight_of(request: web.Request) -> int:
        path = request.path
        by_params = param_weights.get(path)
        if by_params is not None:
            return by_params(request.query)
        return route_weights.get(path, unknown)

    return weight_of


#: The weight function of the tables above (unknown paths cost nothing).
default_weight_of: WeightOf = make_weight_of()


def remote_client(request: web.Request) -> str:
    """The default client key: the peer address of the connection."""
    return request.remote or ""


# ---------------------------------------------------------------------- the limiter


@dataclass
class LimitsConfig:
    """Limits of one simulated exchange; tests may shorten the windows or lower the limits."""

    request_weight_per_minute: int = 6000
    raw_requests_per_5m: int = 300000
    window_1m_ms: int = 60_000
    window_5m_ms: int = 300_000
    ban_initial_s: int = 120
    ban_max_s: int = 3 * 86400
    #: False: count and report weight, never reject.
    enabled: bool = True
    #: Requests a client may still send in a limited window (answered 429) before it is banned.
    tolerated_after_429: int = 0

    def __post_init__(self) -> None:
        for name in ("request_weight_per_minute", "raw_requests_per_5m", "window_1m_ms", "window_5m_ms"):
            if getattr(self, name) < 1:
                raise ValueError(f"LimitsConfig.{name} must be >= 1")
        if not 1 <= self.ban_initial_s <= self.ban_max_s:
            raise ValueError("LimitsConfig needs 1 <= ban_initial_s <= ban_max_s")
        if self.tolerated_after_429 < 0:
            raise ValueError("LimitsConfig.tolerated_after_429 must be >= 0")


@dataclass(frozen=True, slots=True)
class Decision:
    """The limiter's answer to one request: ``status`` 200 (serve it), 429 or 418."""

    status: int
    #: Weight used by the client in the current 1-minute window (the header value).
    used_weight: int
    #: Requests counted for the client in the current 5-minute window.
    raw_requests: int
    retry_after_s: int | None = None
    #: The ``-1003`` message of a 429 or 418.
    message: str | None = None
    banned_until_ms: int | None = None

    @property
    def allowed(self) -> bool:
        return self.status == 200

    def body(self) -> dict[str, object] | None:
        """The JSON error body of a rejection."""
        return None if self.message is None else {"code": -1003, "msg": self.message}


@dataclass(slots=True)
class _Client:
    weight_window: int = -1
    weight: int = 0
    raw_window: int = -1
    raw: int = 0
    #: End of the window in which the client got a 429: requests before it count toward a ban.
    limited_until_ms: int = 0
    after_429: int = 0
    banned_until_ms: int = 0
    bans: int = 0


def _interval_text(window_ms: int) -> str:
    """``60000`` -> ``"1 MINUTE"``, ``300000`` -> ``"5 MINUTE"``, ``1000`` -> ``"1 SECOND"``."""
    for unit_ms, name in ((86_400_000, "DAY"), (3_600_000, "HOUR"), (60_000, "MINUTE"), (1000, "SECOND")):
        if window_ms % unit_ms == 0:
            return f"{window_ms // unit_ms} {name}"
    return f"{window_ms} MILLISECOND"


def weight_rate_limit(config: LimitsConfig) -> dict[str, object]:
    """The ``REQUEST_WEIGHT`` entry of ``exchangeInfo``'s ``rateLimits`` for ``config`` (Binance's shape:
    ``{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}``), so
    a client reading the published limit learns the one enforced, shortened test windows included."""
    num, unit = _interval_text(config.window_1m_ms).split()
    return {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": unit,
        "intervalNum": int(num),
        "limit": config.request_weight_per_minute,
    }


def _ceil_s(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


class RateLimiter:
    """REQUEST_WEIGHT and RAW_REQUESTS per client in fixed clock-aligned windows, with bans.

    Single event loop: :meth:`check` does not await, so concurrent requests cannot interleave in it.
    """

    def __init__(self, config: LimitsConfig | None = None) -> None:
        self.config = config if config is not None else LimitsConfig()
        self._clients: dict[str, _Client] = {}
        self._weight_message = (
            f"Too much request weight used; current limit is {self.config.request_weight_per_minute} "
            f"request weight per {_interval_text(self.config.window_1m_ms)}. "
            "Please use WebSocket Streams for live updates to avoid polling the API."
        )
        self._raw_message = (
            f"Too many requests; current limit is {self.config.raw_requests_per_5m} "
            f"requests per {_interval_text(self.config.window_5m_ms)}. "
            "Please use WebSocket Streams for live updates to avoid polling the API."
        )

    def _client(self, client: str, now_ms: int) -> _Client:
        state = self._clients.get(client)
        if state is None:
            state = self._clients[client] = _Client()
        cfg = self.config
        window = now_ms // cfg.window_1m_ms
        if window != state.weight_window:
            state.weight_window, state.weight = window, 0
        raw_window = now_ms // cfg.window_5m_ms
        if raw_window != state.raw_window:
            state.raw_window, state.raw = raw_window, 0
        return state

    def used_weight(self, client: str, now_ms: int) -> int:
        """Weight ``client`` has used in the 1-minute window of ``now_ms``."""
        return self._client(client, now_ms).weight

    def banned_until(self, client: str) -> int:
        """Epoch ms at which ``client``'s latest ban ends (0: never banned)."""
        state = self._clients.get(client)
        return 0 if state is None else state.banned_until_ms

    def ban_count(self, client: str) -> int:
        """How many times ``client`` has been banned."""
        state = self._clients.get(client)
        return 0 if state is None else state.bans

    def reset(self) -> None:
        """Forget every client (counts, 429 marks, bans and ban history)."""
        self._clients.clear()

    def check(self, client: str, weight: int, now_ms: int) -> Decision:
        """Decide on one request of ``weight`` from ``client`` at ``now_ms``; charge it when allowed."""
        cfg = self.config
        state = self._client(client, now_ms)
        if not cfg.enabled:
            return self._admit(state, weight)
        if now_ms < state.banned_until_ms:
            return self._banned(state, now_ms)
        if now_ms < state.limited_until_ms:
            if state.after_429 >= cfg.tolerated_after_429:
                return self._ban(state, now_ms)
            state.after_429 += 1
        weight_over = state.weight + weight > cfg.request_weight_per_minute
        raw_over = state.raw + 1 > cfg.raw_requests_per_5m
        if not (weight_over or raw_over):
            return self._admit(state, weight)
        until = 0
        if weight_over:
            until = (state.weight_window + 1) * cfg.window_1m_ms
        if raw_over:
            until = max(until, (state.raw_window + 1) * cfg.window_5m_ms)
        if now_ms >= state.limited_until_ms:
            state.after_429 = 0
        state.limited_until_ms = max(state.limited_until_ms, until)
        return Decision(
            status=429,
            used_weight=state.weight,
            raw_requests=state.raw,
            retry_after_s=_ceil_s(state.limited_until_ms - now_ms),
            message=self._weight_message if weight_over else self._raw_message,
        )

    @staticmethod
    def _admit(state: _Client, weight: int) -> Decision:
        state.weight += weight
        state.raw += 1
        return Decision(status=200, used_weight=state.weight, raw_requests=state.raw)

    def _ban(self, state: _Client, now_ms: int) -> Decision:
        cfg = self.config
        seconds = min(cfg.ban_initial_s * 2**state.bans, cfg.ban_max_s)
        state.bans += 1
        state.banned_until_ms = now_ms + seconds * 1000
        state.limited_until_ms = 0
        state.after_429 = 0
        return self._banned(state, now_ms)

    @staticmethod
    def _banned(state: _Client, now_ms: int) -> Decision:
        until = state.banned_until_ms
        return Decision(
            status=418,
            used_weight=state.weight,
            raw_requests=state.raw,
            retry_after_s=_ceil_s(until - now_ms),
            message=(
                f"Way too much request weight used; IP banned until {until}. "
                "Please use WebSocket Streams for live updates to avoid bans."
            ),
            banned_until_ms=until,
        )


# ---------------------------------------------------------------------- the middleware


def _set_weight_headers(response: web.StreamResponse, used: int) -> None:
    if not response.prepared:
        response.headers[HEADER_USED_WEIGHT_1M] = str(used)
        response.headers[HEADER_USED_WEIGHT] = str(used)  # legacy name, same value


def rate_limit_middleware(
    limiter: RateLimiter,
    *,
    weight_of: WeightOf = default_weight_of,
    clock: Clock,
    client_of: ClientOf = remote_client,
) -> Middleware:
    """An aiohttp middleware enforcing ``limiter``: 429/418 with ``Retry-After`` and weight headers.

    ``clock`` returns epoch ms (inject one in tests); ``client_of`` keys the limits (default: the
    peer address). Responses already prepared by an inner handler (WebSocket upgrades) keep their
    headers; ``web.HTTPException`` raised inside gets the weight headers too.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        decision = limiter.check(client_of(request), weight_of(request), clock())
        if not decision.allowed:
            response = web.Response(
                body=orjson.dumps(decision.body()), status=decision.status, headers=_JSON_HEADERS
            )
            response.headers["Retry-After"] = str(decision.retry_after_s)
            _set_weight_headers(response, decision.used_weight)
            return response
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            _set_weight_headers(exc, decision.used_weight)
            raise
        _set_weight_headers(response, decision.used_weight)
        return response

    return middleware
