"""The commands the queue-manager publishes on ``queue-control``: one start command per symbol of a
load, and one per symbol with the open-time ranges a candles repair re-fetches.

(The trades ledger's ``id_ranges`` repair command is built where that ledger is:
:func:`.trades_ledger.repair_command`.)
"""

from __future__ import annotations

from ..intervals import ms_to_day
from ..protocol import (
    LOADER_PRODUCER,
    Command,
    format_time_range,
    make_producer_id,
    make_queue_id,
    new_suffix,
    now_s,
)
from ..settings import TRADES_COLLECTION, Settings
from .requests import LoadRequest, TradesRequest


def weight_share(settings: Settings, tasks: int, parallel: int) -> float:
    """Each loader task's share of the exchange's per-IP weight limit: the deployment's share
    (``EXCHANGE_WEIGHT_SHARE``) split evenly over the tasks that run at the same time."""
    at_once = max(1, min(tasks, parallel))
    return settings.exchange_weight_share / at_once


def build_commands(request: LoadRequest, settings: Settings, *, parallel: int = 4) -> list[Command]:
    commands = []
    share = weight_share(settings, len(request.symbols), parallel)
    for symbol in request.symbols:
        suffix = new_suffix()
        queue_id = make_queue_id(symbol, request.task_type, request.first, suffix)
        commands.append(
            Command(
                command="start",
                queue_id=queue_id,
                target=LOADER_PRODUCER,
                symbol=symbol,
                type=request.task_type,
                time_range=format_time_range(request.first, request.last),
                kafka_topic=settings.candle_topic(request.market),
                collection_name=request.collection,
                market=request.market,
                telemetry_id=make_producer_id(LOADER_PRODUCER, suffix),
                timestamp=now_s(),
                run_id=request.run_id,
                partition_key=request.partition_key,
                weight_share=share,
                source=request.source,
            )
        )
    return commands


def build_repair_commands(
    request: LoadRequest, ranges: dict[str, list[tuple[int, int]]], settings: Settings, *, parallel: int = 4
) -> list[Command]:
    """One REST command per symbol that fetches only ``ranges[symbol]`` (open-time ranges)."""
    commands = []
    share = weight_share(settings, len(ranges), parallel)
    for symbol, rs in sorted(ranges.items()):
        suffix = new_suffix()
        first, last = ms_to_day(rs[0][0]), ms_to_day(rs[-1][1] - 1)
        commands.append(
            Command(
                command="start",
                queue_id=make_queue_id(symbol, request.task_type, first, suffix),
                target=LOADER_PRODUCER,
                symbol=symbol,
                type=request.task_type,
                time_range=format_time_range(first, last),
                kafka_topic=settings.candle_topic(request.market),
                collection_name=request.collection,
                market=request.market,
                telemetry_id=make_producer_id(LOADER_PRODUCER, suffix),
                timestamp=now_s(),
                run_id=request.run_id,
                partition_key=request.partition_key,
                weight_share=share,
                source="rest",
                ranges=[(a, b) for a, b in rs],
            )
        )
    return commands


def build_trades_commands(request: TradesRequest, settings: Settings, *, parallel: int = 4) -> list[Command]:
    """One start command per symbol for the whole range (as :func:`build_commands`)."""
    share = weight_share(settings, len(request.symbols), parallel)
    commands = []
    for symbol in request.symbols:
        suffix = new_suffix()
        commands.append(
            Command(
                command="start",
                queue_id=make_queue_id(symbol, request.task_type, request.first, suffix),
                target=LOADER_PRODUCER,
                symbol=symbol,
                type=request.task_type,
                time_range=format_time_range(request.first, request.last),
                kafka_topic=settings.topic_trades,
                collection_name=TRADES_COLLECTION,
                telemetry_id=make_producer_id(LOADER_PRODUCER, suffix),
                timestamp=now_s(),
                run_id=request.run_id,
                partition_key=request.partition_key,
                weight_share=share,
                source=request.source,  # type: ignore[arg-type]
            )
        )
    return commands
