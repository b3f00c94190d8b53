"""The one dispatcher: a start command's ``type`` -> the loader that carries it out.

Both paths that run loaders use it: the standalone loader-producer (:mod:`.loader_producer`, a
consumer of ``queue-control``) and the queue-manager's in-process path (a Dagster step's loaders).
The built-in loaders are registered here; a new dataset's loader joins with :func:`register_loader`
(its spec's task types), next to :func:`streamforge_pipelines.datasets.register`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..protocol import Command
from ..settings import Settings
from .errors import TaskInvalid
from .loader_candles import CANDLE_LOADER
from .loader_task import Loader, LoadResult, run_loader_task
from .loader_trades import TRADES_LOADER

_LOADERS: dict[str, Loader] = {}


def register_loader(loader: Loader, task_types: Iterable[str] | None = None) -> None:
    """Route ``task_types`` (default: the loader's own) to ``loader``."""
    for task_type in loader.task_types if task_types is None else task_types:
        if task_type in _LOADERS and _LOADERS[task_type] is not loader:
            raise ValueError(f"task type {task_type!r} already has a loader")
        _LOADERS[task_type] = loader


def unregister_loader(loader: Loader) -> None:
    """Forget every task type routed to ``loader``."""
    for task_type in [t for t, held in _LOADERS.items() if held is loader]:
        del _LOADERS[task_type]


def loader_for(task_type: str | None) -> Loader:
    """The loader of ``task_type``; :class:`~.errors.TaskInvalid` naming the known types otherwise
    (:class:`~streamforge_pipelines.protocol.Command` refuses an unknown type first: only a command
    built around the validator reaches this)."""
    loader = _LOADERS.get(task_type or "")
    if loader is None:
        known = sorted(t for t in _LOADERS if not t.startswith("api_candles_"))
        supported = ", ".join(["api_candles_<interval>", *known])
        raise TaskInvalid(f"command.type: no loader for {task_type!r} (supported: {supported})")
    return loader


async def run_task(command: Command, settings: Settings, **options: Any) -> LoadResult:
    """Carry out ``command`` with its loader: :func:`~.loader_task.run_loader_task`, whose keyword
    options (``producer``, ``clock_ms``, ``governor``, ``checkpoints``) pass through."""
    return await run_loader_task(loader_for(command.type), command, settings, **options)


register_loader(CANDLE_LOADER)
register_loader(TRADES_LOADER)
