"""The dataset asset factory: the candles and trades assets it builds keep their config schemas
(the symbols are their day × symbol partitions now, no longer config), metadata keys and checks
(the UI, saved launch configs and the runner read them), and the span helper covers a run's
partitions: days × a stretch of the symbol partitions."""

from __future__ import annotations

from datetime import date

import dagster as dg

from streamforge_pipelines.assets.load_metadata import complete_check, load_metadata
from streamforge_pipelines.datasets import CANDLES, TRADES
from streamforge_pipelines.definitions import defs
from streamforge_pipelines.names import AGG_TRADES, COMPLETE_CHECK, candles_asset
from streamforge_pipelines.partitions import (
    CANDLE_INTERVALS,
    DAY_SYMBOL,
    PartitionSpan,
    ensure_symbols,
    partition_span,
    range_tags,
    symbol_stretches,
)
from streamforge_pipelines.queue_manager import LoadReport, LoadRequest, TradesReport, TradesRequest, figures
from streamforge_pipelines.queue_manager.tracking import ExchangeTotals
from streamforge_pipelines.queue_manager.trades_ledger import TradesDayLedger
from streamforge_pipelines.store import LedgerRecord

DAY = date(2024, 8, 1)

#: The metadata keys of a candles load, as they were before the factory (the runner reads some).
CANDLE_KEYS = {
    "expected_candles",
    "stored_candles",
    "missing_candles",
    "downtime_candles",
    "repaired_candles",
    "duplicate_keys",
    "loaded_records",
    "tasks",
    "symbols",
    "seconds",
    "candles_per_second",
    "http_429",
    "http_418",
    "retries",
    "weight_budget_used",
    "days_from_archive",
    "days_from_rest",
    "days_repaired",
    "per_symbol_day",
}
TRADE_KEYS = {
    "expected_trades",
    "stored_trades",
    "missing_trades",
    "repaired_trades",
    "loaded_records",
    "tasks",
    "seconds",
    "http_429",
    "http_418",
    "retries",
    "weight_budget_used",
    "days_from_archive",
    "days_from_rest",
    "per_symbol_day",
}


def _config_fields(asset_key: str) -> dict[str, object]:
    """The asset's run config fields (required?, default, described?), as the launchpad shows them."""
    fields = defs.resolve_assets_def(asset_key).node_def.config_schema.config_type.fields  # type: ignore[union-attr]
    return {
        name: (f.is_required, f.default_value if f.default_provided else None, bool(f.description))
        for name, f in fields.items()
    }


def test_config_schemas_are_unchanged() -> None:
    for interval in CANDLE_INTERVALS:
        assert _config_fields(candles_asset(interval)) == {
            "source": (False, "auto", True),
            "max_steps": (False, 0, True),
            "retry": (False, True, True),
            "market": (False, "spot", True),
        }
    assert _config_fields(AGG_TRADES) == {
        "source": (False, "auto", True),
        "max_steps": (False, 0, True),
        "retry": (False, True, True),
    }
    asset = defs.resolve_assets_def(candles_asset("5m"))
    assert asset.metadata_by_key[asset.key]["interval"] == "5m"
    assert asset.descriptions_by_key[asset.key].startswith("5m candles, one partition per UTC day × symbol")


def _candles_report() -> LoadReport:
    request = LoadRequest(symbols=("BTCUSDT", "ETHUSDT"), interval="1h", first=DAY, last=DAY, source="auto")
    ledger = [
        LedgerRecord(symbol="BTCUSDT", interval="1h", day=DAY.isoformat(), expected=24, stored=24),
        LedgerRecord("ETHUSDT", "1h", DAY.isoformat(), expected=24, stored=21, missing=3, status="missing"),
    ]
    report = LoadReport(request=request, ledger=ledger, days=figures(ledger), loaded=45, seconds=2.0)
    report.tasks = {"q1": "complete", "q2": "complete"}
    report.exchange = ExchangeTotals(http_429=1, days_by_source={"archive": 1, "rest": 1, "repair": 1})
    return report


def test_candles_metadata_and_check() -> None:
    report = _candles_report()
    meta = load_metadata(CANDLES, report)
    assert set(meta) == CANDLE_KEYS
    values = {k: v.value for k, v in meta.items()}
    assert (values["expected_candles"], values["stored_candles"], values["missing_candles"]) == (48, 45, 3)
    assert values["candles_per_second"] == 22.5 and values["symbols"] == "BTCUSDT,ETHUSDT"
    assert (values["days_from_archive"], values["days_from_rest"], values["days_repaired"]) == (1, 1, 1)
    assert values["http_429"] == 1 and values["tasks"] == 2
    assert "| ETHUSDT | 2024-08-01 | 24 | 21 | 0 | 3 |" in str(values["per_symbol_day"])
    check = complete_check(CANDLES, report)
    assert check.check_name == COMPLETE_CHECK and not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert {k: v.value for k, v in check.metadata.items()}["missing"] == 3


