"""Command-line commands of the DICOM stage: ``inspect``."""

from __future__ import annotations

from pathlib import Path

import typer

from LesionResponseLib.cli_base import json_option, patient_option, with_settings
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.dicomio.tracer import tracer_label
from LesionResponseLib.terminal import cli_console, emit_json


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
    app.command("inspect")(with_settings(inspect, sections=("input",)))


def inspect(
    input_dir: Path = typer.Argument(..., help="A DICOM folder (PACS export, CD, any layout) or one file."),
    patient: str = patient_option(),
    as_json: bool = json_option("the patients, time points and ignored series"),
    params: AnalysisParameters = None,
) -> None:
    """Show patients, time points, chosen PET/CT series, SUV factor, method and provenance, and what was ignored."""
    from rich.progress import Progress

    from LesionResponseLib.dicomio import find_timepoints, index_folder

    console = cli_console(stderr=as_json)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("reading DICOM headers", total=None)
        index = index_folder(input_dir, progress=lambda d, t: bar.update(task, completed=d, total=t))
    inventory = find_timepoints(index, patient=patient, strict=False, weight_kg=params.input.weight_kg,
                                allow_other_tracer=params.input.allow_other_tracer)
    if as_json:
        emit_json({"n_files": index.n_files, **inventory.to_dict()})
        return
    _print(inventory, index.n_files, console)


def _slice_positions(tp) -> str:
    def mm(value) -> str:
        return "?" if value is None else f"{value:.3f} mm"

    ct = f"; CT up to {mm(tp.ct_slice_deviation_mm)}, tilt {tp.ct_tilt_deg or 0:.1f}°" if tp.ct_files else ""
    return f"PET up to {mm(tp.pet_slice_deviation_mm)} off a regular grid{ct}"


def _series(inventory, uid: str | None) -> str:
    if uid is None:
        return "none"
    info = inventory.series.get(uid, {})
    return f"{info.get('description', '?')} ({info.get('n_files', '?')} slices), uid {uid}"


def _timepoint_table(inventory, tp):
    from rich.table import Table

    table = Table(title=f"Time point {tp.index}: study {tp.study_date}", show_header=False, title_justify="left")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    rows = [("scan start", tp.scan_datetime), ("PET series", _series(inventory, tp.pet_series_instance_uid)),
            ("CT series", _series(inventory, tp.ct_series_instance_uid)),
            ("suv_factor", f"{tp.suv_factor:.6g} SUVbw per Bq/mL"), ("SUV method", tp.suv_method),
            ("SUV reference time", tp.suv_reference_time_source or "?"), ("normalisation", tp.suv_normalisation or "?"),
            ("SUL factor", "n/a" if tp.sul_factor is None else f"{tp.sul_factor:.6g} SUL per Bq/mL"),
            ("weight", f"{tp.weight_kg} kg"), ("injected", f"{(tp.injected_activity_bq or 0) / 1e6:.2f} MBq at "
                                                          f"{tp.injection_datetime}"),
            ("uptake", f"{(tp.uptake_time_s or 0) / 60:.1f} min"), ("manufacturer", tp.manufacturer or "?"),
            ("tracer", tracer_label(tp)),
            ("slice positions", _slice_positions(tp))]
    rows += [("geometry", note) for note in tp.geometry_notes]
    rows += [("assumption", a) for a in tp.suv_assumptions] + [("warning", w) for w in tp.warnings]
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def _print_not_read(not_read: list[tuple[str, str]], console, limit: int = 20) -> None:
    """Every file or folder not read, grouped by reason (the first ``limit`` listed; --json lists all)."""
    from collections import Counter

    from rich.markup import escape

    for reason, count in Counter(r for _, r in not_read).most_common():
        console.print(f"[yellow]not read[/yellow] {count} × {escape(reason)}", highlight=False, soft_wrap=True)
    for path, reason in not_read[:limit]:
        console.print(f"  {escape(path)}: {escape(reason)}", highlight=False, soft_wrap=True)
    if len(not_read) > limit:
        console.print(f"  ... and {len(not_read) - limit} more (inspect --json lists them all)")


def _print(inventory, n_files: int, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    patients = Table(title=f"Patients ({n_files} files read)", title_justify="left")
    for col in ("PatientID", "name", "studies", "files", "chosen"):
        patients.add_column(col)
    for p in inventory.patients:
        patients.add_row(p.patient_id, p.name, str(p.n_studies), str(p.n_files),
                         "yes" if p.patient_id == inventory.patient_id else "")
    console.print(patients)
    for tp in inventory.timepoints:
        console.print(_timepoint_table(inventory, tp))
    if inventory.ignored:
        ignored = Table(title="Ignored series", title_justify="left")
        for col in ("study date", "modality", "series", "files", "reason"):
            ignored.add_column(col, overflow="fold")
        for item in inventory.ignored:
            ignored.add_row(item.study_date, item.modality, item.description, str(item.n_files), item.reason)
        console.print(ignored)
    _print_not_read(inventory.not_read, console)
    for path, reason in inventory.unreadable[:20]:
        console.print(f"[yellow]unreadable[/yellow] {escape(path)}: {escape(reason)}", highlight=False,
                      soft_wrap=True)
    if len(inventory.unreadable) > 20:
        console.print(f"... and {len(inventory.unreadable) - 20} more unreadable files")
    for warning in inventory.warnings:
        console.print(f"[yellow]warning[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
