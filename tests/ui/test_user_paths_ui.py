"""Two user paths of the Dagster control plane, walked in headless Chromium as a user walks them.

One ``dagster dev`` (webserver and daemon, the project's ``dagster.yaml``) over the local stack (the
session broker, the stack's connector, the exchange simulator served from this process so the test
can slow its klines down and count them), and one browser (Playwright driving Debian's chromium).

1. On the ``candles_5m`` asset page: *Materialize…*, a range of two days and two of the universe's
   three symbols picked in the launch dialog, *Launch backfill*; the daemon runs the backfill to
   success; the asset's partitions tab shows those four symbol-days materialized and the third
   symbol's days missing; the instance holds exactly those materialized partitions and the store the
   simulator's candles for them (and none for the third symbol).
2. A load of one symbol × 60 days from REST, launched from the same dialog (``source: rest`` typed
   into its config editor), terminated from its run page's *Terminate* button while the loaders are
   mid-range: the run ends canceled, its task record ``interrupted``, the store holds exactly what
   the loader reported; *Re-execute* on the run page then loads only the days not complete (the
   klines requests counted by the simulator) and every partition ends materialized.

Expected counts come from the simulator's own market model or from the range, never from the
loaders. Screenshots: ``test-artifacts/ui/user_paths_*.png``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import dagster as dg
import pytest
from dagster_dev import started_dagster_dev
from polling import T, wait_for
from recording_simulator import SEED, RecordingSimulator
from test_dagster_ui import ARTIFACT_DIR

from streamforge_pipelines.datasets import CANDLES
from streamforge_pipelines.intervals import count_open_times, day_range_ms
from streamforge_pipelines.names import candles_asset
from streamforge_pipelines.partitions import day_symbol_key, ensure_symbols
from streamforge_pipelines.queue_manager.tasks import CANCELLED_MESSAGE
from streamforge_pipelines.queue_manager.telemetry import read_events
from streamforge_pipelines.runner import prepare_dagster_home
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.stack import Stack
from streamforge_pipelines.store import store_from_settings

pytestmark = pytest.mark.browser

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")

ASSET = candles_asset("5m")
UNIVERSE = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
DAY_CANDLES = 288
#: Path 1: two days × two of the three symbols.
LAUNCH_DAYS = (date(2024, 8, 1), date(2024, 8, 2))
LAUNCH_SYMBOLS = ("BTCUSDT", "ETHUSDT")
#: Path 2: one symbol × 60 days of 5m from REST (18 windows of 1000 candles, one request at a time).
CANCEL_SYMBOL = "SOLUSDT"
CANCEL_FIRST, CANCEL_LAST = date(2024, 5, 1), date(2024, 6, 29)
#: Klines latency while the test waits to catch the load mid-range (the whole range takes 18 × this).
SLOW_KLINES_MS = 2000.0
WINDOW = 1000
#: Bounds: a backfill through the daemon (tick every 30 s) and its runs on a busy machine; a page render.
BACKFILL_WITHIN_S = 300.0
RUN_WITHIN_S = 240.0
UI_WITHIN_S = 60.0
REST_CONFIG = f"ops:\n  {ASSET}:\n    config:\n      source: rest\n"


def _wait_for(predicate: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.5) -> T:
    return wait_for(predicate, timeout_s, what, interval_s)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _fresh_topics() -> dict[str, str]:
    """Every topic setting with a unique suffix (the stack creates them on the session broker)."""
    suffix = uuid.uuid4().hex[:10]
    defaults = Settings.model_fields
    return {f: f"{defaults[f].default}.{suffix}" for f in defaults if f.startswith("topic_")}


@dataclass
class UserPaths:
    """What the tests of this module share: the UI's URL, the stack's settings, the simulator, the
    instance ``dagster dev`` uses, and a browser."""

    base: str
    settings: Settings
    sim: RecordingSimulator
    instance: dg.DagsterInstance
    browser: Any

    @contextmanager
    def page(self, name: str) -> Iterator[Any]:
        """A fresh page; if the test fails while it is open, its screenshot and text are kept as
        ``test-artifacts/ui/user_paths_<name>_failed.*``."""
        ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
        page = self.browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            yield page
        except BaseException:
            failed = ARTIFACT_DIR / f"user_paths_{name}_failed"
            page.screenshot(path=failed.with_suffix(".png"))
            failed.with_suffix(".txt").write_text(str(page.inner_text("body")))
            raise
        finally:
            page.close()


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium not found on PATH: install Debian's chromium package (`make browser`, as root)")
    return path


@pytest.fixture(scope="module")
def user_paths(
    chromium_path: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[UserPaths]:
    """``dagster dev`` over the stack and the simulator, the universe's symbols known to the instance,
    and a headless browser; everything started here is ended, the environment restored."""
    tmp = tmp_path_factory.mktemp("user-paths")
    saved = dict(os.environ)
    os.environ["DAGSTER_HOME"] = str(tmp / "dagster")
    os.environ.pop("ARANGO_URL", None)  # the embedded store under tmp
    try:
        with RecordingSimulator(latency_ms=0) as sim:
            settings = Settings.from_env(
                {},
                data_dir=tmp / "data",
                kafka_bootstrap_servers=kafka_bootstrap,
                exchange_url=sim.server.base_url,
                universe=UNIVERSE,
                data_partitions=2,
                consumer_group=f"connector-{uuid.uuid4().hex[:8]}",
                loader_group=f"loader-{uuid.uuid4().hex[:8]}",
                loader_concurrency=1,  # one klines request at a time: a load the test can catch
                task_timeout_s=120.0,
                task_stall_s=60.0,
                **_fresh_topics(),
            )
            home = prepare_dagster_home(settings)
            with dg.DagsterInstance.get() as instance, Stack(settings, log_dir=tmp / "logs") as stack:
                ensure_symbols(instance, UNIVERSE)  # what the symbol sensor does within its first minute
                env = {**os.environ, **stack.settings.to_env(), "DAGSTER_HOME": str(home)}
                with started_dagster_dev(env, tmp / "dagster-dev.log") as base:
                    with playwright_api.sync_playwright() as pw:
                        browser = pw.chromium.launch(
                            executable_path=chromium_path, args=["--no-sandbox", "--disable-gpu"]
                        )
                        try:
                            yield UserPaths(base, stack.settings, sim, instance, browser)
                        finally:
                            browser.close()
    finally:
        os.environ.clear()
        os.environ.update(saved)


# ---- the launch dialog -----------------------------------------------------------------------------


def _open_launch_dialog(page: Any, base: str) -> Any:
    """The asset page's *Materialize…* dialog (the partition pickers of a partitioned asset)."""
    page.goto(f"{base}/assets/{ASSET}")
    page.get_by_role("button", name="Materialize…").click(timeout=UI_WITHIN_S * 1000)
    dialog = page.get_by_role("dialog").filter(has_text=f"Launch runs to materialize {ASSET}")
    dialog.wait_for(timeout=UI_WITHIN_S * 1000)
    return dialog


