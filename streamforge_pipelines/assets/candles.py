"""``candles_<interval>``: daily-partitioned candles of the symbol universe, one asset per interval.

Built by the dataset asset factory (:mod:`.datasets`, which says what every loaded dataset's step
does: queue-manager of its partitions, one run per date range, the completeness ledger with one
round of targeted repair reported as the asset check ``complete``). What is the candles' own: the
interval of each asset, the ``market`` of the run config (spot, or USD-M futures with their own
topic and collection) and the call :func:`~streamforge_pipelines.queue_manager.load_candles`. The
check passes when no candle is missing (candles absent in confirmed exchange downtime are not
missing), with expected / stored / downtime / missing / repaired as metadata.
"""

from typing import Literal

import dagster as dg
from pydantic import Field

from .. import queue_manager
from ..datasets import CANDLES
from ..names import candles_asset
from ..partitions import CANDLE_INTERVALS
from .datasets import Load, LoadCall, LoadConfig, dataset_asset


class CandlesConfig(LoadConfig):
    market: Literal["spot", "usdm"] = Field(
        default="spot",
        description="spot, or usdm (USD-M futures: their own topic and collection, candles_usdm)",
    )


def load_candles(interval: str) -> Load[CandlesConfig]:
    """The queue-manager call of ``candles_<interval>``: one candles load over the run's span."""

    async def load(call: LoadCall[CandlesConfig]) -> queue_manager.LoadReport:
        request = queue_manager.LoadRequest(
            symbols=call.symbols,
            interval=interval,
            first=call.span.first,
            last=call.span.last,
            run_id=call.run_id,
            partition_key=call.span.label,
            source=call.config.source,
            market=call.config.market,
        )
        return await queue_manager.load_candles(
            request,
            call.settings,
            call.store,
            launch=call.launch,
            max_parallel_tasks=call.max_parallel_tasks,
            on_progress=call.on_progress,
        )

    return load


def build_candles_asset(interval: str) -> dg.AssetsDefinition:
    return dataset_asset(
        CANDLES,
        name=candles_asset(interval),
        description=f"{interval} candles of the symbol universe, one partition per UTC day.",
        check_description="No candle missing per the completeness ledger (confirmed exchange "
        "downtime is not missing); one round of targeted repair runs first.",
        config_type=CandlesConfig,
        load=load_candles(interval),
        metadata={"interval": interval},
    )


CANDLE_ASSETS = [build_candles_asset(i) for i in CANDLE_INTERVALS]
