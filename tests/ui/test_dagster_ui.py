"""The Dagster UI over the real code location, looked at in headless Chromium.

``dagster dev`` runs on a free port with a fresh ``DAGSTER_HOME`` (telemetry off, the community
pop-up dismissed) in which ``correlation_graph`` of one day was materialized first (from simulator
candles written to the store); Chromium is driven over the DevTools protocol: open the
``candles_5m`` asset page and wait until the React app has rendered the asset from GraphQL; open
the ``correlation_graph`` page, open its ``graph`` metadata and check that the picture of the graph
loads in the browser. Screenshots are kept as test artifacts (``test-artifacts/ui/*.png``).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import struct
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster_dev import started_dagster_dev, stop_group, tail
from websockets.sync.client import ClientConnection, connect

from streamforge_pipelines.datasets import CANDLES
from streamforge_pipelines.intervals import day_start_ms
from streamforge_pipelines.names import CORRELATION_GRAPH, candles_asset
from streamforge_pipelines.protocol import page_docs
from streamforge_pipelines.runner import prepare_dagster_home
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.store import store_from_settings

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACT_DIR = REPO_ROOT / "test-artifacts" / "ui"
ASSET = candles_asset("5m")
DESCRIPTION = "5m candles, one partition per UTC day × symbol"
PAGE_RENDER_S = 60.0
BROWSER_START_S = 30.0

#: Headless Chromium as root on a closed network: no sandbox, no GPU, no background traffic.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class CDPPage:
    """A minimal Chrome DevTools Protocol client for one page target (synchronous)."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"CDP {method}: no answer in {timeout}s")
            reply = json.loads(self._ws.recv(timeout=remaining))
            if reply.get("id") != msg_id:
                continue  # an event, or an answer to an earlier call
            if "error" in reply:
                raise RuntimeError(f"CDP {method}: {reply['error']}")
            return dict(reply.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JS error in {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))


class Chromium:
    """Headless Chromium with a fresh profile and DevTools on a free port."""

    def __init__(self, executable: str, profile: Path, log: Path) -> None:
        self.profile = profile
        self.log = log
        profile.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.port = self._wait_for_devtools()

    def _wait_for_devtools(self) -> int:
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + BROWSER_START_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}:\n{tail(self.log)}")
            lines = active.read_text().splitlines() if active.exists() else []
            if lines and lines[0].isdigit():
                return int(lines[0])
            time.sleep(0.2)
        raise TimeoutError(f"chromium did not open DevTools in {BROWSER_START_S}s:\n{tail(self.log)}")

    @contextmanager
    def page(self) -> Iterator[CDPPage]:
        """The browser's first page target (``about:blank`` at start)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as r:
            targets = json.load(r)
        target = next(t for t in targets if t.get("type") == "page")
        with connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
            yield CDPPage(ws)

    def stop(self) -> None:
        stop_group(self.proc, timeout=10)


@pytest.fixture
def chromium_executable() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium not found on PATH: install Debian's chromium package (`make browser`, as root)")
    return path


GRAPH_DAY = date(2024, 8, 1)
GRAPH_SYMBOLS = ["BNBUSDT", "BTCUSDT", "ETHUSDT", "SOLUSDT"]


def _materialize_graph(data_dir: Path) -> None:
    """5m candles of GRAPH_DAY and the day before from the simulator's market into the store, then
    ``correlation_graph`` of GRAPH_DAY materialized in the current ``DAGSTER_HOME``."""
    import dagster as dg

    from streamforge_pipelines.assets.graph import correlation_graph
    from streamforge_pipelines.resources import resources_for

    settings = Settings.from_env(data_dir=data_dir)
    market = Market(42)
    start = day_start_ms(GRAPH_DAY - timedelta(days=1))
    end = start + 2 * 86_400_000
    with store_from_settings(settings) as db:
        for symbol in GRAPH_SYMBOLS:
            t = start
            while t < end:
                rows = market.klines(symbol, "5m", t, end - 1, 1000, now_ms=end + 86_400_000)
                db.upsert(CANDLES, page_docs(symbol, "5m", "sim", "ui-test", rows))
                t = rows[-1][0] + 300_000
    config = {"interval": "5m", "symbols": GRAPH_SYMBOLS}
    with dg.DagsterInstance.get() as instance:
        result = dg.materialize(
            [correlation_graph],
            partition_key=GRAPH_DAY.isoformat(),
            resources=resources_for(settings),
            run_config={"ops": {CORRELATION_GRAPH: {"config": config}}},
            instance=instance,
        )
    assert result.success


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of ``dagster dev`` over the real code location, with one day's correlation graph
    materialized; everything it started is ended and the environment restored."""
    tmp_path = tmp_path_factory.mktemp("dagster-ui")
    saved_environ = dict(os.environ)
    os.environ["DAGSTER_HOME"] = str(tmp_path / "dagster")
    os.environ.pop("ARANGO_URL", None)  # the embedded store under tmp_path
    settings = Settings.from_env({}, data_dir=tmp_path / "data")
    home = prepare_dagster_home(settings)
    _materialize_graph(settings.data_dir)
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(home)
    env["STREAMFORGE_DATA_DIR"] = str(settings.data_dir)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)  # the sensor skips; the page needs no broker

    try:
        with started_dagster_dev(env, tmp_path / "dagster-dev.log") as base:
            yield base
    finally:
        os.environ.clear()
        os.environ.update(saved_environ)


