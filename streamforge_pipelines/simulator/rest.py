"""What the simulator's REST routes share: Binance's error JSON, the app state, parameter parsing.

The spot routes (:mod:`.spot`), the USD-M routes (:mod:`.usdm`) and the app (:mod:`.app`) import
this module and nothing of each other, so no REST module imports a sibling that imports it back.

* :class:`ApiError` — a request Binance would reject, rendered as ``{"code": int, "msg": str}``;
* :class:`SimulatorState` under :data:`STATE` — the market, the clock and the faults the handlers
  apply; :data:`NOW_MS` — the clock reading of a request (taken once by the app's middleware);
* parameters as Binance validates them: :func:`mandatory`, :func:`optional_long`,
  :func:`limit_param`, :func:`check_symbol`; :func:`json_response` renders a body (orjson).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from . import book
from .clock import Clock
from .faults import FaultConfig
from .market import Market
from .symbols import SymbolSpec, UnknownSymbolError

__all__ = [
    "NOW_MS",
    "STALE_MAX_WINDOWS",
    "STALE_MIN_WINDOWS",
    "STATE",
    "ApiError",
    "SimulatorState",
    "StaleSnapshots",
    "check_symbol",
    "json_response",
    "limit_param",
    "mandatory",
    "optional_long",
    "request_now",
]

_LONG = re.compile(r"^[0-9]{1,20}$")
_LONG_RANGE = "^[0-9]{1,20}$"
#: Age of a stale depth snapshot, in 100 ms windows: 1 to 5 seconds.
STALE_MIN_WINDOWS = 10
STALE_MAX_WINDOWS = 50
_JSON_HEADERS = {"Content-Type": "application/json;charset=UTF-8"}


class ApiError(Exception):
    """A request Binance would reject: rendered as ``{"code": code, "msg": msg}`` with ``status``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status

    @classmethod
    def mandatory(cls, name: str) -> ApiError:
        return cls(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")

    @classmethod
    def illegal(cls, name: str, legal: str = _LONG_RANGE) -> ApiError:
        return cls(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'.")

    @classmethod
    def invalid(cls, name: str) -> ApiError:
        return cls(-1130, f"Data sent for parameter '{name}' is not valid.")

    @classmethod
    def bad_combo(cls) -> ApiError:
        return cls(-1128, "Combination of optional parameters invalid.")

    @classmethod
    def bad_symbol(cls) -> ApiError:
        return cls(-1121, "Invalid symbol.")


class StaleSnapshots:
    """Seeded decisions of the stale-snapshot fault (:attr:`FaultConfig.stale_snapshot_rate`).

    Every depth request (spot and USD-M) draws two values from one ``random.Random(seed)``,
    synchronously in its handler, so sequential requests get the same decisions for the same seed.
    """

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self.rng = random.Random(seed)

    def age_ms(self) -> int:
        """How old the next snapshot is: 0 (current) or 1–5 s in whole 100 ms windows."""
        u_stale, u_age = self.rng.random(), self.rng.random()
        if u_stale >= self.rate:
            return 0
        span = STALE_MAX_WINDOWS - STALE_MIN_WINDOWS + 1
        windows = STALE_MIN_WINDOWS + min(int(u_age * span), span - 1)
        return windows * book.WINDOW_MS


@dataclass(slots=True)
class SimulatorState:
    """What the handlers share: the market, the clock and the faults the handlers apply."""

    market: Market
    clock: Clock
    symbol_info: dict[str, dict[str, Any]]
    faults: FaultConfig | None = None
    #: None: depth snapshots are never stale.
    stale: StaleSnapshots | None = None
    #: Market ("spot", "usdm") -> the ``REQUEST_WEIGHT`` entry its ``exchangeInfo`` publishes (the
    #: limit the app enforces); a market not named publishes its module's default.
    weight_limits: dict[str, dict[str, Any]] = field(default_factory=dict)

    def rate_limits(self, market: str, defaults: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``exchangeInfo``'s ``rateLimits``: ``defaults`` with the enforced REQUEST_WEIGHT entry."""
        weight = self.weight_limits.get(market)
        if weight is None:
            return defaults
        return [weight if r["rateLimitType"] == "REQUEST_WEIGHT" else r for r in defaults]

    def snapshot_time(self, now_ms: int) -> int:
        """The clock reading whose book a depth snapshot at ``now_ms`` shows (earlier when stale)."""
        return now_ms if self.stale is None else now_ms - self.stale.age_ms()


STATE = web.AppKey("simulator_state", SimulatorState)
#: The clock reading of a request, taken once by the middleware (plain key on aiohttp < 3.14).
NOW_MS: Any = web.RequestKey("now_ms", int) if hasattr(web, "RequestKey") else "now_ms"


def json_response(payload: Any, status: int = 200) -> web.Response:
    """``payload`` as Binance's JSON body (orjson, ``application/json;charset=UTF-8``)."""
    return web.Response(body=orjson.dumps(payload), status=status, headers=_JSON_HEADERS)


def request_now(request: web.Request) -> int:
    """The clock reading of ``request`` (one per request, so a response is one instant)."""
    return request[NOW_MS]


def limit_param(query: Mapping[str, str], default: int, maximum: int) -> int:
    """``limit``: default when absent, ``-1130`` below 1, capped at ``maximum``."""
    limit = optional_long(query, "limit")
    if limit is None:
        return default
    if limit < 1:
        raise ApiError.invalid("limit")
    return min(limit, maximum)


def mandatory(query: Mapping[str, str], name: str) -> str:
    value = query.get(name)
    if not value:
        raise ApiError.mandatory(name)
    return value


def optional_long(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    if value == "":
        raise ApiError(-1105, f"Parameter '{name}' was empty.")
    if not _LONG.match(value):
        raise ApiError.illegal(name)
    return int(value)


def check_symbol(market: Market, name: str) -> SymbolSpec:
    try:
        return market.symbol(name)
    except UnknownSymbolError:
        raise ApiError.bad_symbol() from None
