"""``candles_<interval>``: candles partitioned by day × symbol, one asset per interval.

Built by the dataset asset factory (:mod:`.datasets`, which says what every loaded dataset's step
does: queue-manager of its partitions, one run per date range, the completeness ledger with one
round of targeted repair reported as the asset check ``complete``). What is the candles' own: the
interval of each asset, the ``market`` of the run config (spot, or USD-M futures with their own
topic and collection) and its :class:`~streamforge_pipelines.queue_manager.LoadRequest`. The
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
from .datasets import LoadCall, LoadConfig, Request, dataset_asset


class CandlesConfig(LoadConfig):
    market: Literal["spot", "usdm"] = Field(
        default="spot",
        description="spot, or usdm (USD-M futures: their own topic and collection, candles_usdm)",
    )


def candles_request(interval: str) -> Request[CandlesConfig]:
    """The queue-manager request of a ``candles_<interval>`` run: the run's span and the market."""

    def request(call: LoadCall[CandlesConfig]) -> queue_manager.LoadRequest:
        return queue_manager.LoadRequest(
            interval=interval, market=call.config.market, **call.request_fields()
        )

    return request


def build_candles_asset(interval: str) -> dg.AssetsDefinition:
    return dataset_asset(
        CANDLES,
        name=candles_asset(interval),
        description=f"{interval} candles, one partition per UTC day × symbol.",
        check_description="No candle missing per the completeness ledger (confirmed exchange "
        "downtime is not missing); one round of targeted repair runs first.",
        config_type=CandlesConfig,
        request=candles_request(interval),
        metadata={"interval": interval},
    )


CANDLE_ASSETS = [build_candles_asset(i) for i in CANDLE_INTERVALS]