def _choose_partitions(page: Any, dialog: Any, first: date, last: date, symbols: tuple[str, ...]) -> None:
    """Type the date range into the dialog's date picker, tick the symbols in its symbol picker."""
    dates = dialog.get_by_placeholder("ex: ", exact=False)
    dates.fill(f"[{first}...{last}]")
    dates.press("Enter")
    dialog.get_by_text("Select a partition or create one").click()
    for symbol in symbols:
        page.get_by_role("menuitem", name=symbol).click()  # its name repeats the symbol
    page.keyboard.press("Escape")  # closes the picker's list, not the dialog


def _set_config(page: Any, dialog: Any, config: str) -> None:
    """Open the dialog's *Config* section, type ``config`` into its editor, save it."""
    dialog.get_by_text("Config", exact=True).click()
    dialog.get_by_text("Add config").click()
    page.locator(".CodeMirror").first.wait_for(timeout=UI_WITHIN_S * 1000)
    page.evaluate("cfg => document.querySelector('.CodeMirror').CodeMirror.setValue(cfg)", config)
    page.get_by_role("button", name="Save config").click()


def _launch(page: Any, dialog: Any, instance: dg.DagsterInstance, partitions: int, shot: str) -> str:
    """Check the dialog counts ``partitions``, press *Launch backfill*; the id of the new backfill."""
    counted = dialog.get_by_text(f"{partitions} partitions", exact=True)
    counted.wait_for(timeout=UI_WITHIN_S * 1000)
    page.screenshot(path=ARTIFACT_DIR / shot)
    before = {b.backfill_id for b in instance.get_backfills()}
    dialog.get_by_role("button", name="Launch backfill").click()
    new = _wait_for(
        lambda: [b.backfill_id for b in instance.get_backfills() if b.backfill_id not in before],
        UI_WITHIN_S,
        "the backfill the dialog launched",
    )
    assert len(new) == 1, new
    return new[0]


