"""End to end through the real broker, simulator and connector processes, driven by Dagster.

command → loader → data topic → connector → store → queue-events → step → Dagster materialization
with metadata, then the sensor over the same telemetry; and the analytics of ``streamforge run``
(correlation graph per day, GNN over the range) on the loaded candles. The days are fixed (August
2024): the data under test, and so every figure below, are the same on any date.
"""

from __future__ import annotations

import asyncio
import io
import os
from datetime import date, timedelta

import dagster as dg
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from click.testing import CliRunner
from rich.console import Console

from streamforge_pipelines.cli import main
from streamforge_pipelines.datasets import CANDLES
from streamforge_pipelines.definitions import defs
from streamforge_pipelines.intervals import DAY_MS, day_range_ms
from streamforge_pipelines.models import from_settings
from streamforge_pipelines.names import (
    CANDLE_COVERAGE,
    CORRELATION_GRAPH,
    COVERAGE_JOB,
    GNN_MODEL,
    MAIN_RUN_TAG,
    PARTITION_RANGE_END,
    PARTITION_RANGE_START,
    QUEUE_EVENTS_SENSOR,
    candles_asset,
    candles_job,
)
from streamforge_pipelines.partitions import ensure_symbols, range_tags
from streamforge_pipelines.preflight import PreflightError
from streamforge_pipelines.queue_manager import LoadRequest
from streamforge_pipelines.queue_manager.tracking import COMPLETE
from streamforge_pipelines.report import print_summary
from streamforge_pipelines.runner import prepare_dagster_home, run_analytics, run_main_job
from streamforge_pipelines.sensors.queue_events import process_tick
from streamforge_pipelines.simulator.market import Market
from streamforge_pipelines.stack import Stack
from streamforge_pipelines.store import store_from_settings

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
#: Fixed days of the loads below: Aug 3 .. Aug 6, 2024.
D3, D4, D5, D6 = (date(2024, 8, d) for d in range(3, 7))


def _simulator_truth(seed: int, request: LoadRequest) -> dict[tuple[str, str], int]:
    """Candles per (symbol, day) in the simulator's own model, every day closed (now = 2 days after)."""
    market = Market(seed)
    now = day_range_ms(request.last, request.last)[1] + 2 * DAY_MS
    out = {}
    d = request.first
    while d <= request.last:
        start, end = day_range_ms(d, d)
        for s in request.symbols:
            out[(s, d.isoformat())] = market.count_klines(s, request.interval, start, end, now)
        d += timedelta(days=1)
    return out


def _printed(summary) -> str:
    buf = io.StringIO()
    print_summary(summary, Console(file=buf, width=100, force_terminal=False))
    return buf.getvalue()


