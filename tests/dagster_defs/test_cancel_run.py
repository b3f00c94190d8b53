"""A Dagster run of a candles asset cancelled mid-load: its loaders stop, its task records say
``interrupted``, and a re-run of the same partitions loads only what is missing.

The run is real: ``dagster asset materialize`` in a child process (the multiprocess executor, so the
step runs in a process of its own), against the session broker, the exchange simulator (150 ms per
klines request, one request at a time per task, so two symbols x 20 days of 1m take seconds) and
the stack's connector. It is cancelled the way Dagster cancels a run: the run process gets SIGTERM,
the executor forwards the termination to the step process, whose op is interrupted. The re-run is
the same partitions in this process (``execute_in_process``). Expected counts come from the range
(every 1m open time of closed days: the simulator has no downtime, checked), not from the loaders.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import orjson
from polling import wait_for as _wait_for
from recording_simulator import RecordingSimulator

from streamforge_pipelines.datasets import CANDLES
from streamforge_pipelines.definitions import build_definitions
from streamforge_pipelines.intervals import count_open_times, day_range_ms
from streamforge_pipelines.names import candles_asset, candles_job
from streamforge_pipelines.partitions import ensure_symbols, range_tags
from streamforge_pipelines.queue_manager.tasks import CANCELLED_MESSAGE
from streamforge_pipelines.queue_manager.telemetry import read_events
from streamforge_pipelines.resources import resources_for
from streamforge_pipelines.runner import prepare_dagster_home
from streamforge_pipelines.stack import Stack
from streamforge_pipelines.store import store_from_settings

SYMBOLS = ("BTCUSDT", "ETHUSDT")
FIRST, LAST = date(2024, 7, 1), date(2024, 7, 20)
DAY_CANDLES = 1440
RUN_CONFIG = {"ops": {candles_asset("1m"): {"config": {"source": "rest"}}}}
#: The run's partitions: the days × both symbols (added to the symbol partitions as one stretch).
RANGE = (f"{FIRST}|{SYMBOLS[0]}", f"{LAST}|{SYMBOLS[-1]}")


def _days() -> list[date]:
    return [FIRST + timedelta(days=i) for i in range((LAST - FIRST).days + 1)]


def test_cancelled_run_stops_its_loaders_and_a_rerun_loads_only_the_rest(
    make_settings, tmp_path: Path
) -> None:
    with RecordingSimulator() as sim:
        settings = make_settings(partitions=2).model_copy(
            update={"exchange_url": sim.server.base_url, "loader_concurrency": 1}
        )
        home = prepare_dagster_home(settings)
        assert ensure_symbols(dg.DagsterInstance.get(), SYMBOLS) == [(SYMBOLS[0], SYMBOLS[-1])]
        with Stack(settings) as stack:  # broker and simulator given: the connector only
            live = stack.settings
            env = {**os.environ, **live.to_env(), "DAGSTER_HOME": str(home)}
            log = (tmp_path / "run.log").open("wb")
            run = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("dagster")),
                    *("asset", "materialize", "-m", "streamforge_pipelines.definitions"),
                    *("--select", candles_asset("1m"), "--partition-range", "...".join(RANGE)),
                    *("--config-json", orjson.dumps(RUN_CONFIG).decode()),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:

                def loading() -> bool:
                    events, _ = asyncio.run(
                        read_events(live.kafka_bootstrap_servers or "", live.topic_events, {})
                    )
                    return any(e.status == "loading" and e.records_written >= 3 * DAY_CANDLES for e in events)

                _wait_for(loading, 120, "the run's loaders to load three days")
                run.send_signal(signal.SIGTERM)  # what a cancelled run's process receives
                code = run.wait(90)
            finally:
                if run.poll() is None:
                    run.kill()
                    run.wait(10)
                log.close()
            output = (tmp_path / "run.log").read_text(errors="replace")
            assert code != 0, output[-3000:]  # the run did not succeed: it was interrupted

            total = count_open_times(*day_range_ms(FIRST, LAST), "1m")
            assert total == len(_days()) * DAY_CANDLES
            with store_from_settings(live) as store:
                first_run = store.list_tasks()
                assert len(first_run) == len(SYMBOLS), first_run
                statuses = [(t.symbol, t.status, t.records_written) for t in first_run]
                assert {t.status for t in first_run} == {"interrupted"}, (statuses, output[-3000:])
                assert {t.message for t in first_run} == {CANCELLED_MESSAGE}
                produced = {t.symbol: t.records_written for t in first_run}

                def stored() -> dict[str, int]:
                    return {s: store.count(CANDLES, (s, "1m"), *day_range_ms(FIRST, LAST)) for s in SYMBOLS}

                # What the loaders reported when they stopped is what arrives: no more, no less.
                _wait_for(lambda: stored() == produced, 30, f"the store to hold {produced}")
                assert all(0 < produced[s] < total for s in SYMBOLS), produced
                by_day = {
                    s: [store.count(CANDLES, (s, "1m"), *day_range_ms(d, d)) for d in _days()]
                    for s in SYMBOLS
                }

            # Only what is missing: each symbol from its first unfinished day to the last.
            rest = {s: DAY_CANDLES * (len(days) - _first_short(days)) for s, days in by_day.items()}
            defs = build_definitions(resources_for(live))
            sim.latency_ms = 0  # the cancel was caught: the rest at the simulator's own speed
            requests_before = sim.klines_requests()
            result = defs.resolve_job_def(candles_job("1m")).execute_in_process(
                instance=dg.DagsterInstance.get(),
                run_config=RUN_CONFIG,
                tags=range_tags(FIRST, LAST, (SYMBOLS[0], SYMBOLS[-1])),
            )
            assert result.success
            with store_from_settings(live) as store:
                rerun = store.list_tasks(run_id=result.run_id)
                assert {t.status for t in rerun} == {"complete"}
                assert {t.symbol: t.records_written for t in rerun} == rest, (rest, produced)
                assert all(
                    store.count(CANDLES, (s, "1m"), *day_range_ms(FIRST, LAST)) == total for s in SYMBOLS
                )
            # REST windows of 1000 candles over what was left, and nothing else
            windows = sum(-(-n // 1000) for n in rest.values())
            assert sim.klines_requests() - requests_before == windows


def _first_short(counts: list[int]) -> int:
    """Index of the first day that is not complete."""
    return next(i for i, n in enumerate(counts) if n < DAY_CANDLES)
