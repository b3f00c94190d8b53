"""The end-of-run summary of ``streamforge run``: a table per symbol and day.

Columns: expected, stored, downtime (absent, confirmed by the exchange: not missing), missing,
seconds; then one line of totals with the candles the repair round re-fetched. When the analytics
ran: one graph line (snapshots, nodes, mean edges and density) and a table of the test metrics of the
GNN and each baseline, with the GNN's MCC margin over the best baseline and the model's URI; when
they failed or were skipped, one line saying why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .analytics.evaluation import edge_sentence

if TYPE_CHECKING:
    from .runner import AnalyticsSummary, RunSummary

#: Row order of the models table: the GNN first, then the baselines.
MODEL_ORDER = ("gnn", "nograph", "persistence", "majority")


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
    if summary.analytics is not None:
        print_analytics(summary.analytics, console)


def print_analytics(a: AnalyticsSummary, console: Console) -> None:
    if a.graph_days:
        console.print(
            f"graph: {a.snapshots} snapshots ({a.snapshots_skipped} skipped) over {a.graph_days} days, "
            f"{a.nodes} nodes, "
            f"{a.edges_mean:.1f} edges and density {a.density_mean:.3f} on average, {a.graph_seconds:.1f}s"
        )
    if a.status == "failed":
        console.print(f"[red]ANALYTICS FAILED[/red]: {escape(a.error or '')}", soft_wrap=True)
        return
    if a.status == "skipped":
        console.print(f"[yellow]analytics skipped[/yellow]: {escape(a.error or '')}", soft_wrap=True)
        return
    table = Table(title=f"next-period direction, walk-forward test ({a.test_samples} samples)")
    for col, justify in (("model", "left"), ("accuracy", "right"), ("MCC", "right"), ("F1", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    order = [m for m in MODEL_ORDER if m in a.models] + sorted(set(a.models) - set(MODEL_ORDER))
    for m in order:
        v = a.models[m]
        table.add_row(m, f"{v['accuracy']:.3f}", f"{v['mcc']:+.3f}", f"{v['f1']:.3f}")
    console.print(table)
    if a.edge:
        nograph = a.edge.get("vs_nograph")
        over = (
            f"; over nograph {nograph['margin']:+.3f} [{nograph['low']:+.3f}, {nograph['high']:+.3f}]"
            if nograph and a.edge.get("baseline") != "nograph"
            else ""
        )
        console.print(f"gnn: {edge_sentence(a.edge)}{over}", soft_wrap=True)
    else:
        margin = f"{a.mcc_margin:+.3f}" if a.mcc_margin is not None else "-"
        console.print(f"gnn: MCC margin {margin} over {a.best_baseline}", soft_wrap=True)
    console.print(
        f"gnn: {a.epochs} epochs on {a.device}, {a.gnn_seconds:.1f}s; model {escape(a.model_uri or '-')}",
        soft_wrap=True,
    )
