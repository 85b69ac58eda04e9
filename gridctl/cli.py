"""The ``gridctl`` command line: parses arguments and calls one function per command."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gridctl.core import GridctlError

app = typer.Typer(
    help="gridctl: feeder-safe energy sharing for community microgrids.", no_args_is_help=True
)
ledger_app = typer.Typer(help="Inspect and check settlement ledgers.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")
console = Console()
err_console = Console(stderr=True)


def _fail(e: GridctlError) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


@app.command()
def sim(
    scenario: Annotated[
        Path | None, typer.Argument(help="scenario YAML (default: the packaged default)")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="directory for kpis.json, ledger.sqlite and report.html")
    ] = Path("gridctl-out"),
    seed: Annotated[int | None, typer.Option(help="override the scenario's random seed")] = None,
    intervals: Annotated[
        int | None, typer.Option(help="override the number of 15-minute intervals")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the KPIs as JSON")] = False,
) -> None:
    """Simulate a community on a virtual feeder and write KPIs, ledger and report."""
    from gridctl.sim.run import run_sim

    logging.basicConfig(level=logging.WARNING)
    try:
        with Progress(
            TextColumn("simulating"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        ) as bar:
            task = bar.add_task("sim", total=None)
            res = run_sim(
                scenario,
                out,
                seed,
                intervals,
                lambda done, total: bar.update(task, completed=done, total=total),
            )
    except GridctlError as e:
        raise _fail(e) from None
    if as_json:
        console.print_json(json.dumps(res.kpis))
        return
    table = Table(title=f"gridctl sim: {res.kpis['scenario']}", show_header=True)
    table.add_column("KPI")
    table.add_column("value", justify="right", overflow="fold")
    for k, v in res.kpis.items():
        table.add_row(k, str(v))
    console.print(table)
    console.print(f"report: {res.report_path.resolve()}")
    console.print(f"kpis:   {res.kpis_path.resolve()}")
    console.print(f"ledger: {res.ledger_path.resolve()}")


@ledger_app.command("verify")
def ledger_verify(db: Annotated[Path, typer.Argument(help="ledger.sqlite file")]) -> None:
    """Recompute the hash chain and check every transaction balances (exit 1 if not intact)."""
    from gridctl.settlement.ledger import verify_ledger

    try:
        check = verify_ledger(db)
    except GridctlError as e:
        raise _fail(e) from None
    if check.ok:
        console.print(
            f"ledger intact: {check.entries} entries, {check.transactions} transactions, "
            f"head {check.head}",
            soft_wrap=True,
        )
        return
    err_console.print(
        f"[bold red]ledger broken:[/] {check.problem}", highlight=False, soft_wrap=True
    )
    raise typer.Exit(1)
