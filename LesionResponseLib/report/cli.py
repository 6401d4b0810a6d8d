"""Command-line commands of the report stage: ``report``, ``export``, ``cohort-report``."""

from __future__ import annotations

from pathlib import Path

import typer


def _fail(exc: Exception) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
    raise typer.Exit(2)


def report(
    out: Path = typer.Argument(..., help="Analysis output folder (holds analysis.json)."),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="Also print the report to PDF (headless chromium)."),
    dest: Path | None = typer.Option(None, "--dest", help="Report folder (default OUT/report)."),
) -> None:
    """Write the per-patient HTML (and PDF) report."""
    from rich.console import Console

    from LesionResponseLib.errors import LesionResponseError
    from LesionResponseLib.report.patient import write_patient_report

    try:
        with Console().status("rendering report (plots, MIPs, PDF)..."):
            paths = write_patient_report(out, dest, ("html", "pdf") if pdf else ("html",))
    except LesionResponseError as exc:
        _fail(exc)
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")


def _parse_target(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise typer.BadParameter(f"{target!r} is not HOST:PORT (e.g. 127.0.0.1:4242)")
    return host, int(port)


def export(
    out: Path = typer.Argument(..., help="Analysis output folder (holds analysis.json)."),
    dest: Path = typer.Option(..., "--dest", help="Folder for the DICOM SEG and SR files."),
    send: str | None = typer.Option(None, "--send", help="Also C-STORE the files to this PACS, HOST:PORT."),
    aet: str = typer.Option("ORTHANC", "--aet", help="Called AE title of the PACS."),
    calling_aet: str = typer.Option("LESIONRESPONSE", "--calling-aet", help="Our AE title."),
) -> None:
    """Export one DICOM SEG and one DICOM SR (TID 1500) per time point; optionally send them to a PACS."""
    from rich.console import Console

    from LesionResponseLib.errors import LesionResponseError
    from LesionResponseLib.report.dicom_export import export_dicom
    from LesionResponseLib.report.pacs import send_to_pacs

    target = _parse_target(send) if send else None
    try:
        with Console().status("building DICOM SEG and SR..."):
            paths = export_dicom(out, dest)
        for path in paths:
            typer.echo(str(path))
        if target:
            result = send_to_pacs(paths, target[0], target[1], called_aet=aet, calling_aet=calling_aet)
            typer.echo(f"sent to {aet}@{send}: {result['stored']} stored, {result['failed']} failed")
            if result["failed"]:
                raise typer.Exit(1)
    except LesionResponseError as exc:
        _fail(exc)


def cohort_report(
    outs: list[Path] = typer.Argument(..., help="Analysis output folders, one per patient."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for cohort.html and cohort.csv."),
) -> None:
    """Write the cohort summary (HTML + CSV) over several analysed patients."""
    from LesionResponseLib.errors import LesionResponseError
    from LesionResponseLib.report.cohort import write_cohort_report

    try:
        paths = write_cohort_report(outs, output)
    except LesionResponseError as exc:
        _fail(exc)
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
    app.command("report")(report)
    app.command("export")(export)
    app.command("cohort-report")(cohort_report)