def _backfill_runs(instance: dg.DagsterInstance, backfill_id: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id})))


def _backfill_done(instance: dg.DagsterInstance, backfill_id: str) -> Any:
    backfill = instance.get_backfill(backfill_id)
    return backfill if backfill is not None and backfill.status.value != "REQUESTED" else None


def _run_logs(instance: dg.DagsterInstance, run_id: str, lines: int = 25) -> str:
    return "\n".join(str(e.user_message) for e in instance.all_logs(run_id)[-lines:])


# ---- the partitions tab ----------------------------------------------------------------------------

#: The status dots of a row of the partitions tab's date or symbol list (CSS colours of the row).
ROW_DOTS = """name => {
  const label = Array.from(document.querySelectorAll('[title]'))
    .find(e => e.getAttribute('title') === name && e.closest('[class*=VirtualizedTable_row]'));
  if (!label) return null;
  const row = label.closest('[class*=VirtualizedTable_row]');
  return Array.from(row.querySelectorAll('div'))
    .filter(d => d.style.borderRadius === '100%').map(d => d.style.background.replace(/.*accent-|\\)/g, ''));
}"""


def _partitions_tab(page: Any, base: str, first: date, last: date) -> str:
    """The asset's partitions tab narrowed to ``first`` .. ``last`` (typed as a user does); its text."""
    page.goto(f"{base}/assets/{ASSET}?view=partitions")
    dates = page.get_by_placeholder("ex: ", exact=False)
    dates.wait_for(timeout=UI_WITHIN_S * 1000)
    dates.fill(f"[{first}...{last}]")
    dates.press("Enter")
    selected = len(_days(first, last)) * len(UNIVERSE)
    page.get_by_text(f"{selected} Partitions Selected").wait_for(timeout=UI_WITHIN_S * 1000)
    return str(page.inner_text("body"))


# ---- path 1 ----------------------------------------------------------------------------------------


def _store_matches_simulator(settings: Settings, symbols: tuple[str, ...], days: list[date]) -> None:
    """The stored 5m candles of each symbol-day are the simulator market's (open time and OHLCV)."""
    market = Market(SEED)
    fields = ("open_time", "open", "high", "low", "close", "volume")
    with store_from_settings(settings) as store:
        for symbol in symbols:
            for day in days:
                start, end = day_range_ms(day, day)
                truth = market.klines(symbol, "5m", start, end - 1, WINDOW, now_ms=end + 2 * 86_400_000)
                expected = [(r[0], *map(float, r[1:6])) for r in truth]
                docs = store.read(CANDLES, (symbol, "5m"), start, end)
                stored = [(d["open_time"], *(float(d[f]) for f in fields[1:])) for d in docs]
                assert len(expected) == DAY_CANDLES, (symbol, day, len(expected))
                assert stored == expected, f"{symbol} {day}: {len(stored)} stored vs the simulator's"


