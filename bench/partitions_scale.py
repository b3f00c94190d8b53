"""Which partitioning keeps per-symbol state in Dagster at 20 symbols x 3,400 days: a measurement.

``python -m bench.partitions_scale [--symbols 20] [--days 3400] [--materialized-days 365]``

Issue 13 asks the UI to show which symbol-days are complete, a backfill over a range and a symbol
subset to materialize exactly those, and the webserver and daemon to stay responsive at 20 symbols x
3,400 days. Three candidates, each one asset in a throw-away code location and instance (SQLite, as
``make dev``):

* ``multi_static`` — ``MultiPartitionsDefinition(date: daily, symbol: static list)``;
* ``multi_dynamic`` — the same with ``symbol`` a ``DynamicPartitionsDefinition`` (symbols added at
  run time, e.g. a new listing);
* ``daily_checks`` — daily partitions only, a per-symbol state recorded as one asset check per
  symbol (what the project has today, plus checks).

For each, ``--materialized-days`` x ``--symbols`` partitions are recorded as runless
materializations (``daily_checks``: one materialization per day and one check evaluation per
symbol-day), then the GraphQL queries the UI issues for an asset page are timed through Dagster's
own schema against an out-of-process workspace (what ``dagster dev`` serves): the partition
statistics and the per-partition status ranges (``assetPartitionStatuses``, what the partition bar
draws), plus the instance's ``get_materialized_partitions``. Prints seconds (median of 3) per query
and per candidate, and the time to record the events. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

FIRST_DAY = date(2017, 7, 14)

QUERY = """
query AssetPage($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      partitionStats { numMaterialized numPartitions numFailed numMaterializing }
      assetPartitionStatuses {
        __typename
        ... on TimePartitionStatuses { ranges { status startKey endKey } }
        ... on DefaultPartitionStatuses { materializedPartitions failedPartitions }
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges { primaryDimStartKey primaryDimEndKey
                   secondaryDim { ... on DefaultPartitionStatuses { materializedPartitions } } }
        }
      }
    }
  }
}
"""


def _code(symbols: list[str], last_day: date) -> str:
    return textwrap.dedent(
        f"""
        import dagster as dg

        SYMBOLS = {symbols!r}
        DAILY = dg.DailyPartitionsDefinition(
            start_date="{FIRST_DAY}", end_date="{last_day + timedelta(days=1)}"
        )

        @dg.asset(partitions_def=dg.MultiPartitionsDefinition(
            {{"date": DAILY, "symbol": dg.StaticPartitionsDefinition(SYMBOLS)}}))
        def multi_static(): ...

        @dg.asset(partitions_def=dg.MultiPartitionsDefinition(
            {{"date": DAILY, "symbol": dg.DynamicPartitionsDefinition(name="symbols")}}))
        def multi_dynamic(): ...

        CHECKS = [dg.AssetCheckSpec(f"complete_{{s.lower()}}", asset="daily_checks") for s in SYMBOLS]

        @dg.asset(partitions_def=DAILY, check_specs=CHECKS)
        def daily_checks(): ...

        defs = dg.Definitions(assets=[multi_static, multi_dynamic, daily_checks])
        """
    )


def _timed(fn: Callable[[], Any], rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.partitions_scale", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--days", type=int, default=3400)
    parser.add_argument("--materialized-days", type=int, default=365)
    args = parser.parse_args(argv)
    if not (1 <= args.symbols <= 500 and 1 <= args.materialized_days <= args.days):
        parser.error("--symbols 1..500 and 1 <= --materialized-days <= --days")
    symbols = [f"SYM{i:02d}USDT" for i in range(args.symbols)]
    last_day = FIRST_DAY + timedelta(days=args.days - 1)
    days = [last_day - timedelta(days=i) for i in range(args.materialized_days)][::-1]
    result: dict[str, Any] = {"bench": "partitions_scale", "symbols": args.symbols, "days": args.days,
                              "materialized_days": args.materialized_days}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / "defs.py"
        code.write_text(_code(symbols, last_day))
        with dg.instance_for_test(temp_dir=tmp) as instance:
            instance.add_dynamic_partitions("symbols", symbols)
            record: dict[str, float] = {}
            t0 = time.perf_counter()
            for d in days:
                for s in symbols:
                    key = dg.MultiPartitionKey({"date": str(d), "symbol": s})
                    instance.report_runless_asset_event(
                        dg.AssetMaterialization("multi_static", partition=key)
                    )
            record["multi_static"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            for d in days:
                for s in symbols:
                    key = dg.MultiPartitionKey({"date": str(d), "symbol": s})
                    instance.report_runless_asset_event(
                        dg.AssetMaterialization("multi_dynamic", partition=key)
                    )
            record["multi_dynamic"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            for d in days:
                instance.report_runless_asset_event(dg.AssetMaterialization("daily_checks", partition=str(d)))
                for s in symbols:
                    instance.report_runless_asset_event(
                        dg.AssetCheckEvaluation(
                            asset_key=dg.AssetKey("daily_checks"),
                            check_name=f"complete_{s.lower()}",
                            passed=True,
                            metadata={"day": str(d)},
                        )
                    )
            record["daily_checks"] = time.perf_counter() - t0
            result["record_s"] = {k: round(v, 1) for k, v in record.items()}
            with define_out_of_process_context(str(code), "defs", instance) as context:
                for name in ("multi_static", "multi_dynamic", "daily_checks"):
                    variables = {"key": {"path": [name]}}
                    answer = execute_dagster_graphql(context, QUERY, variables)
                    node = answer.data["assetNodeOrError"]
                    if "partitionStats" not in node:
                        raise SystemExit(f"{name}: the code location did not load: {answer.data}")
                    stats = node["partitionStats"]
                    result[name] = {
                        "partitions": stats["numPartitions"],
                        "materialized": stats["numMaterialized"],
                        "asset_page_query_s": _timed(
                            lambda v=variables: execute_dagster_graphql(context, QUERY, v)
                        ),
                        "materialized_partitions_s": _timed(
                            lambda n=name: instance.get_materialized_partitions(dg.AssetKey(n))
                        ),
                    }
    print(
        f"partitions at {args.symbols} symbols x {args.days} days, {args.materialized_days} days materialized"
    )
    for name in ("multi_static", "multi_dynamic", "daily_checks"):
        r = result[name]
        print(
            f"  {name:14s} partitions {r['partitions']:7d}  materialized {r['materialized']:6d}  "
            f"asset page query {r['asset_page_query_s']:6.3f}s  "
            f"instance read {r['materialized_partitions_s']:6.3f}s  "
            f"recording {result['record_s'][name]:6.1f}s"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
