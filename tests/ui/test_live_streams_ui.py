"""A live stream started and stopped from the Dagster UI, in headless Chromium.

The local stack of ``streamforge dev`` (the simulator and a supervised stream worker as child
processes, on the session broker) and ``dagster dev`` over the real code location with its daemon.
In the browser: the ``live_streams`` launchpad gets a start config typed into its editor and is
launched; the run succeeds (the worker answered); the ``live_agg_trades`` asset shows its ``fresh``
check passed (the daemon's ``streams_sensor`` evaluated it from the heartbeats); a stop is launched the
same way and succeeds; the stream worker's task reported ``finished`` and the worker exits 0 on
SIGTERM. Screenshots: ``test-artifacts/ui/live_*.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster_dev import started_dagster_dev
from test_dagster_ui import ARTIFACT_DIR, CDPPage, _wait_for, browse  # the UI tests' browser

from streamforge_pipelines.names import FRESH_CHECK, LIVE_AGG_TRADES, LIVE_STREAMS_JOB, LIVE_STREAMS_OP
from streamforge_pipelines.runner import prepare_dagster_home
from streamforge_pipelines.settings import Settings
from streamforge_pipelines.stack import Stack

pytestmark = pytest.mark.browser

LOCATION = "__repository__@streamforge_pipelines.definitions"
QUEUE_ID = "live-ws_agg_trades-spot"
#: Bounds: a run of the job (the worker answers within seconds), the daemon's sensor tick (every 15 s).
RUN_WITHIN_S = 90.0
FRESH_WITHIN_S = 90.0

START = f"""ops:
  {LIVE_STREAMS_OP}:
    config:
      action: start
      type: ws_agg_trades
      symbols: [BTCUSDT, ETHUSDT]
"""
STOP = f"""ops:
  {LIVE_STREAMS_OP}:
    config:
      action: stop
      type: ws_agg_trades
"""

LAUNCH_BUTTON = (
    "Array.from(document.querySelectorAll('button')).find(b => b.innerText.trim() === 'Launch Run')"
)


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium not found on PATH: install Debian's chromium package (`make browser`, as root)")
    return path


@pytest.fixture
def live_ui(make_settings: Callable[..., Settings], tmp_path: Path) -> Iterator[tuple[str, Stack]]:
    """``dagster dev`` (UI and daemon) over the stack ``streamforge dev`` starts: its URL and the stack."""
    settings = make_settings(partitions=1, live_heartbeat_s=1.0, live_dead_after_beats=10.0)
    home = prepare_dagster_home(settings)
    with Stack(settings, connector=False, streams=True, log_dir=tmp_path / "logs") as stack:
        env = {**os.environ, **stack.settings.to_env(), "DAGSTER_HOME": str(home)}
        with started_dagster_dev(env, tmp_path / "dagster-dev.log") as base:
            yield base, stack


def _launch_from_the_launchpad(page: CDPPage, config: str) -> None:
    """Type ``config`` into the launchpad's editor (CodeMirror) and press *Launch Run*."""
    assert _wait_for(page, "document.querySelector('.CodeMirror') !== null"), (
        "no config editor on the launchpad"
    )
    page.evaluate(f"document.querySelector('.CodeMirror').CodeMirror.setValue({json.dumps(config)})")
    enabled = _wait_for(page, f"(() => {{ const b = {LAUNCH_BUTTON}; return !!b && !b.disabled; }})()")
    text = page.evaluate("document.body.innerText") or ""
    assert enabled, f"Launch Run is not enabled for the config; page:\n{text[:2000]}"
    page.evaluate(f"{LAUNCH_BUTTON}.click()")


def _run_status(instance: dg.DagsterInstance, before: set[str]) -> tuple[str, dg.DagsterRunStatus]:
    """The id and status of the one ``live_streams`` run launched since ``before``."""
    runs = [r for r in instance.get_runs(dg.RunsFilter(job_name=LIVE_STREAMS_JOB)) if r.run_id not in before]
    assert len(runs) <= 1, runs
    return (runs[0].run_id, runs[0].status) if runs else ("", dg.DagsterRunStatus.NOT_STARTED)