def test_main_job_end_to_end(make_settings) -> None:
    settings = make_settings()
    request = LoadRequest(symbols=SYMBOLS, interval="5m", first=D5, last=D6)
    summary = run_main_job(settings, request)  # the default path: analytics on

    truth = _simulator_truth(settings.simulator_seed, request)
    assert {(d.symbol, d.day): d.stored for d in summary.days} == truth
    assert {(d.symbol, d.day): d.expected for d in summary.days} == truth
    assert summary.missing == 0 and summary.duplicate_keys == 0 and summary.ok
    assert summary.stored == 3 * 2 * 288
    # The exchange figures of `streamforge run --json`: the governor kept the loaders clear of limits.
    out = summary.to_json()
    assert (out["http_429"], out["http_418"]) == (0, 0)
    # (no faults in this simulator: nothing to retry)
    assert out["retries"] == 0 and 0 < out["weight_budget_used"] <= 1
    # Two days give the graph 46 hourly snapshots (the first two lack a trailing window), too few
    # for the GNN's walk-forward splits: the graph is built, the GNN skipped with its reason.
    assert summary.analytics is not None and summary.analytics.status == "skipped"
    assert (out["graph_snapshots"], out["model_uri"], out["models"]) == (46, None, {})
    assert out["analytics"]["graph_snapshots_skipped"] == 2 and out["analytics"]["graph_nodes"] == 3
    assert "walk-forward splits need at least" in (out["analytics"]["error"] or "")

    # Dagster recorded the materialization of every symbol-day once, with the figures.
    instance = dg.DagsterInstance.get()
    records = instance.fetch_materializations(dg.AssetKey(candles_asset("5m")), limit=10).records
    assert sorted(r.partition_key for r in records) == sorted(
        f"{d}|{s}" for d in (request.first, request.last) for s in SYMBOLS
    )
    meta = records[0].asset_materialization.metadata
    assert meta["stored_candles"].value == summary.stored
    assert meta["missing_candles"].value == 0
    assert meta["http_429"].value == 0 and meta["http_418"].value == 0
    assert records[0].run_id == summary.dagster_run_id

    # The step wrote its task records complete; the sensor reads the same telemetry and the records
    # and requests coverage once, writing no record.
    with store_from_settings(settings) as db:
        tasks = db.list_tasks(run_id=summary.dagster_run_id)
        assert len(tasks) == 3 and {t.status for t in tasks} == {COMPLETE}
        assert all(t.records_written == 2 * 288 for t in tasks)
        records = {t.queue_id: t.to_dict() for t in db.list_tasks()}
    # The sensor as the daemon runs it: resources from the definitions, settings from the
    # environment (the daemon's: `streamforge run` hands its settings to its own runs, not to it).
    os.environ.update(settings.to_env())
    sensor = defs.resolve_sensor_def(QUEUE_EVENTS_SENSOR)
    with dg.build_sensor_context(instance=instance, resources=defs.resources, definitions=defs) as ctx:
        data = sensor.evaluate_tick(ctx)
    assert [r.job_name for r in data.run_requests or []] == [COVERAGE_JOB]
    (req,) = data.run_requests or []
    first, last = sorted(SYMBOLS)[0], sorted(SYMBOLS)[-1]  # added as one stretch, in order
    assert req.tags[PARTITION_RANGE_START] == f"{request.first}|{first}"
    assert req.tags[PARTITION_RANGE_END] == f"{request.last}|{last}"
    assert req.run_key == f"coverage:{summary.dagster_run_id}:5m"
    with store_from_settings(settings) as db:
        again = process_tick(settings, db, data.cursor, symbol_order=sorted(SYMBOLS))
        assert again.events == 0 and again.requests == [] and again.silent == {}
        assert {t.queue_id: t.to_dict() for t in db.list_tasks()} == records

    # The requested coverage run materializes the downstream asset with the same figures.
    result = defs.resolve_job_def(COVERAGE_JOB).execute_in_process(
        instance=instance, run_config=req.run_config, tags=req.tags
    )
    assert result.success
    (cov,) = instance.fetch_materializations(dg.AssetKey(CANDLE_COVERAGE), limit=5).records[:1]
    assert cov.asset_materialization.metadata["stored_candles"].value == summary.stored
    assert cov.asset_materialization.metadata["missing_candles"].value == 0


def test_rerun_idempotent_and_overlap_adds_only_new(make_settings) -> None:
    settings = make_settings()
    first = LoadRequest(symbols=("BNBUSDT",), interval="1h", first=D4, last=D5)
    s1 = run_main_job(settings, first, analytics=False)
    s2 = run_main_job(settings, first, analytics=False)
    assert s1.ok and s2.ok and s1.stored == s2.stored == 48
    wider = LoadRequest(symbols=("BNBUSDT",), interval="1h", first=D4, last=D6)
    s3 = run_main_job(settings, wider, analytics=False)
    assert s3.ok and s3.stored == 72
    with store_from_settings(settings) as db:
        start, end = day_range_ms(wider.first, wider.last)
        assert db.count(CANDLES, ("BNBUSDT", "1h"), start, end) == 72
        assert db.duplicates(CANDLES, ["BNBUSDT"], ("1h",), start, end) == 0


