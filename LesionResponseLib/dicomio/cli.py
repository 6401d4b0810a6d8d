"""Command-line commands of the DICOM stage: ``inspect``."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
    app.command("inspect")(inspect)


def inspect(
    input_dir: Path = typer.Argument(..., help="A DICOM folder (PACS export, CD, any layout)."),
    patient: str = typer.Option(None, help="Patient ID (or name) when the folder holds several patients."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    allow_uncorrected: bool = typer.Option(False, help="Accept PET with DecayCorrection NONE."),
) -> None:
    """Show patients, time points, chosen PET/CT series, SUV factor and method, and what was ignored."""
    from rich.console import Console
    from rich.progress import Progress

    from LesionResponseLib.dicomio import find_timepoints, index_folder
    from LesionResponseLib.errors import LesionResponseError

    console = Console(stderr=as_json)
    try:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("reading headers", total=None)
            index = index_folder(input_dir, progress=lambda d, t: bar.update(task, completed=d, total=t))
        inventory = find_timepoints(input_dir, patient=patient, strict=False, index=index,
                                    allow_uncorrected=allow_uncorrected)
    except LesionResponseError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(inventory.to_dict(), indent=1))
        return
    _print(inventory, index.n_files, console)


def _print(inventory, n_files: int, console) -> None:
    from rich.table import Table

    console.print(f"{n_files} files; patient [bold]{inventory.patient_id}[/bold] '{inventory.patient_name}'"
                  + (f"; other patients: {', '.join(inventory.other_patients)}" if inventory.other_patients else ""))
    table = Table(title="Time points")
    for col in ("TP", "scan start", "PET series", "CT series", "SUV factor (per Bq/mL)", "method", "weight kg",
                "MBq", "uptake min", "warnings"):
        table.add_column(col)
    for tp in inventory.timepoints:
        table.add_row(str(tp.index), tp.scan_datetime, f"{len(tp.pet_files)} files",
                      f"{len(tp.ct_files)} files" if tp.ct_files else "none", f"{tp.suv_factor:.6g}", tp.suv_method,
                      f"{tp.weight_kg}", f"{(tp.injected_activity_bq or 0) / 1e6:.1f}",
                      f"{(tp.uptake_time_s or 0) / 60:.1f}", "; ".join(tp.warnings))
    console.print(table)
    if inventory.ignored:
        ignored = Table(title="Ignored series")
        for col in ("date", "modality", "series", "files", "reason"):
            ignored.add_column(col)
        for item in inventory.ignored:
            ignored.add_row(item.study_date, item.modality, item.description, str(item.n_files), item.reason)
        console.print(ignored)
    for path, reason in inventory.unreadable[:20]:
        console.print(f"[yellow]unreadable[/yellow] {path}: {reason}")
