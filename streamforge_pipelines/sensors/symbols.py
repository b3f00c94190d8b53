"""``symbol_partitions_sensor``: keeps the universe's symbols among the ``symbols`` partitions.

The symbol dimension of the day × symbol assets is dynamic (``docs/partitioning.md`` says why): its
partitions live in the instance. Each tick adds the symbols of ``STREAMFORGE_UNIVERSE`` the instance
does not know yet (sorted, so a new universe is one stretch of the symbol order and a range over it
is one run), so the UI's launch dialog and partition grid list them without anyone adding them.
It never removes one: a symbol dropped from the universe keeps its materialized history.
"""

import dagster as dg

from ..names import SYMBOL_PARTITIONS, SYMBOLS_SENSOR
from ..partitions import SYMBOLS
from ..settings import Settings


def missing_symbols(instance: dg.DagsterInstance, universe: tuple[str, ...]) -> list[str]:
    """The universe's symbols the instance's symbol partitions lack, sorted."""
    known = set(instance.get_dynamic_partitions(SYMBOL_PARTITIONS))
    return sorted({s.upper() for s in universe} - known)


@dg.sensor(
    name=SYMBOLS_SENSOR,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds the universe's symbols (STREAMFORGE_UNIVERSE) to the symbol partitions.",
)
def symbol_partitions_sensor(context: dg.SensorEvaluationContext, settings: dg.ResourceParam[Settings]):
    new = missing_symbols(context.instance, settings.universe)
    if not new:
        return dg.SkipReason(f"the {len(settings.universe)} symbols of the universe are partitions")
    context.log.info(f"adding symbol partitions: {', '.join(new)}")
    return dg.SensorResult(dynamic_partitions_requests=[SYMBOLS.build_add_request(new)])
