"""A deterministic, random-access market model for the exchange simulator: trades, candles, books.

Everything is a pure function of the configuration (:class:`~..config.SimulatorConfig`: seed,
symbols, listings, clusters, lead-lag relations, downtime): nothing is simulated from the beginning
of time, so any window can be served directly and two processes with the same seed serve the same
bytes. :class:`Market` is built in layers, one module per concern, each a class the next extends:

* :mod:`.base` — configuration, symbol lookup, listing and downtime (when each symbol trades);
* :mod:`.prices` — the keyed random walk, the day frames and the cells of every minute;
* :mod:`.trades` — the trades drawn from the cells, random-access ids, ``trades``/``aggTrades``;
* :mod:`.candles` — candles as exact sums of the trades (minutes, seconds, longer intervals);
* :mod:`.zones` and :mod:`.opens` — local-time boundaries (``timeZone``) and open-time selection;
* :mod:`.klines` — ``klines`` and ``count_klines`` with Binance's window rules;
* :mod:`.depth` — the order book after every 100 ms window (rules in :mod:`..book`);
* :mod:`.market` — :class:`Market` itself and its ground truth; :mod:`.frames` — candle frames.

All quantities are integers in units of 1e-8 (:data:`~..symbols.SCALE`).
"""

from .market import Market
from .opens import TZ_MAX_OFFSET, TZ_MIN_OFFSET
from .trades import MinuteTrades

__all__ = ["TZ_MAX_OFFSET", "TZ_MIN_OFFSET", "Market", "MinuteTrades"]
