"""Workers: the loaders and the connector. Plain asyncio; nothing here imports Dagster.

The names below are the public face the rest of StreamForge uses (the queue-manager, the command
line); ``tests/test_architecture.py`` pins them and fails when code outside ``workers/`` reaches past
them into a worker module. ``workers.dummy`` (the dummy-service's Kafka modes) is a room of its own
with its own public face. The exchange simulator, the dummy-service's exchange, lives in
:mod:`streamforge_pipelines.simulator`.
"""

from .connector import main as connector_main
from .dispatcher import loader_for, register_loader, run_task, unregister_loader
from .errors import TaskInvalid, TaskStopped, WorkerError
from .exchange_client import BinanceRestClient
from .governor import WeightGovernor
from .live.worker import serve_streams
from .loader_producer import serve_loader
from .loader_task import Loader, LoadResult, TaskControl, TaskRun, run_loader_task, send_end_markers
from .loader_trades import first_id
from .observability import configure_logging, redact_handlers, serve_metrics, settings_secrets

__all__ = [
    "BinanceRestClient",
    "LoadResult",
    "Loader",
    "TaskControl",
    "TaskInvalid",
    "TaskRun",
    "TaskStopped",
    "WeightGovernor",
    "WorkerError",
    "configure_logging",
    "connector_main",
    "first_id",
    "loader_for",
    "redact_handlers",
    "register_loader",
    "run_loader_task",
    "run_task",
    "send_end_markers",
    "serve_loader",
    "serve_metrics",
    "serve_streams",
    "settings_secrets",
    "unregister_loader",
]