def test_range_and_symbols_from_the_launch_dialog_materialize_exactly_those(user_paths: UserPaths) -> None:
    ui, instance = user_paths, user_paths.instance
    days = _days(*LAUNCH_DAYS)
    chosen = {day_symbol_key(d, s) for d in days for s in LAUNCH_SYMBOLS}
    with ui.page("launch") as page:
        dialog = _open_launch_dialog(page, ui.base)
        _choose_partitions(page, dialog, *LAUNCH_DAYS, LAUNCH_SYMBOLS)
        backfill_id = _launch(page, dialog, instance, len(chosen), "user_paths_launch_dialog.png")

        backfill = _wait_for(
            lambda: _backfill_done(instance, backfill_id), BACKFILL_WITHIN_S, f"backfill {backfill_id} to end"
        )
        runs = _backfill_runs(instance, backfill_id)
        failed = [r for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
        assert runs and not failed, [(r.run_id, r.status, _run_logs(instance, r.run_id)) for r in failed]
        assert backfill.status.value in ("COMPLETED", "COMPLETED_SUCCESS"), backfill.status

        # The backfill's page says it completed.
        page.goto(f"{ui.base}/runs/b/{backfill_id}")
        page.get_by_text("Completed", exact=False).first.wait_for(timeout=UI_WITHIN_S * 1000)
        page.screenshot(path=ARTIFACT_DIR / "user_paths_backfill.png")

        # Per-symbol state: the chosen symbol-days materialized, the third symbol's days missing.
        text = _partitions_tab(page, ui.base, *LAUNCH_DAYS)
        assert f"Materialized ({len(chosen)})" in text, text[-1500:]
        assert f"Missing ({len(days) * len(UNIVERSE) - len(chosen)})" in text, text[-1500:]
        dots = {name: page.evaluate(ROW_DOTS, name) for name in (*UNIVERSE, *map(str, days))}
        page.screenshot(path=ARTIFACT_DIR / "user_paths_partitions.png")
        assert {s: dots[s] for s in UNIVERSE} == {
            "BTCUSDT": ["green"],
            "ETHUSDT": ["green"],
            "SOLUSDT": ["gray"],
        }, dots
        assert all(sorted(dots[str(d)]) == ["gray", "green"] for d in days), dots  # partly materialized

        # One symbol-day opened: materialized by a run of the backfill.
        page.get_by_text(str(days[0]), exact=True).first.click()
        page.locator(f"[title={LAUNCH_SYMBOLS[0]}]").first.click()
        detail = page.get_by_text(day_symbol_key(days[0], LAUNCH_SYMBOLS[0]), exact=True).first
        detail.wait_for(timeout=UI_WITHIN_S * 1000)
        run_ids = {r.run_id[:8] for r in runs}
        shown = _wait_for(
            lambda: [i for i in run_ids if i in page.inner_text("body")],
            UI_WITHIN_S,
            "the run of the partition",
        )
        page.screenshot(path=ARTIFACT_DIR / "user_paths_partition.png")
        assert len(shown) == 1, shown

    materialized = set(instance.get_materialized_partitions(dg.AssetKey(ASSET)))
    others = {k for k in materialized if k.endswith(f"|{CANCEL_SYMBOL}")} - chosen  # path 2's, if it ran
    assert materialized - others == chosen
    _store_matches_simulator(ui.settings, LAUNCH_SYMBOLS, days)
    with store_from_settings(ui.settings) as store:
        assert store.count(CANDLES, (CANCEL_SYMBOL, "5m"), *day_range_ms(*LAUNCH_DAYS)) == 0


# ---- path 2 ----------------------------------------------------------------------------------------


def _loaded(settings: Settings, symbol: str, at_least: int) -> bool:
    """Whether a loader of ``symbol`` reported ``at_least`` records written (on ``queue-events``)."""
    read = read_events(settings.kafka_bootstrap_servers or "", settings.topic_events, {})
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API keeps an event loop on this thread
        events, _ = pool.submit(asyncio.run, read).result()
    return any(e.symbol == symbol and e.status == "loading" and e.records_written >= at_least for e in events)


def _the_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> dg.DagsterRun | None:
    runs = list(instance.get_runs(dg.RunsFilter(tags=tags)))
    assert len(runs) <= 1, [r.run_id for r in runs]
    return runs[0] if runs else None


def _ended(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRun | None:
    run = instance.get_run_by_id(run_id)
    return run if run is not None and run.is_finished else None


def _first_short(counts: list[int]) -> int:
    """Index of the first day that is not complete."""
    return next(i for i, n in enumerate(counts) if n < DAY_CANDLES)


def test_run_terminated_from_the_ui_stops_its_loaders_and_a_reexecution_loads_only_the_rest(
    user_paths: UserPaths,
) -> None:
    ui, instance, sim = user_paths, user_paths.instance, user_paths.sim
    days = _days(CANCEL_FIRST, CANCEL_LAST)
    keys = {day_symbol_key(d, CANCEL_SYMBOL) for d in days}
    total = count_open_times(*day_range_ms(CANCEL_FIRST, CANCEL_LAST), "5m")
    assert total == len(days) * DAY_CANDLES
    span = day_range_ms(CANCEL_FIRST, CANCEL_LAST)
    sim.latency_ms = SLOW_KLINES_MS  # the load lasts long enough to be caught mid-range
    try:
        with ui.page("cancel") as page:
            dialog = _open_launch_dialog(page, ui.base)
            _choose_partitions(page, dialog, CANCEL_FIRST, CANCEL_LAST, (CANCEL_SYMBOL,))
            _set_config(page, dialog, REST_CONFIG)
            backfill_id = _launch(page, dialog, instance, len(keys), "user_paths_cancel_dialog.png")
            run = _wait_for(
                lambda: _the_run(instance, {"dagster/backfill": backfill_id}),
                BACKFILL_WITHIN_S,
                f"the run of backfill {backfill_id}",
            )
            page.goto(f"{ui.base}/runs/{run.run_id}")
            _wait_for(
                lambda: _loaded(ui.settings, CANCEL_SYMBOL, 3 * DAY_CANDLES),
                RUN_WITHIN_S,
                f"run {run.run_id}'s loader to write three days",
            )
            page.get_by_role("button", name="Terminate").first.click(timeout=UI_WITHIN_S * 1000)
            confirm = page.get_by_role("dialog").filter(has_text="Terminate")
            confirm.get_by_role("button", name=re.compile(r"^Terminate")).last.click()
            ended = _wait_for(lambda: _ended(instance, run.run_id), RUN_WITHIN_S, f"run {run.run_id} to end")
            sim.latency_ms = 0  # what follows runs at the simulator's own speed
            assert ended.status == dg.DagsterRunStatus.CANCELED, (
                ended.status,
                _run_logs(instance, run.run_id),
            )
            page.get_by_text("Canceled", exact=False).first.wait_for(timeout=UI_WITHIN_S * 1000)
            page.screenshot(path=ARTIFACT_DIR / "user_paths_terminated.png")

            with store_from_settings(ui.settings) as store:
                tasks = store.list_tasks(run_id=run.run_id)
                assert [(t.symbol, t.status, t.message) for t in tasks] == [
                    (CANCEL_SYMBOL, "interrupted", CANCELLED_MESSAGE)
                ], [(t.symbol, t.status, t.message, t.records_written) for t in tasks]
                produced = tasks[0].records_written
                assert 0 < produced < total, (produced, total)  # stopped mid-range, not before or after
                # What the loader reported when it stopped is what arrives: no more, no less.
                _wait_for(
                    lambda: store.count(CANDLES, (CANCEL_SYMBOL, "5m"), *span) == produced,
                    60,
                    f"the store to hold the {produced} candles the loader reported",
                )
                by_day = [store.count(CANDLES, (CANCEL_SYMBOL, "5m"), *day_range_ms(d, d)) for d in days]
            rest = DAY_CANDLES * (len(days) - _first_short(by_day))

            # Re-executed from the run page: only the days not complete are loaded.
            requests_before = sim.klines_requests()
            page.get_by_role("button", name=re.compile(r"^Re-execute")).first.click(
                timeout=UI_WITHIN_S * 1000
            )
            rerun = _wait_for(
                lambda: _the_run(instance, {"dagster/parent_run_id": run.run_id}),
                UI_WITHIN_S,
                "the re-execution",
            )
            rerun = _wait_for(lambda: _ended(instance, rerun.run_id), RUN_WITHIN_S, f"re-run {rerun.run_id}")
            assert rerun.status == dg.DagsterRunStatus.SUCCESS, _run_logs(instance, rerun.run_id)
            page.goto(f"{ui.base}/runs/{rerun.run_id}")
            page.get_by_text("Success", exact=False).first.wait_for(timeout=UI_WITHIN_S * 1000)
            page.screenshot(path=ARTIFACT_DIR / "user_paths_reexecuted.png")
    finally:
        sim.latency_ms = 0

    with store_from_settings(ui.settings) as store:
        again = store.list_tasks(run_id=rerun.run_id)
        assert [(t.symbol, t.status, t.records_written) for t in again] == [
            (CANCEL_SYMBOL, "complete", rest)
        ], (
            rest,
            produced,
        )
        assert store.count(CANDLES, (CANCEL_SYMBOL, "5m"), *span) == total
    # REST windows of 1000 candles over what was left, and nothing else
    assert sim.klines_requests() - requests_before == -(-rest // WINDOW)
    assert keys <= set(instance.get_materialized_partitions(dg.AssetKey(ASSET)))
