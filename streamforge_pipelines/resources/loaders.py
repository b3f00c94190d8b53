"""The ``loaders`` resource: how a dataset asset's step runs its loaders."""

from typing import Literal

import dagster as dg


class LoaderResource(dg.ConfigurableResource):
    """How a step runs its loaders: inside the step, or by commands to standalone loader workers."""

    launch: Literal["inprocess", "external"] = "inprocess"
    max_parallel_tasks: int = 4
