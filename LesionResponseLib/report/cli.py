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


def evaluate(
    out: Path = typer.Argument(..., help="Analysis output folder (holds analysis.json)."),
    reference: list[Path] = typer.Option(..., "--reference", help="The reference: a phantom folder (its truth), or "
                                         "a site's contours - RTSTRUCT or DICOM SEG files, NIfTI/NRRD label maps, or "
                                         "folders of them; repeat the option for several."),
    timepoint: int | None = typer.Option(None, "--timepoint", help="Time point of label maps (else from tp{k} in the "
                                         "file name) and of DICOM contours that reference no loaded series."),
    names: str | None = typer.Option(None, "--names", help="Only structures whose name matches this regular "
                                     "expression (e.g. 'lesion|met')."),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="Also print the page to PDF (headless chromium)."),
    dest: Path | None = typer.Option(None, "--dest", help="Folder of the results (default OUT/evaluation)."),
) -> None:
    """Measure the analysis against a reference: detection, contours and measures, categories; JSON + HTML/PDF."""
    from rich.console import Console

    from LesionResponseLib.errors import LesionResponseError
    from LesionResponseLib.report.evaluation import write_evaluation

    try:
        with Console().status("reading the reference and comparing..."):
            figures, paths = write_evaluation(out, reference, timepoint=timepoint, names=names, dest=dest,
                                              formats=("html", "pdf") if pdf else ("html",))
    except LesionResponseError as exc:
        _fail(exc)
    d = figures["detection"]
    typer.echo(f"reference: {figures['reference']['kind']}, {figures['reference']['lesions']} lesions, time points "
               f"{figures['reference']['covered_timepoints']}")
    typer.echo(f"detection: sensitivity {_share(d['sensitivity'])} of {d['n_reference']}, false positives per scan "
               f"{d['false_positives_per_scan']:.2f}, F1 {d['f1']:.3f}")
    typer.echo(f"matched lesions: {figures['contours']['matched']}, median Dice "
               f"{_share(figures['contours']['dice_median'], 2)}")
    categories = figures["categories"]
    typer.echo(f"categories agree: {_share(categories['agreement_all'])} of {categories['n_all']} lesion x follow-up "
               "pairs" if categories["available"] else f"categories: not computed ({categories['reason']})")
    for m in figures["reference"].get("skipped", []):
        typer.echo(f"not used: {m['name'] or m['file']} ({m['reason']})")
    for kind, path in paths.items():
        typer.echo(f"{kind}: {path}")


def _share(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
    app.command("report")(report)
    app.command("export")(export)
    app.command("cohort-report")(cohort_report)
    app.command("evaluate")(evaluate)
