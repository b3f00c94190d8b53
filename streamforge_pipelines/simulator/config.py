"""The simulator's configuration: seed, symbols, cross-asset structure and exchange downtime.

:class:`SimulatorConfig` is what :class:`~.market.Market`, :func:`~.app.build_app`,
:class:`~.server.SimulatorServer` and :func:`~.server.serve` accept; :func:`load_config` reads one
from a JSON or YAML file::

    seed: 42
    symbols: [BTCUSDT, ETHUSDT, {name: NEWUSDT, base_asset: NEW, base_price: 2.5,
              tick_size: "0.0001", step_size: "0.1", listing: "2024-06-01"}]
    listings: {ETHUSDT: "2024-01-15T12:00:00Z"}      # override a listing time
    clusters: [{name: majors, symbols: [BTCUSDT, ETHUSDT], loading: 0.5}]
    lead_lags: [{leader: BTCUSDT, follower: ETHUSDT, lag_minutes: 3, strength: 0.6}]
    downtime: [{start: "2024-08-01T02:00:00Z", end: "2024-08-01T03:30:00Z"}]   # symbols: optional

Times are ISO dates/datetimes (UTC) or epoch milliseconds. Downtime windows are floored/ceiled to
whole minutes; a window without ``symbols`` stops the whole exchange.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from streamforge_pipelines.intervals import MINUTE_MS

from .symbols import DEFAULT_SYMBOLS, SymbolSpec

__all__ = [
    "Cluster",
    "DowntimeWindow",
    "LeadLag",
    "SimulatorConfig",
    "check_file",
    "check_structure",
    "config_from_mapping",
    "load_config",
    "parse_time_ms",
]


@dataclass(frozen=True, slots=True)
class Cluster:
    """Symbols that share a cluster factor: ``loading`` is each member's correlation with it."""

    name: str
    symbols: tuple[str, ...]
    loading: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.loading < 1.0:
            raise ValueError(f"cluster {self.name}: loading must be in [0, 1)")


@dataclass(frozen=True, slots=True)
class LeadLag:
    """``follower``'s minute returns follow ``leader``'s with a lag of ``lag_minutes`` minutes.

    ``strength`` is the correlation between the follower's minute shock at ``t`` and the leader's
    at ``t - lag_minutes``.
    """

    leader: str
    follower: str
    lag_minutes: int
    strength: float = 0.6

    def __post_init__(self) -> None:
        if self.lag_minutes < 1:
            raise ValueError("lag_minutes must be at least 1")
        if not 0.0 < self.strength < 1.0:
            raise ValueError("strength must be in (0, 1)")
        if self.leader == self.follower:
            raise ValueError("a symbol cannot lead itself")