def test_malformed_record_goes_to_dead_letter_and_load_completes(make_settings) -> None:
    settings = make_settings(partitions=2)
    bad = [b"{not json", orjson.dumps({"record": "candle", "symbol": "BTCUSDT", "interval": "1h"})]

    async def put_bad() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
        await producer.start()
        try:
            for value in bad:
                await producer.send_and_wait(settings.topic_candles, value, key=b"BTCUSDT")
        finally:
            await producer.stop()

    asyncio.run(put_bad())
    request = LoadRequest(symbols=("BTCUSDT",), interval="1h", first=D6, last=D6)
    summary = run_main_job(settings, request)
    assert summary.ok and summary.stored == 24
    # 1h candles are too coarse for the graph's 4-hour window: skipped with the reason, still ok.
    assert summary.analytics is not None and summary.analytics.status == "skipped"
    assert summary.analytics.graph_run_ids == [] and "1h candles give 4" in (summary.analytics.error or "")

    async def read_dlq() -> list[dict]:
        consumer = AIOKafkaConsumer(
            settings.dlq_topic(settings.topic_candles),
            bootstrap_servers=settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            out: list[dict] = []
            for _ in range(50):
                batch = await consumer.getmany(timeout_ms=200)
                out += [orjson.loads(r.value) for rs in batch.values() for r in rs]
                if len(out) >= 2:
                    break
            return out
        finally:
            await consumer.stop()

    dead = asyncio.run(read_dlq())
    assert len(dead) == 2, dead
    reasons = sorted(d["reason"] for d in dead)
    # the candle lacks its open time (its symbol and interval are valid); the other is not JSON
    assert reasons[0].startswith("candle.open_time: required field is missing"), reasons
    assert reasons[1].startswith("record: not valid JSON"), reasons
    assert {d["value"] for d in dead} == {v.decode() for v in bad}


def test_unknown_symbol_is_refused_before_any_work(make_settings) -> None:
    """`streamforge run` asks the exchange for its symbols first: nothing is launched."""
    settings = make_settings()
    request = LoadRequest(symbols=("BTCUSDT", "NOPEUSDT"), interval="5m", first=D6, last=D6)
    with pytest.raises(PreflightError, match=r"symbols not listed on the exchange at .*: NOPEUSDT \(") as err:
        run_main_job(settings, request)
    assert err.value.exit_code == 2
    with store_from_settings(settings) as db:
        assert db.list_tasks() == []
    assert not dg.DagsterInstance.get().get_runs()


def test_unknown_symbol_fails_the_step_with_the_exchange_error(make_settings) -> None:
    """Launched as the UI does (no preflight), the step fails with the exchange's own error; the
    analytics over the range then refuse the incomplete day, in one line."""
    settings = make_settings(task_stall_s=30.0)
    request = LoadRequest(symbols=("NOPEUSDT",), interval="5m", first=D6, last=D6)
    prepare_dagster_home(settings)
    with Stack(settings) as stack:
        os.environ.update(stack.settings.to_env())
        instance = dg.DagsterInstance.get()
        (stretch,) = ensure_symbols(instance, ["NOPEUSDT"])
        result = defs.resolve_job_def(candles_job("5m")).execute_in_process(
            instance=instance,
            run_config={"ops": {candles_asset("5m"): {"config": {"source": "rest"}}}},
            tags=range_tags(D6, D6, stretch),
            raise_on_error=False,
        )
        assert not result.success
        with store_from_settings(stack.settings) as db:
            (task,) = db.list_tasks(run_id=result.run_id)
        assert task.status == "failed"
        assert task.error is not None and "-1121" in task.error and "Invalid symbol" in task.error
        # The graph refuses the incomplete day (by design); the GNN does not run; one line says why.
        a = run_analytics(stack.settings, request, {})
    assert a.status == "failed" and len(a.graph_run_ids) == 1 and a.gnn_run_id is None
    assert a.error is not None and a.error.startswith(f"graph {request.first}: candles_5m of {request.first}")
    assert f"are not complete: NOPEUSDT (288 missing on {request.first})" in a.error


def test_main_job_with_analytics_graph_and_gnn_beside_baselines(make_settings) -> None:
    """`make run`'s path over 3 days: candles, a correlation graph per day, the GNN over the range."""
    settings = make_settings(partitions=2)
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")
    request = LoadRequest(symbols=symbols, interval="5m", first=D4, last=D6)
    summary = run_main_job(settings, request)
    a = summary.analytics
    assert summary.ok and a is not None and a.status == "ok", summary.to_json()["analytics"]
    out = summary.to_json()
    assert out["ok"] is True and out["stored_candles"] == 4 * 3 * 288

    # 3 days x 24 hourly snapshots; only the first two of the range lack a trailing window.
    info = out["analytics"]
    assert out["graph_snapshots"] + info["graph_snapshots_skipped"] == 3 * 24
    assert info["graph_snapshots_skipped"] == 2 and info["graph_nodes"] == len(symbols)
    assert 0 <= out["graph_edges"] <= out["graph_snapshots"] * len(symbols) * (len(symbols) - 1)
    assert info["graph_edges_mean"] == round(out["graph_edges"] / out["graph_snapshots"], 2)
    assert 0.0 <= info["graph_density_mean"] <= 1.0

    # The GNN and each baseline, with test metrics in range; the margin is the GNN's over the best.
    models = out["models"]
    assert set(models) == {"gnn", "nograph", "persistence", "majority"}
    for m in models.values():
        assert set(m) == {"accuracy", "mcc", "f1"}
        assert 0.0 <= m["accuracy"] <= 1.0 and -1.0 <= m["mcc"] <= 1.0 and 0.0 <= m["f1"] <= 1.0
    # (majority predicts one class per fold, so its MCC is 0 in every fold; pooled over folds whose
    # majorities differ it need not be: see the per-split check below)
    best = max((k for k in models if k != "gnn"), key=lambda k: models[k]["mcc"])
    assert info["best_baseline"] == best
    assert info["mcc_margin"] == pytest.approx(models["gnn"]["mcc"] - models[best]["mcc"], abs=1e-4)
    assert info["test_samples"] > 0 and info["epochs"] >= 1
    assert info["device"].split(":")[0] in {"cpu", "cuda"}

    # The model is in the model store with the same metrics and the run's data range.
    payload, manifest = from_settings(settings).load(out["model_uri"])
    assert payload and manifest.uri == out["model_uri"] and manifest.name == "gnn"
    assert manifest.metrics["test"] == models
    per_split = manifest.metrics["per_split"]["majority"]
    assert [per_split[f"fold{i}/test"]["mcc"] for i in range(3)] == [0.0, 0.0, 0.0]
    assert manifest.data_range["partitions"] == [request.first.isoformat(), request.last.isoformat()]

    # One coherent history in Dagster: 1 candles run, 1 graph run and 1 GNN run over the 3 days,
    # all with one tag.
    instance = dg.DagsterInstance.get()
    runs = instance.get_runs()
    assert len(runs) == 3 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert len({r.tags[MAIN_RUN_TAG] for r in runs}) == 1
    assert {r.run_id for r in runs} == {out["dagster_run_id"], *info["dagster_run_ids"]}
    graphs = instance.fetch_materializations(dg.AssetKey(CORRELATION_GRAPH), limit=10).records
    days = [(request.first + timedelta(d)).isoformat() for d in range(3)]
    assert sorted(r.partition_key for r in graphs) == days
    assert {r.run_id for r in graphs} == set(a.graph_run_ids) and len(a.graph_run_ids) == 1
    gnn = instance.fetch_materializations(dg.AssetKey(GNN_MODEL), limit=10).records
    assert len(gnn) == 3 and {r.run_id for r in gnn} == {a.gnn_run_id}
    assert gnn[0].asset_materialization.metadata["model_uri"].value == out["model_uri"]

    # The summary: the graph line, the models table (GNN first), the margin and the model's URI.
    text = _printed(summary)
    assert f"graph: {out['graph_snapshots']} snapshots (2 skipped) over 3 days, 4 nodes" in text
    rows = [line.split()[1] for line in text.splitlines() if line.split()[1:2] and line.split()[1] in models]
    assert rows == ["gnn", "nograph", "persistence", "majority"]
    edge = info["edge"]
    verdict = "edge claimed" if edge["claimed"] else "no edge claimed"
    assert edge["baseline"] == best and edge["margin"] == pytest.approx(info["mcc_margin"], abs=1e-4)
    assert f"gnn: {verdict}: MCC margin {info['mcc_margin']:+.3f} over {best}, 95% interval" in text
    assert f"model {out['model_uri']}" in text


def test_run_command_has_the_no_analytics_option() -> None:
    help_text = CliRunner().invoke(main, ["run", "--help"]).output
    assert "--no-analytics" in help_text and "Candles only" in help_text


@pytest.mark.parametrize("interval", ["1d"])
def test_other_intervals(make_settings, interval: str) -> None:
    settings = make_settings(partitions=1)
    request = LoadRequest(symbols=("XRPUSDT", "ADAUSDT"), interval=interval, first=D3, last=D6)
    summary = run_main_job(settings, request, analytics=False)
    assert summary.ok and summary.stored == 2 * 4 and summary.analytics is None
    assert summary.to_json()["models"] == {} and summary.to_json()["analytics"] is None
