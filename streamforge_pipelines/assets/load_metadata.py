"""What a load reports in Dagster: the materialization metadata, the ``complete`` check and the
failure of a step, from a queue-manager report (``LoadReport``, ``TradesReport``).

Every load has the same figures (``expected_<noun>``, ``stored_<noun>`` ..., the exchange's, the per
(symbol, day) table); its ledger kind adds its own and judges ``complete`` (:data:`LEDGER_VIEWS`: a
time grid knows confirmed exchange downtime and duplicate keys, id ranges know each day's id span).
"""

from collections.abc import Mapping
from typing import Any, Protocol

import dagster as dg

from ..datasets import DatasetSpec, LedgerKind
from ..names import COMPLETE_CHECK
from ..queue_manager import LoadReport, TradesReport
from ..queue_manager.ledger import CheckSummary, check_summary
from ..queue_manager.tracking import ExchangeTotals, is_final_error


class LoadOutcome(Protocol):
    """What a queue-manager load reports (:class:`~..queue_manager.LoadReport`, ``TradesReport``)."""

    @property
    def expected(self) -> int: ...
    @property
    def stored(self) -> int: ...
    @property
    def missing(self) -> int: ...
    @property
    def repaired(self) -> int: ...
    @property
    def loaded(self) -> int: ...
    @property
    def seconds(self) -> float: ...
    @property
    def tasks(self) -> dict[str, str]: ...
    @property
    def errors(self) -> dict[str, str]: ...
    @property
    def exchange(self) -> ExchangeTotals: ...
    @property
    def failed(self) -> list[str]: ...


# ---- what each ledger kind adds --------------------------------------------------------------------


class LedgerView(Protocol):
    """What a ledger kind adds to a load's metadata and how it judges ``complete``."""

    def figures(self, noun: str, report: Any) -> dict[str, dg.MetadataValue]:
        """Metadata beyond the figures every load has."""
        ...

    def table(self, report: Any) -> list[str]:
        """The per (symbol, day) table, as markdown lines."""
        ...

    def verdict(self, report: Any) -> CheckSummary:
        """The ``complete`` check's outcome."""
        ...

    def summary(self, report: Any) -> str:
        """What the final log line says beyond stored/expected."""
        ...


class TimeGridView:
    """A fixed grid of times per day (candles): absent records split into confirmed exchange downtime
    and missing, duplicate keys counted. The candles' metadata has always carried the symbols, the
    rate and the days repaired too; they stay here so that no asset's metadata keys change."""

    def figures(self, noun: str, report: LoadReport) -> dict[str, dg.MetadataValue]:
        rate = report.stored / report.seconds if report.seconds else 0.0
        return {
            f"downtime_{noun}": dg.MetadataValue.int(report.downtime),
            "duplicate_keys": dg.MetadataValue.int(report.duplicate_keys),
            "symbols": dg.MetadataValue.text(",".join(report.request.symbols)),
            f"{noun}_per_second": dg.MetadataValue.float(round(rate, 1)),
            "days_repaired": dg.MetadataValue.int(report.exchange.days_by_source.get("repair", 0)),
        }

    def table(self, report: LoadReport) -> list[str]:
        rows = ["| symbol | day | expected | stored | downtime | missing |", "|---|---|---:|---:|---:|---:|"]
        return rows + [
            f"| {d.symbol} | {d.day} | {d.expected} | {d.stored} | {d.downtime} | {d.missing} |"
            for d in report.days
        ]

    def verdict(self, report: LoadReport) -> CheckSummary:
        return check_summary(report.ledger)

    def summary(self, report: LoadReport) -> str:
        return (
            f"; {report.downtime} in exchange downtime, {report.repaired} repaired, {report.missing} missing"
        )


class IdRangesView:
    """Consecutive ids per day (trades): a day is complete when every id of its span is stored."""

    def figures(self, noun: str, report: TradesReport) -> dict[str, dg.MetadataValue]:
        return {}

    def table(self, report: TradesReport) -> list[str]:
        rows = [
            "| symbol | day | first id | last id | expected | stored | missing |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        return rows + [
            f"| {e.symbol} | {e.day} | {e.first_id} | {e.last_id} | {e.expected} | {e.stored} | {e.missing} |"
            for e in report.ledger
        ]

    def verdict(self, report: TradesReport) -> CheckSummary:
        what = "aggregate trades" if report.request.kind == "agg" else "trades"
        return CheckSummary(
            passed=report.missing == 0,
            description=f"{report.missing} of {report.expected} {what} missing",
            metadata={
                "expected": report.expected,
                "stored": report.stored,
                "missing": report.missing,
                "repaired": report.repaired,
            },
        )

    def summary(self, report: TradesReport) -> str:
        return ""


LEDGER_VIEWS: Mapping[LedgerKind, LedgerView] = {"time_grid": TimeGridView(), "id_ranges": IdRangesView()}


# ---- metadata and the check -----------------------------------------------------------------------


def load_metadata(spec: DatasetSpec, report: Any) -> dict[str, dg.MetadataValue]:
    """A load's materialization metadata: the figures every load has (``expected_<noun>`` ...), the
    ledger kind's own, the exchange figures and the per (symbol, day) table."""
    noun, view, ex = spec.name, LEDGER_VIEWS[spec.ledger], report.exchange
    return {
        f"expected_{noun}": dg.MetadataValue.int(report.expected),
        f"stored_{noun}": dg.MetadataValue.int(report.stored),
        f"missing_{noun}": dg.MetadataValue.int(report.missing),
        f"repaired_{noun}": dg.MetadataValue.int(report.repaired),
        "loaded_records": dg.MetadataValue.int(report.loaded),
        "tasks": dg.MetadataValue.int(len(report.tasks)),
        "seconds": dg.MetadataValue.float(round(report.seconds, 3)),
        "http_429": dg.MetadataValue.int(ex.http_429),
        "http_418": dg.MetadataValue.int(ex.http_418),
        "retries": dg.MetadataValue.int(ex.retries),
        "weight_budget_used": dg.MetadataValue.float(round(ex.weight_budget_used, 4)),
        "days_from_archive": dg.MetadataValue.int(ex.days_by_source.get("archive", 0)),
        "days_from_rest": dg.MetadataValue.int(ex.days_by_source.get("rest", 0)),
        **view.figures(noun, report),
        "per_symbol_day": dg.MetadataValue.md("\n".join(view.table(report))),
    }


def complete_check(spec: DatasetSpec, report: Any, asset: str | None = None) -> dg.AssetCheckResult:
    """The ``complete`` check of a load (of ``asset``): passed iff its ledger has nothing missing."""
    verdict = LEDGER_VIEWS[spec.ledger].verdict(report)
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=COMPLETE_CHECK,
        passed=verdict.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=verdict.description,
        metadata={k: dg.MetadataValue.int(v) for k, v in verdict.metadata.items()},
    )


def load_failure(report: LoadOutcome, metadata: dict[str, dg.MetadataValue]) -> dg.Failure:
    """A failed or stalled task fails the step: no materialization for data that is not stored. The
    step's retry policy tries it again unless every failure is final (a symbol the exchange refuses:
    :func:`~..queue_manager.tracking.is_final_error`); a stalled task is not."""
    causes = "; ".join(f"{q}: {report.errors.get(q, report.tasks[q])}" for q in report.failed)
    final = all(is_final_error(report.errors.get(q)) for q in report.failed)
    return dg.Failure(
        description=f"{len(report.failed)} task(s) failed: {causes}",
        metadata=metadata,
        allow_retries=not final,
    )