def _launch_and_finish(
    page: CDPPage, instance: dg.DagsterInstance, base: str, config: str, answer: str, shot: Path
) -> str:
    """Launch ``config`` from the launchpad; once its run has ended, its page says it succeeded and
    shows a log line matching ``answer`` (a regular expression: the worker's answer); screenshot
    ``shot``."""
    before = {r.run_id for r in instance.get_runs(dg.RunsFilter(job_name=LIVE_STREAMS_JOB))}
    page.call("Page.navigate", url=f"{base}/locations/{LOCATION}/jobs/{LIVE_STREAMS_JOB}/playground")
    _launch_from_the_launchpad(page, config)
    deadline = time.monotonic() + RUN_WITHIN_S
    run_id, status = _run_status(instance, before)
    while status not in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE):
        assert time.monotonic() < deadline, f"run {run_id or '(not launched)'} still {status}"
        time.sleep(0.5)
        run_id, status = _run_status(instance, before)
    logs = [e.user_message for e in instance.all_logs(run_id)]
    assert status == dg.DagsterRunStatus.SUCCESS, "\n".join(logs[-20:])
    page.call("Page.navigate", url=f"{base}/runs/{run_id}")
    body = "document.body.innerText"
    shown = _wait_for(page, f"document.body && {body}.includes('Success') && /{answer}/.test({body})")
    page.screenshot(shot)
    text = page.evaluate(body) or ""
    assert shown, f"the run page of {run_id} does not show Success and /{answer}/:\n{text[:3000]}"
    return run_id


def test_a_stream_started_from_the_ui_runs_shows_fresh_and_stops(
    chromium: str, live_ui: tuple[str, Stack], tmp_path: Path
) -> None:
    base, stack = live_ui
    worker = stack.procs["streams"][0]
    key = dg.AssetCheckKey(dg.AssetKey(LIVE_AGG_TRADES), FRESH_CHECK)
    with dg.DagsterInstance.get() as instance:
        url = f"{base}/locations/{LOCATION}/jobs/{LIVE_STREAMS_JOB}/playground"
        with browse(chromium, tmp_path, url, "live_streams_start.png") as (page, shot):
            started = f"{QUEUE_ID} (started|streaming) on loader-ws-trades__spot"
            _launch_and_finish(page, instance, base, START, started, shot)

            # the daemon's streams_sensor evaluates the asset's fresh check from the heartbeats
            deadline = time.monotonic() + FRESH_WITHIN_S
            while True:
                latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([key]).get(key)
                evaluation = latest.evaluation if latest is not None else None
                if evaluation is not None and evaluation.passed:
                    break
                assert time.monotonic() < deadline, f"fresh not passed within {FRESH_WITHIN_S}s: {evaluation}"
                time.sleep(1.0)
            page.call("Page.navigate", url=f"{base}/assets/{LIVE_AGG_TRADES}?view=checks")
            seen = _wait_for(
                page,
                "document.body && document.body.innerText.includes('fresh') && "
                "/Passed|Succeeded/.test(document.body.innerText)",
            )
            text = page.evaluate("document.body.innerText") or ""
            page.screenshot(ARTIFACT_DIR / "live_agg_trades_fresh.png")
            assert seen, f"the asset's checks do not show fresh passed; text:\n{text[:3000]}"

            stopped = f"{QUEUE_ID} finished on loader-ws-trades__spot"
            _launch_and_finish(page, instance, base, STOP, stopped, ARTIFACT_DIR / "live_streams_stop.png")
    assert worker.poll() is None, "the stream worker died"
    stack.stop()
    assert worker.returncode == 0, f"the stream worker exited with {worker.returncode}"
    log = (tmp_path / "logs" / "streams.log").read_text()
    assert f'"task {QUEUE_ID} finished"' in log
    assert stack.restarts == {}, "the stream worker was never restarted"