def _wait_for(page: CDPPage, expression: str, timeout: float = PAGE_RENDER_S) -> Any:
    """Poll a JS expression until it is truthy (bounded); its last value."""
    deadline = time.monotonic() + timeout
    value = page.evaluate(expression)
    while not value and time.monotonic() < deadline:
        time.sleep(0.5)
        value = page.evaluate(expression)
    return value


@contextmanager
def browse(executable: str, profile_dir: Path, url: str, artifact: str) -> Iterator[tuple[CDPPage, Path]]:
    """A fresh headless Chromium on ``url`` (1400x900) and the path its screenshot goes to; the
    browser is ended afterwards, whatever happened."""
    ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACT_DIR / artifact
    shot.unlink(missing_ok=True)
    browser = Chromium(executable, profile_dir / "chromium-profile", profile_dir / "chromium.log")
    try:
        with browser.page() as page:
            page.call("Page.enable")
            viewport = {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False}
            page.call("Emulation.setDeviceMetricsOverride", **viewport)
            page.call("Page.navigate", url=url)
            yield page, shot
    finally:
        browser.stop()


def test_candles_asset_page(chromium_executable: str, dagster_ui: str, tmp_path: Path) -> None:
    url = f"{dagster_ui}/assets/{ASSET}"
    with browse(chromium_executable, tmp_path, url, f"{ASSET}.png") as (page, shot):
        deadline = time.monotonic() + PAGE_RENDER_S
        text = ""
        while time.monotonic() < deadline:
            text = page.evaluate("document.body ? document.body.innerText : ''") or ""
            if ASSET in text and DESCRIPTION in text and "Materialize" in text:
                break
            time.sleep(0.5)
        page.screenshot(shot)

    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000, f"screenshot {shot} looks empty"
    assert struct.unpack(">II", png[16:24]) == (1400, 900), "unexpected screenshot size"
    assert ASSET in text, f"{ASSET} not on the page after {PAGE_RENDER_S}s; text:\n{text[:2000]}"
    assert DESCRIPTION in text, f"asset description not rendered; text:\n{text[:2000]}"
    assert "Materialize" in text, f"no Materialize button; text:\n{text[:2000]}"
    assert "Join the Dagster community" not in text, "the community pop-up covers the page"


SHOW_MARKDOWN = (
    "Array.from(document.querySelectorAll('button, a')).filter(b => b.innerText.includes('Show Markdown'))"
)
GRAPH_IMAGES = (
    "Array.from(document.querySelectorAll('img')).filter(i => i.src.startsWith('data:image/png'))"
    ".map(i => ({alt: i.alt, width: i.naturalWidth, height: i.naturalHeight, done: i.complete}))"
    ".filter(i => i.done && i.width > 0)"
)


def test_correlation_graph_picture_in_the_ui(
    chromium_executable: str, dagster_ui: str, tmp_path: Path
) -> None:
    """The ``graph`` metadata of a materialized day is a picture the Dagster UI shows (its markdown
    keeps data: images) - opened the way a user does, from the asset's overview."""
    url = f"{dagster_ui}/assets/{CORRELATION_GRAPH}?partition={GRAPH_DAY.isoformat()}"
    with browse(chromium_executable, tmp_path, url, "correlation_graph.png") as (page, shot):
        buttons = _wait_for(page, f"{SHOW_MARKDOWN}.length")
        text = page.evaluate("document.body ? document.body.innerText : ''") or ""
        assert buttons == 1, f"no [Show Markdown] for the graph metadata; text:\n{text[:3000]}"
        assert "last_snapshot_id" in text and "density_mean" in text, text[:3000]
        page.evaluate(f"{SHOW_MARKDOWN}[0].click()")
        images = _wait_for(page, GRAPH_IMAGES, timeout=20.0)
        page.screenshot(shot)
    assert images, f"the graph picture did not load in the browser (screenshot {shot})"
    (image,) = images
    assert image["alt"] == f"corr:5m:pearson:{GRAPH_DAY:%Y%m%d}T2300Z"  # the day's last snapshot
    assert image["width"] >= 300 and image["height"] >= 300, image
    assert shot.read_bytes().startswith(b"\x89PNG")
