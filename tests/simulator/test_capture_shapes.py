"""The simulator answers with exactly the shapes of real Binance captures.

The captures are in ``tests/fixtures/binance/`` (provenance in its ``SOURCES.md``). For each one the
simulator is asked the same request and the two answers are reduced to their *shape*: the keys of
every object in order, the JSON type of every field, and the rendering of every decimal string
(spot: 8 decimals). Values are never compared, structure always is: a missing, extra or reordered
key, a number sent as a string, a 2-decimal price, all fail.

Covered: REST ``/api/v3/klines`` (and ``uiKlines``), REST ``/api/v3/depth``, REST
``/api/v3/aggTrades`` (against the captured ``@aggTrade`` event, whose payload is the REST element
behind an ``e``/``E``/``s`` event header), the error body, the combined WebSocket stream
(``@aggTrade``, ``@kline_1m``, ``@bookTicker``, ``@depth@100ms`` frames; the routes of
:func:`~streamforge_pipelines.simulator.ws.ws_routes`) and a data.binance.vision klines CSV
(:func:`~streamforge_pipelines.simulator.archive.archive_routes`).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streamforge_pipelines.intervals import HOUR_MS
from streamforge_pipelines.simulator import SimulatorServer
from streamforge_pipelines.simulator.archive import archive_routes
from streamforge_pipelines.simulator.ws import WsConfig, ws_routes

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "binance"
SEED = 31337
#: 2024-08-02 05:00:12.345 UTC: mid-minute, so the newest candle of an unbounded request is still open.
NOW_MS = 1_722_556_800_000 + 5 * HOUR_MS + 12_345

DEC8 = re.compile(r"^-?[0-9]+\.[0-9]{8}$")
DECIMAL = re.compile(r"^-?[0-9]+\.[0-9]+$")
INTEGER_TEXT = re.compile(r"^-?[0-9]+$")

#: A real spot error body (documented in reference/BINANCE_API.md section 2; captured in
#: fremantle-industries/ex_binance fixture/vcr_cassettes/spot/public/depth_error.json), HTTP 400.
REAL_ERROR = {"code": -1121, "msg": "Invalid symbol."}


def shape(value: Any) -> Any:
    """The structure of a JSON value, without its values.

    Scalars become their JSON type; strings become ``dec8`` (8-decimal number), ``decimal(n)`` (n
    decimals), ``int-text`` or ``str``. Objects become their ``(key, shape)`` pairs in order. An array
    of containers is a collection: all its elements must have one shape, which stands for it. An
    array of scalars is a fixed record: the shape of each position.
    """
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if value is None:
        return "null"
    if isinstance(value, str):
        if DEC8.match(value):
            return "dec8"
        if DECIMAL.match(value):
            return f"decimal({len(value.partition('.')[2])})"
        return "int-text" if INTEGER_TEXT.match(value) else "str"
    if isinstance(value, dict):
        return ("object", tuple((key, shape(item)) for key, item in value.items()))
    assert isinstance(value, list)
    if value and all(isinstance(item, list | dict) for item in value):
        shapes = {shape(item) for item in value}
        assert len(shapes) == 1, f"a collection whose elements differ in shape: {shapes}"
        return ("array of", shapes.pop())
    return ("record", tuple(shape(item) for item in value))


def load_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


class Reply:
    def __init__(self, status: int, content_type: str, raw: bytes) -> None:
        self.status = status
        self.content_type = content_type
        self.raw = raw

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


def simulator() -> SimulatorServer:
    """A simulator (fixed seed and clock) with its WebSocket streams and archive routes.

    The stream and archive routes are added here unless the app already serves them.
    """
    clock: Callable[[], int] = lambda: NOW_MS  # noqa: E731
    server = SimulatorServer(seed=SEED, clock=clock)
    served = {route.resource.canonical for route in server.app.router.routes() if route.resource}
    if "/stream" not in served:
        # Simulated time runs 20x faster on a stream connection, so every kind of frame comes quickly.
        server.app.add_routes(ws_routes(server.market, clock=clock, config=WsConfig(speedup=20.0)))
    if not any(path.startswith("/data/") for path in served):
        server.app.add_routes(archive_routes(server.market, clock=clock))
    return server


def fetch(*requests: tuple[str, dict[str, str]]) -> list[Reply]:
    """GET each ``(path, params)`` from a fresh simulator, in order."""

    async def main() -> list[Reply]:
        async with (
            simulator() as sim,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        ):
            replies = []
            for path, params in requests:
                async with session.get(sim.base_url + path, params=params) as response:
                    replies.append(Reply(response.status, response.content_type, await response.read()))
            return replies

    return asyncio.run(main())


# ---------------------------------------------------------------------- the shape function itself


def test_shape_tells_apart_what_matters() -> None:
    assert shape(["60685.22000000", 617, "0"]) == ("record", ("dec8", "int", "int-text"))
    assert shape(["60685.22", 617, "0"]) != shape(["60685.22000000", 617, "0"])
    assert shape([1634943780000]) != shape(["1634943780000"]) != shape([1634943780000.0])
    assert shape({"a": 1, "b": "x"}) != shape({"b": "x", "a": 1})
    assert shape({"a": [[1, "2.00000000"]]}) == shape({"a": [[5, "7.00000000"], [6, "8.00000000"]]})
    with pytest.raises(AssertionError):
        shape([[1], [1, 2]])


# ---------------------------------------------------------------------- REST klines


REAL_KLINES = "spot_rest_klines_BTCUSDT_1m_nautilus.json"


@pytest.mark.parametrize("path", ["/api/v3/klines", "/api/v3/uiKlines"])
def test_klines_have_the_captured_shape(path: str) -> None:
    real = load_json(REAL_KLINES)
    # The captured request (10 BTCUSDT 1m klines from 2021-10-22 22:23 UTC), then the newest ten,
    # whose last one is still open.
    same_window, newest = fetch(
        (path, {"symbol": "BTCUSDT", "interval": "1m", "startTime": str(real[0][0]), "limit": "10"}),
        (path, {"symbol": "BTCUSDT", "interval": "1m", "limit": "10"}),
    )
    for reply in (same_window, newest):
        assert reply.status == 200
        assert reply.content_type == "application/json"
        assert len(reply.json) == len(real) == 10
        assert shape(reply.json) == shape(real)
        for sim_row, real_row in zip(reply.json, real, strict=True):
            assert sim_row[11] == real_row[11] == "0"
            for i in (0, 6):  # open and close time: integer milliseconds
                assert len(str(sim_row[i])) == len(str(real_row[i])) == 13
            assert sim_row[6] - sim_row[0] == real_row[6] - real_row[0] == 59_999
    assert [row[0] for row in same_window.json] == [row[0] for row in real]


def test_klines_rows_are_rendered_like_the_capture_byte_for_byte() -> None:
    """Same separators and no spaces: orjson and Binance render a row the same way."""
    real = load_json(REAL_KLINES)
    (reply,) = fetch(("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": "10"}))
    compact_real = json.dumps(real, separators=(",", ":")).encode()
    assert re.sub(rb'"[0-9.]+"|[0-9]+', b"N", reply.raw) == re.sub(rb'"[0-9.]+"|[0-9]+', b"N", compact_real)


# ---------------------------------------------------------------------- REST depth


REAL_DEPTH = "spot_rest_depth_snapshot_NKNUSDT_limit1000.json"


def test_depth_snapshot_has_the_captured_shape() -> None:
    real = load_json(REAL_DEPTH)["response"]
    levels = len(real["bids"])
    (reply,) = fetch(("/api/v3/depth", {"symbol": "BTCUSDT", "limit": str(levels)}))
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert shape(reply.json) == shape(real)
    assert list(reply.json) == ["lastUpdateId", "bids", "asks"]  # spot: no E / T fields
    for side in ("bids", "asks"):
        assert len(reply.json[side]) == len(real[side]) == levels
        assert all(len(level) == 2 for level in reply.json[side])
    bids = [float(price) for price, _ in reply.json["bids"]]
    asks = [float(price) for price, _ in reply.json["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)  # best first, as captured
    assert bids[0] < asks[0]


# ---------------------------------------------------------------------- REST aggTrades


REAL_STREAMS = "spot_ws_kline_aggTrade_bookTicker_combined.jsonl"


def captured_frames(name: str) -> list[dict[str, Any]]:
    """The captured combined-stream frames of a ``.jsonl`` fixture (``<recv time>\\t<frame>`` lines)."""
    frames = []
    for line in (FIXTURES / name).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        _, _, frame = line.partition("\t")
        frames.append(json.loads(frame))
    return frames


def captured_events(name: str, event_type: str) -> list[dict[str, Any]]:
    """The ``data`` of the captured combined-stream frames of one event type (``e``)."""
    return [f["data"] for f in captured_frames(name) if f["data"].get("e") == event_type]


def test_agg_trades_have_the_captured_event_shape() -> None:
    events = captured_events(REAL_STREAMS, "aggTrade")
    assert len(events) == 2
    # The REST element is the event without its header (event type, event time, symbol).
    real = [{k: v for k, v in event.items() if k not in ("e", "E", "s")} for event in events]
    assert list(real[0]) == ["a", "p", "q", "f", "l", "T", "m", "M"]
    (reply,) = fetch(
        ("/api/v3/aggTrades", {"symbol": "BTCUSDT", "startTime": str(NOW_MS - 60_000), "limit": "2"}),
    )
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert shape(reply.json) == shape(real)
    for row in reply.json:
        assert len(str(row["T"])) == 13  # integer milliseconds


# ---------------------------------------------------------------------- WebSocket streams


REAL_DEPTH_STREAM = "spot_ws_depth100ms_NKNUSDT_combined.jsonl"
STREAM_TIMEOUT_S = 15.0


def stream_kind(frame: dict[str, Any]) -> str:
    """``nknusdt@depth@100ms`` -> ``depth@100ms``."""
    return frame["stream"].partition("@")[2]


def collect_frames(streams: list[str], enough: Callable[[dict[str, list[dict]]], bool]) -> dict[str, list]:
    """Frames of a combined-stream connection, by stream kind, until ``enough`` (bounded wait)."""

    async def main() -> dict[str, list]:
        frames: dict[str, list] = {}
        async with simulator() as sim, aiohttp.ClientSession() as session:
            url = f"{sim.base_url}/stream?streams={'/'.join(streams)}"
            async with session.ws_connect(url) as ws, asyncio.timeout(STREAM_TIMEOUT_S):
                async for message in ws:
                    assert message.type == aiohttp.WSMsgType.TEXT
                    frame = json.loads(message.data)
                    frames.setdefault(stream_kind(frame), []).append(frame)
                    if enough(frames):
                        break
        return frames

    return asyncio.run(main())


def test_stream_frames_have_the_captured_shapes() -> None:
    real: dict[str, list] = {}
    for frame in captured_frames(REAL_STREAMS) + captured_frames(REAL_DEPTH_STREAM):
        real.setdefault(stream_kind(frame), []).append(frame)
    assert set(real) == {"aggTrade", "kline_1m", "bookTicker", "depth@100ms"}

    def both_sides(frame: dict[str, Any]) -> bool:
        return bool(frame["data"]["b"]) and bool(frame["data"]["a"])

    def enough(frames: dict[str, list]) -> bool:
        return (
            frames.keys() == real.keys()
            and all(len(v) >= 2 for v in frames.values())
            and any(both_sides(f) for f in frames["depth@100ms"])
        )

    sim = collect_frames([f"btcusdt@{kind}" for kind in real], enough)

    for kind in ("aggTrade", "kline_1m", "bookTicker"):
        assert {shape(f) for f in sim[kind]} == {shape(f) for f in real[kind]}, kind
    # Diff events: a side without changes is an empty array, so compare the frames with both sides.
    assert {shape(f) for f in sim["depth@100ms"] if both_sides(f)} == {
        shape(f) for f in real["depth@100ms"] if both_sides(f)
    }
    for frame in sim["depth@100ms"]:
        assert list(frame["data"]) == list(real["depth@100ms"][0]["data"])
        for level in frame["data"]["b"] + frame["data"]["a"]:
            assert shape(level) == ("record", ("dec8", "dec8"))  # removals too: "0.00000000"
    kline = sim["kline_1m"][0]["data"]["k"]
    assert kline["B"] == real["kline_1m"][0]["data"]["k"]["B"] == "0"
    assert kline["i"] == "1m" and kline["T"] - kline["t"] == 59_999


# ---------------------------------------------------------------------- data.binance.vision CSV


REAL_ARCHIVE = "vision_spot_klines_BTCUSDT-1h-2023-10-27.csv"


def csv_shape(row: list[str]) -> tuple[str, ...]:
    """The format of each CSV cell (all cells are text in a CSV)."""
    return tuple(shape(cell) for cell in row)


def test_archive_klines_csv_has_the_captured_shape() -> None:
    real = list(csv.reader(io.StringIO((FIXTURES / REAL_ARCHIVE).read_text())))
    name = "BTCUSDT-1h-2023-10-27"
    (reply,) = fetch((f"/data/spot/daily/klines/BTCUSDT/1h/{name}.zip", {}))
    assert reply.status == 200
    with zipfile.ZipFile(io.BytesIO(reply.raw)) as archive:
        assert archive.namelist() == [f"{name}.csv"]
        text = archive.read(f"{name}.csv").decode()
    sim = list(csv.reader(io.StringIO(text)))
    assert len(sim) == 24
    assert [row[0] for row in sim[: len(real)]] == [row[0] for row in real]  # same candles, no header
    assert {csv_shape(row) for row in sim} == {csv_shape(row) for row in real}
    assert csv_shape(real[0]) == (
        "int-text",
        *["dec8"] * 5,
        "int-text",
        "dec8",
        "int-text",
        *["dec8"] * 2,
        "int-text",
    )


# ---------------------------------------------------------------------- error bodies


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v3/klines", {"symbol": "NOPEUSDT", "interval": "1m"}),  # -1121
        ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "7m"}),  # -1120
        ("/api/v3/klines", {"interval": "1m"}),  # -1102
        ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "startTime": "x"}),  # -1100
        ("/api/v3/klines", {"symbol": "BTCUSDT", "interval": "1m", "limit": "0"}),  # -1130
        ("/api/v3/exchangeInfo", {"symbol": "NOPEUSDT"}),  # -1121
        ("/api/v3/depth", {"symbol": "NOPEUSDT"}),  # -1121
        ("/api/v3/aggTrades", {"symbol": "BTCUSDT", "limit": "0"}),  # -1130
    ],
)
def test_error_bodies_have_the_captured_shape(path: str, params: dict[str, str]) -> None:
    (reply,) = fetch((path, params))
    assert reply.status == 400
    assert reply.content_type == "application/json"
    assert shape(reply.json) == shape(REAL_ERROR) == ("object", (("code", "int"), ("msg", "str")))
    assert reply.json["code"] < 0
    assert reply.raw.startswith(b'{"code":-1')
