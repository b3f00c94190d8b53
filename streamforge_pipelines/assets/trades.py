"""``agg_trades``: aggregate trades (``/api/v3/aggTrades``) partitioned by day × symbol.

Built by the dataset asset factory (:mod:`.datasets`): like ``candles_<interval>``, the step is the
queue-manager of its partitions (one ``api_agg_trades`` task per symbol for the whole range: a
backfill is one run; loaders in the step or standalone; completion by the connector's end-marker
acknowledgements), then the trades ledger (ids are consecutive, so a day is complete when every id
of its span is stored) with one round of ``id_ranges`` repair, reported as the asset check
``complete``. The trades' own part is the request: a
:class:`~streamforge_pipelines.queue_manager.TradesRequest` of the trade kind ``agg``.
"""

from .. import queue_manager
from ..datasets import TRADES
from ..names import AGG_TRADES
from .datasets import LoadCall, LoadConfig, dataset_asset

#: The trade kind of ``agg_trades`` (``api_agg_trades`` tasks).
AGG_KIND = "agg"


class TradesConfig(LoadConfig):
    """A trades load's run config: the symbols and the source (nothing beyond the common config)."""


def agg_trades_request(call: LoadCall[TradesConfig]) -> queue_manager.TradesRequest:
    """The queue-manager request of an ``agg_trades`` run: trades of kind ``agg`` over the run's span."""
    return queue_manager.TradesRequest(kind=AGG_KIND, **call.request_fields())


agg_trades = dataset_asset(
    TRADES,
    name=AGG_TRADES,
    description="Aggregate trades (aggTrades), one partition per UTC day × symbol; "
    "store collection `trades`, keys `SYMBOL:agg:<id>`.",
    check_description="Every aggregate-trade id of each day's span is stored (one round of repair first).",
    config_type=TradesConfig,
    request=agg_trades_request,
)
