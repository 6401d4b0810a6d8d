"""Command-line commands of the report stage: ``report``, ``export``, ``cohort-report``, ``evaluate``."""

from __future__ import annotations

from pathlib import Path

import typer

from LesionResponseLib.cli_base import EXIT_PARTIAL, json_option, out_option
from LesionResponseLib.report.pacs import parse_pacs_target
from LesionResponseLib.terminal import cli_console, emit_json

ANALYSIS_HELP = "Analysis output folder (holds analysis.json)."


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
    app.command("report")(report)
    app.command("export")(export)
    app.command("cohort-report")(cohort_report)
    app.command("evaluate")(evaluate)


def _print_paths(paths: dict[str, Path], as_json: bool) -> None:
    if as_json:
        emit_json(paths)
        return
    for kind, path in paths.items():
        cli_console().print(f"{kind}: {path}", highlight=False)


def report(
    analysis: Path = typer.Argument(..., help=ANALYSIS_HELP),
    out: Path | None = out_option(None, "Report folder (default ANALYSIS/report)."),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="Also print the report to PDF (headless chromium)."),
    as_json: bool = json_option("the written files"),
) -> None:
    """Write the per-patient HTML (and PDF) report."""
    from LesionResponseLib.report.patient import write_patient_report

    with cli_console(stderr=True).status("rendering report (plots, MIPs, PDF)..."):
        paths = write_patient_report(analysis, out, ("html", "pdf") if pdf else ("html",))
    _print_paths(paths, as_json)


def export(
    analysis: Path = typer.Argument(..., help=ANALYSIS_HELP),
    out: Path = out_option(..., "Folder for the DICOM SEG and SR files."),
    send: str | None = typer.Option(None, "--send", metavar="HOST:PORT[:AET]", parser=parse_pacs_target,
                                    help="Also C-STORE the files to this PACS (called AE title default ORTHANC)."),
    calling_aet: str = typer.Option("LESIONRESPONSE", "--calling-aet", help="Our AE title."),
    as_json: bool = json_option("the written files (and what the PACS stored)"),
) -> None:
    """Export one DICOM SEG and one DICOM SR (TID 1500) per time point; optionally send them to a PACS. Exits 4
    when the PACS did not store every file."""
    from LesionResponseLib.report.dicom_export import export_dicom
    from LesionResponseLib.report.pacs import send_to_pacs

    console = cli_console(stderr=as_json)
    with cli_console(stderr=True).status("building DICOM SEG and SR..."):
        paths = export_dicom(analysis, out)
    sent = None
    if send:
        host, port, aet = send
        sent = send_to_pacs(paths, host, port, called_aet=aet, calling_aet=calling_aet)
    if as_json:
        emit_json({"files": paths, "sent": sent})
    else:
        console.print("\n".join(str(p) for p in paths), highlight=False)
        if sent is not None:
            console.print(f"sent to {send[2]}@{send[0]}:{send[1]}: {sent['stored']} stored, {sent['failed']} failed")
    if sent is not None and sent["failed"]:
        raise typer.Exit(EXIT_PARTIAL)


def cohort_report(
    analyses: list[Path] = typer.Argument(..., help="Analysis output folders, one per patient."),
    out: Path = out_option(..., "Folder for cohort.html and cohort.csv."),
    as_json: bool = json_option("the written files"),
) -> None:
    """Write the cohort summary (HTML + CSV) over several analysed patients."""
    from LesionResponseLib.report.cohort import write_cohort_report

    _print_paths(write_cohort_report(analyses, out), as_json)


def evaluate(
    analysis: Path = typer.Argument(..., help=ANALYSIS_HELP),
    reference: list[Path] = typer.Option(..., "--reference", help="The reference: a phantom folder (its truth), or "
                                         "a site's contours - RTSTRUCT or DICOM SEG files, NIfTI/NRRD label maps, or "
                                         "folders of them; repeat the option for several."),
    timepoint: int | None = typer.Option(None, "--timepoint", help="Time point of label maps (else from tp{k} in the "
                                         "file name) and of DICOM contours that reference no loaded series."),
    names: str | None = typer.Option(None, "--names", help="Only structures whose name matches this regular "
                                     "expression (e.g. 'lesion|met')."),
    pdf: bool = typer.Option(True, "--pdf/--no-pdf", help="Also print the page to PDF (headless chromium)."),
    out: Path | None = out_option(None, "Folder of the results (default ANALYSIS/evaluation)."),
    as_json: bool = json_option("the figures and the written files"),
) -> None:
    """Measure the analysis against a reference: detection, contours and measures, categories; JSON + HTML/PDF."""
    from LesionResponseLib.report.evaluation import write_evaluation

    with cli_console(stderr=True).status("reading the reference and comparing..."):
        figures, paths = write_evaluation(analysis, reference, timepoint=timepoint, names=names, dest=out,
                                          formats=("html", "pdf") if pdf else ("html",))
    if as_json:
        emit_json({"figures": figures, "files": paths})
        return
    d, categories = figures["detection"], figures["categories"]
    lines = [f"reference: {figures['reference']['kind']}, {figures['reference']['lesions']} lesions, time points "
             f"{figures['reference']['covered_timepoints']}",
             f"detection: sensitivity {_share(d['sensitivity'])} of {d['n_reference']}, false positives per scan "
             f"{d['false_positives_per_scan']:.2f}, F1 {d['f1']:.3f}",
             f"matched lesions: {figures['contours']['matched']}, median Dice "
             f"{_share(figures['contours']['dice_median'], 2)}",
             f"categories agree: {_share(categories['agreement_all'])} of {categories['n_all']} lesion x follow-up "
             "pairs" if categories["available"] else f"categories: not computed ({categories['reason']})"]
    lines += [f"not used: {m['name'] or m['file']} ({m['reason']})" for m in figures["reference"].get("skipped", [])]
    lines += [f"{kind}: {path}" for kind, path in paths.items()]
    cli_console().print("\n".join(lines), highlight=False, markup=False)


def _share(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
