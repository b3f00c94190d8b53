"""``agg_trades``: daily-partitioned aggregate trades (``/api/v3/aggTrades``) of the symbol universe.

Built by the dataset asset factory (:mod:`.datasets`): like ``candles_<interval>``, the step is the
queue-manager of its partitions (one ``api_agg_trades`` task per symbol for the whole range: a
backfill is one run; loaders in the step or standalone; completion by the connector's end-marker
acknowledgements), then the trades ledger (ids are consecutive, so a day is complete when every id
of its span is stored) with one round of ``id_ranges`` repair, reported as the asset check
``complete``. The trades' own part is the call
:func:`~streamforge_pipelines.queue_manager.load_trades` with the trade kind ``agg``.
"""

from .. import queue_manager
from ..datasets import TRADES
from ..names import AGG_TRADES
from .datasets import LoadCall, LoadConfig, dataset_asset

#: The trade kind of ``agg_trades`` (``api_agg_trades`` tasks).
AGG_KIND = "agg"


class TradesConfig(LoadConfig):
    """A trades load's run config: the symbols and the source (nothing beyond the common config)."""


async def load_agg_trades(call: LoadCall[TradesConfig]) -> queue_manager.TradesReport:
    """The queue-manager call of ``agg_trades``: one trades load of kind ``agg`` over the run's span."""
    request = queue_manager.TradesRequest(
        symbols=call.symbols,
        kind=AGG_KIND,
        first=call.span.first,
        last=call.span.last,
        run_id=call.run_id,
        partition_key=call.span.label,
        source=call.config.source,
    )
    return await queue_manager.load_trades(
        request,
        call.settings,
        call.store,
        launch=call.launch,
        max_parallel_tasks=call.max_parallel_tasks,
        on_progress=call.on_progress,
    )


agg_trades = dataset_asset(
    TRADES,
    name=AGG_TRADES,
    description="Aggregate trades (aggTrades) of the symbol universe, one partition per UTC day; "
    "store collection `trades`, keys `SYMBOL:agg:<id>`.",
    check_description="Every aggregate-trade id of each day's span is stored (one round of repair first).",
    config_type=TradesConfig,
    load=load_agg_trades,
)