def test_trades_metadata_and_check() -> None:
    request = TradesRequest(symbols=("BTCUSDT",), kind="agg", first=DAY, last=DAY)
    day = TradesDayLedger("BTCUSDT", "agg", DAY.isoformat(), 100, 199, 100, 98, missing_ranges=[(150, 152)])
    report = TradesReport(request=request, ledger=[day], loaded=98, repaired=0, seconds=1.0)
    report.tasks = {"q1": "complete"}
    meta = load_metadata(TRADES, report)
    assert set(meta) == TRADE_KEYS
    assert meta["missing_trades"].value == 2
    assert "| BTCUSDT | 2024-08-01 | 100 | 199 | 100 | 98 | 2 |" in str(meta["per_symbol_day"].value)
    check = complete_check(TRADES, report)
    assert not check.passed and check.description == "2 of 100 aggregate trades missing"
    assert {k: v.value for k, v in check.metadata.items()} == {
        "expected": 100,
        "stored": 98,
        "missing": 2,
        "repaired": 0,
    }
    day.missing_ranges.clear()
    day.stored = 100
    assert complete_check(TRADES, report).passed


def test_partition_span_of_one_day_and_of_a_range() -> None:
    one = partition_span(dg.build_asset_context(partition_key="2024-08-01"))
    assert one == PartitionSpan(DAY, DAY) and one.label == "2024-08-01" and one.days == [DAY]
    assert one.range_ms == (1_722_470_400_000, 1_722_556_800_000)
    ctx = dg.build_asset_context(partition_key_range=dg.PartitionKeyRange("2024-08-01", "2024-08-03"))
    span = partition_span(ctx)
    assert span.label == "2024-08-01..2024-08-03" and len(span.days) == 3
    assert range_tags(span.first, span.last) == {
        "dagster/asset_partition_range_start": "2024-08-01",
        "dagster/asset_partition_range_end": "2024-08-03",
    }


def test_a_run_covers_days_times_a_stretch_of_symbols() -> None:
    """A run over ``2024-08-01|BNBUSDT`` .. ``2024-08-03|SOLUSDT`` covers those days × the symbols
    added between the two (in the order they were added), read by a real day × symbol asset."""
    seen: list[PartitionSpan] = []

    @dg.asset(partitions_def=DAY_SYMBOL)
    def probe(context) -> None:  # type: ignore[no-untyped-def]  (future annotations: no class here)
        seen.append(partition_span(context))

    with dg.instance_for_test() as instance:
        assert ensure_symbols(instance, ["ethusdt", "BNBUSDT", "SOLUSDT"]) == [("BNBUSDT", "SOLUSDT")]
        assert ensure_symbols(instance, ["XRPUSDT"]) == [("XRPUSDT", "XRPUSDT")]  # appended after
        # BNBUSDT and SOLUSDT are not neighbours: two stretches, one run each
        assert ensure_symbols(instance, ["BNBUSDT", "SOLUSDT"]) == [
            ("BNBUSDT", "BNBUSDT"),
            ("SOLUSDT", "SOLUSDT"),
        ]
        tags = range_tags(DAY, date(2024, 8, 3), ("BNBUSDT", "ETHUSDT"))
        assert tags == {
            "dagster/asset_partition_range_start": "2024-08-01|BNBUSDT",
            "dagster/asset_partition_range_end": "2024-08-03|ETHUSDT",
        }
        result = dg.materialize([probe], instance=instance, tags=tags)
        assert result.success
        assert seen == [PartitionSpan(DAY, date(2024, 8, 3), ("BNBUSDT", "ETHUSDT"))]
        done = instance.get_materialized_partitions(probe.key)
        assert len(done) == 6 and "2024-08-02|ETHUSDT" in done and "2024-08-02|SOLUSDT" not in done


def test_symbol_stretches_follow_the_partition_order() -> None:
    order = ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT"]
    assert symbol_stretches(order, ["SOLUSDT", "ETHUSDT", "BTCUSDT", "XRPUSDT"]) == [
        ("BTCUSDT", "ETHUSDT"),
        ("SOLUSDT", "XRPUSDT"),
    ]
    assert symbol_stretches(order, []) == []
