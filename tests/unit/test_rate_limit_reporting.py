"""Weight shares in commands, exchange figures in events, their sums in reports and `run --json`."""

from __future__ import annotations

from datetime import date

import orjson
import pytest

from streamforge_pipelines import protocol as p
from streamforge_pipelines.queue_manager import LoadRequest, build_commands, weight_share
from streamforge_pipelines.queue_manager.tracking import ExchangeTotals, TaskTracker
from streamforge_pipelines.runner import RunSummary
from streamforge_pipelines.settings import Settings, SettingsError
from streamforge_pipelines.workers.loader_task import LoadResult, governor_for

# Messages as written before the rate-limit fields existed.
ORIGINAL_COMMAND = {
    "command": "start",
    "queue_id": "wf-btcusdt-api_candles_5m-20240801-a1b2c3",
    "target": "loader-producer",
    "symbol": "BTCUSDT",
    "type": "api_candles_5m",
    "time_range": "2024-08-01:2024-08-01",
    "timestamp": 1722470400.0,
}
ORIGINAL_EVENT = {
    "queue_id": "wf-btcusdt-api_candles_5m-20240801-a1b2c3",
    "producer": "loader-producer__a1b2c3",
    "status": "finished",
    "records_written": 288,
    "finished": True,
    "timestamp": 1722470460.5,
}


def test_old_messages_parse_without_the_new_fields() -> None:
    cmd = p.decode_command(orjson.dumps(ORIGINAL_COMMAND))
    assert cmd.weight_share is None
    event = p.decode_event(orjson.dumps(ORIGINAL_EVENT))
    assert (event.http_429, event.http_418, event.retries, event.weight_used_peak) == (None,) * 4
    assert b"http_429" not in event.encode() and b"weight_share" not in cmd.encode()


def test_weight_share_round_trips_and_is_checked() -> None:
    cmd = p.decode_command({**ORIGINAL_COMMAND, "weight_share": 0.25})
    assert p.decode_command(cmd.encode()).weight_share == 0.25
    for bad in (0, 1.5, -0.1):
        with pytest.raises(p.ProtocolError, match=r"command\.weight_share"):
            p.decode_command({**ORIGINAL_COMMAND, "weight_share": bad})


def test_settings_weight_limit_and_share() -> None:
    s = Settings.from_env({"EXCHANGE_WEIGHT_LIMIT": "1200", "EXCHANGE_WEIGHT_SHARE": "0.5"})
    assert (s.exchange_weight_limit, s.exchange_weight_share) == (1200, 0.5)
    assert Settings.from_env(s.to_env()) == s
    assert (Settings().exchange_weight_limit, Settings().exchange_weight_share) == (6000, 1.0)
    with pytest.raises(SettingsError, match="EXCHANGE_WEIGHT_SHARE"):
        Settings.from_env({"EXCHANGE_WEIGHT_SHARE": "2"})


def test_queue_manager_splits_the_share_over_tasks_that_run_at_once() -> None:
    settings = Settings(exchange_weight_share=0.8)
    assert weight_share(settings, tasks=10, parallel=4) == pytest.approx(0.2)
    assert weight_share(settings, tasks=2, parallel=4) == pytest.approx(0.4)
    request = LoadRequest(
        symbols=("BTCUSDT", "ETHUSDT"), interval="5m", first=date(2024, 8, 1), last=date(2024, 8, 1)
    )
    commands = build_commands(request, settings, parallel=4)
    assert [c.weight_share for c in commands] == [pytest.approx(0.4)] * 2


def test_loader_takes_the_commands_share_else_the_process_default() -> None:
    settings = Settings(exchange_weight_limit=1200, exchange_weight_share=0.5)
    with_share = p.decode_command({**ORIGINAL_COMMAND, "weight_share": 0.25})
    gov = governor_for(with_share, settings)
    assert (gov.limit, gov.share) == (1200, 0.25)
    old = p.decode_command(ORIGINAL_COMMAND)
    assert governor_for(old, settings) is governor_for(old, settings)
    assert governor_for(old, settings).share == 0.5


def _finished(queue_id: str, **fields: object) -> p.Event:
    return p.Event(queue_id=queue_id, producer="loader-api-candles__a1b2c3", status="finished", **fields)


def test_tracker_and_run_summary_aggregate_the_exchange_figures() -> None:
    tracker = TaskTracker()
    tracker.watch(["q1", "q2", "q3"])
    fields1 = LoadResult("q1", retries=3, http_429=1, weight_budget_used=0.5).exchange_fields()
    tracker.apply(_finished("q1", **fields1))
    tracker.apply(_finished("q2", http_429=0, http_418=1, retries=2, weight_used_peak=0.97))
    tracker.apply(_finished("q3"))  # an older loader: no figures
    totals = ExchangeTotals.of(tracker.tasks.values())
    assert totals.to_json() == {"http_429": 1, "http_418": 1, "retries": 5, "weight_budget_used": 0.97}

    request = LoadRequest(symbols=("BTCUSDT",), interval="5m", first=date(2024, 8, 1), last=date(2024, 8, 1))
    out = RunSummary(request=request, exchange=totals).to_json()
    assert {k: out[k] for k in ("http_429", "http_418", "retries", "weight_budget_used")} == totals.to_json()
    empty = RunSummary(request=request).to_json()
    assert (empty["http_429"], empty["http_418"], empty["retries"], empty["weight_budget_used"]) == (
        0,
        0,
        0,
        0.0,
    )
