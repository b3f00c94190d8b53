"""The end-of-run summary of ``streamforge run``: a table per symbol and day.

Columns: expected, stored, downtime (absent, confirmed by the exchange: not missing), missing,
seconds; then one line of totals with the candles the repair round re-fetched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from .runner import RunSummary


def print_summary(summary: RunSummary, console: Console | None = None) -> None:
    console = console or Console()
    r = summary.request
    table = Table(title=f"{r.interval} candles {r.first} .. {r.last}")
    for col, justify in (
        ("symbol", "left"),
        ("day", "left"),
        ("expected", "right"),
        ("stored", "right"),
        ("downtime", "right"),
        ("missing", "right"),
        ("seconds", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for d in summary.days:
        secs = summary.task_seconds.get(d.symbol)
        table.add_row(
            d.symbol,
            d.day,
            str(d.expected),
            str(d.stored),
            str(d.downtime) if d.downtime else "-",
            f"[red]{d.missing}[/red]" if d.missing else "0",
            f"{secs:.1f}" if secs is not None else "-",
        )
    console.print(table)
    status = "[green]complete[/green]" if summary.ok else "[red]INCOMPLETE[/red]"
    console.print(
        f"{status}: {summary.stored}/{summary.expected} candles stored, {summary.downtime} in exchange "
        f"downtime, {summary.repaired} repaired, {summary.missing} missing, "
        f"{summary.duplicate_keys} duplicate keys, {summary.seconds:.1f}s "
        f"(Dagster run {summary.dagster_run_id})"
    )