@dataclass(frozen=True, slots=True)
class DowntimeWindow:
    """The exchange is down in ``[start_ms, end_ms)`` (whole minutes): no trades, no candles."""

    start_ms: int
    end_ms: int
    symbols: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        start = self.start_ms - self.start_ms % MINUTE_MS
        end = -(-self.end_ms // MINUTE_MS) * MINUTE_MS
        if end <= start:
            raise ValueError("a downtime window must end after it starts")
        object.__setattr__(self, "start_ms", start)
        object.__setattr__(self, "end_ms", end)

    def applies_to(self, symbol: str) -> bool:
        return self.symbols is None or symbol in self.symbols


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything the simulated exchange is a pure function of.

    ``symbols`` None means :data:`~.symbols.DEFAULT_SYMBOLS`; entries are names of default symbols
    or :class:`~.symbols.SymbolSpec` objects. ``listings`` overrides listing times (epoch ms).
    """

    seed: int = 0
    symbols: tuple[str | SymbolSpec, ...] | None = None
    listings: Mapping[str, int] = field(default_factory=dict)
    clusters: tuple[Cluster, ...] = ()
    lead_lags: tuple[LeadLag, ...] = ()
    downtime: tuple[DowntimeWindow, ...] = ()


def parse_time_ms(value: Any) -> int:
    """Epoch ms from an int, a digit string, or an ISO date/datetime (naive means UTC)."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int):
        return value
    if hasattr(value, "isoformat") and not isinstance(value, datetime):  # a date (YAML parses them)
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


def _symbol_entry(entry: Any) -> str | SymbolSpec:
    if isinstance(entry, str):
        return entry
    if not isinstance(entry, Mapping):
        raise ValueError(f"a symbol is a name or a mapping, not {entry!r}")
    fields = dict(entry)
    listing = fields.pop("listing", fields.pop("listing_ms", "2018-01-01"))
    name = fields.pop("name")
    base = fields.pop("base_asset", name.removesuffix("USDT"))
    return SymbolSpec(
        name=name,
        base_asset=base,
        quote_asset=fields.pop("quote_asset", "USDT"),
        listing_ms=parse_time_ms(listing),
        base_price=float(fields.pop("base_price")),
        tick_size=str(fields.pop("tick_size")),
        step_size=str(fields.pop("step_size")),
        quote_volume_per_minute=float(fields.pop("quote_volume_per_minute", 20_000.0)),
        trades_per_minute=float(fields.pop("trades_per_minute", 50.0)),
        **fields,
    )


def config_from_mapping(data: Mapping[str, Any]) -> SimulatorConfig:
    """A :class:`SimulatorConfig` from parsed JSON/YAML (see the module docstring for the keys)."""
    unknown = set(data) - {"seed", "symbols", "listings", "clusters", "lead_lags", "downtime"}
    if unknown:
        raise ValueError(f"unknown simulator config keys: {sorted(unknown)}")
    symbols = data.get("symbols")
    return SimulatorConfig(
        seed=int(data.get("seed", 0)),
        symbols=None if symbols is None else tuple(_symbol_entry(s) for s in symbols),
        listings={k: parse_time_ms(v) for k, v in (data.get("listings") or {}).items()},
        clusters=tuple(
            Cluster(c["name"], tuple(c["symbols"]), float(c.get("loading", 0.5)))
            for c in data.get("clusters") or ()
        ),
        lead_lags=tuple(
            LeadLag(d["leader"], d["follower"], int(d["lag_minutes"]), float(d.get("strength", 0.6)))
            for d in data.get("lead_lags") or ()
        ),
        downtime=tuple(
            DowntimeWindow(
                parse_time_ms(d["start"]),
                parse_time_ms(d["end"]),
                None if d.get("symbols") is None else tuple(d["symbols"]),
            )
            for d in data.get("downtime") or ()
        ),
    )


def load_config(path: str | Path) -> SimulatorConfig:
    """Read a :class:`SimulatorConfig` from a ``.json`` or ``.yaml``/``.yml`` file."""
    p = Path(path)
    text = p.read_text()
    data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    if not isinstance(data, Mapping):
        raise ValueError(f"{p}: the simulator config must be a mapping")
    return config_from_mapping(data)


def check_file(path: str | Path) -> SimulatorConfig:
    """:func:`load_config` with its structure checked against its symbols (or the defaults'), and
    every failure (missing file, bad YAML, unknown key or symbol) a one-line ``ValueError``."""
    try:
        config = load_config(path)
        names = [s if isinstance(s, str) else s.name for s in config.symbols or DEFAULT_SYMBOLS]
        check_structure(names, config)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ValueError(f"{path}: not valid YAML: {exc.problem or exc.context}{where}") from None
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: {' '.join(str(exc).split())}") from None
    return config


def check_structure(names: Sequence[str], config: SimulatorConfig) -> None:
    """Reject clusters/lead-lags naming unknown symbols, overlapping clusters or lead-lag cycles."""
    known = set(names)
    seen: set[str] = set()
    for c in config.clusters:
        for s in c.symbols:
            if s not in known:
                raise ValueError(f"cluster {c.name}: unknown symbol {s}")
            if s in seen:
                raise ValueError(f"{s} is in two clusters")
            seen.add(s)
    leaders: dict[str, str] = {}
    for ll in config.lead_lags:
        for s in (ll.leader, ll.follower):
            if s not in known:
                raise ValueError(f"lead-lag: unknown symbol {s}")
        if ll.follower in leaders:
            raise ValueError(f"{ll.follower} follows two leaders")
        leaders[ll.follower] = ll.leader
    for start in leaders:
        s, hops = start, 0
        while s in leaders:
            s, hops = leaders[s], hops + 1
            if hops > len(leaders):
                raise ValueError("lead-lag relations form a cycle")
