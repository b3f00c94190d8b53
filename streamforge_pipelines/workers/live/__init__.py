"""Live streams (``loader-ws-*``): Binance WebSocket market streams into Kafka.

By role: :mod:`.book` (one symbol's local order book kept by Binance's documented procedure),
:mod:`.connection` (one combined-stream connection and its lifecycle), :mod:`.streams` (stream
names, routes and the records live events become), :mod:`.worker` (the stream worker: start/stop
commands, heartbeats, metrics).
"""
