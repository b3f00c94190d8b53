"""The Dagster instance configuration StreamForge ships (``$DAGSTER_HOME/dagster.yaml``).

What it sets, and why:

* ``concurrency.pools``: every load step takes a slot of the pool ``binance``
  (:data:`~.assets.datasets.EXCHANGE_POOL`), limited to ``EXCHANGE_LOAD_SLOTS``, with
  ``granularity: run`` — a run whose step needs the pool waits *queued* (visible in the UI's run
  queue) until a slot is free, so two backfills never load more at once than one exchange budget
  is shared by; the loaders' governors then share the budget by the exchange's own weight header.
* ``concurrency.runs.max_concurrent_runs``: runs at once in all (loads, graphs, GNN trainings).
* ``run_coordinator``: the queued coordinator (what applies the two above), looking at its queue
  every second (Dagster's default is five: a launch from the UI would wait for it); ``telemetry`` off.

:func:`write_instance_config` writes it when the file is absent or was written by StreamForge
(it carries :data:`MARKER`); a ``dagster.yaml`` of the user's own is left as it is. The cluster's
Helm values carry the same settings (``docs/`` and ``deploy/`` say where).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .settings import Settings

#: The first line of a ``dagster.yaml`` StreamForge wrote (and may therefore rewrite).
MARKER = "# written by StreamForge (streamforge_pipelines/instance_config.py); edit the settings instead"
#: What earlier StreamForge versions wrote (rewritten as well).
_OLD = "telemetry:\n  enabled: false\n"
MAX_CONCURRENT_RUNS = 10


def instance_config(settings: Settings) -> dict[str, Any]:
    """The instance settings for ``settings`` (pool limit from ``EXCHANGE_LOAD_SLOTS``)."""
    return {
        "telemetry": {"enabled": False},
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            # a launch from the UI starts within a second or two, not up to five
            "config": {"dequeue_interval_seconds": 1},
        },
        "concurrency": {
            "pools": {"default_limit": settings.exchange_load_slots, "granularity": "run"},
            "runs": {"max_concurrent_runs": MAX_CONCURRENT_RUNS},
        },
    }


def write_instance_config(home: Path, settings: Settings) -> bool:
    """Write ``home/dagster.yaml`` unless the user wrote their own; True when written."""
    path = home / "dagster.yaml"
    if path.exists():
        text = path.read_text()
        if not (text.startswith(MARKER) or text == _OLD):
            return False
    body = yaml.safe_dump(instance_config(settings), sort_keys=False)
    path.write_text(f"{MARKER}\n{body}")
    return True
