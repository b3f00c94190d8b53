"""Connection rules, time scale and faults of the WebSocket streams (:class:`WsConfig`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["WsConfig"]


@dataclass(frozen=True, slots=True)
class WsConfig:
    """Connection rules, time scale and faults of the WebSocket streams (tests shorten them)."""

    ping_interval_s: float = 20.0
    pong_timeout_s: float = 60.0
    max_lifetime_s: float = 86_400.0
    max_incoming_per_s: int = 5
    max_streams: int = 1024
    #: Simulated seconds per real second.
    speedup: float = 1.0
    #: Share of connections dropped by the server (``FaultConfig.ws_disconnect_rate``).
    disconnect_rate: float = 0.0
    #: A dropped connection goes at a uniform real time in ``[0, disconnect_within_s)``.
    disconnect_within_s: float = 60.0
    #: Share of diff-depth events not sent (``FaultConfig.depth_gap_rate``).
    depth_gap_rate: float = 0.0
    fault_seed: int = 0
    #: USD-M futures connection rules (§4.4): ping every 3 min, pong within 10 min, 10 msgs/s,
    #: 200 streams; the other fields (lifetime, speedup, faults) are shared with spot.
    futures_ping_interval_s: float = 180.0
    futures_pong_timeout_s: float = 600.0
    futures_max_incoming_per_s: int = 10
    futures_max_streams: int = 200

    def __post_init__(self) -> None:
        for name in (
            "ping_interval_s",
            "pong_timeout_s",
            "max_lifetime_s",
            "speedup",
            "disconnect_within_s",
            "futures_ping_interval_s",
            "futures_pong_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if (
            min(
                self.max_incoming_per_s,
                self.max_streams,
                self.futures_max_incoming_per_s,
                self.futures_max_streams,
            )
            < 1
        ):
            raise ValueError("max_incoming_per_s and max_streams must be at least 1")
        for name in ("disconnect_rate", "depth_gap_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1]")

    @classmethod
    def from_faults(cls, faults: Any, **fields: Any) -> WsConfig:
        """A config taking ``ws_disconnect_rate`` / ``depth_gap_rate`` from a ``faults.FaultConfig``."""
        return cls(disconnect_rate=faults.ws_disconnect_rate, depth_gap_rate=faults.depth_gap_rate, **fields)

    def for_futures(self) -> WsConfig:
        """The rules of the futures endpoints: the ``futures_*`` fields in place of the spot ones."""
        return dataclasses.replace(
            self,
            ping_interval_s=self.futures_ping_interval_s,
            pong_timeout_s=self.futures_pong_timeout_s,
            max_incoming_per_s=self.futures_max_incoming_per_s,
            max_streams=self.futures_max_streams,
        )
