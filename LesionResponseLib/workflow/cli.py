"""Command-line commands of the orchestration layer: ``analyze``, ``demo``, ``cohort-analyze`` (they combine stages)
and ``settings`` (every setting those take). Their setting options are generated from
:func:`LesionResponseLib.config.settings` (:func:`LesionResponseLib.cli_base.with_settings`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

from LesionResponseLib.cli_base import json_option, out_option, patient_option, with_settings
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.terminal import cli_console, emit_json, print_error, signed_percent

CATEGORIES = ("new", "increasing", "stable", "decreasing", "disappearing")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
    app.command("analyze")(with_settings(analyze_command))
    app.command("demo")(with_settings(demo_command))
    app.command("cohort-analyze")(with_settings(cohort_analyze_command))
    app.command("settings")(settings_command)


#: Starts the stderr line of each stage when the output is not a terminal (a log, a face that runs ``analyze`` and
#: shows its progress: the review app's re-run reads these lines).
STAGE_LINE = "stage: "


def _run(input_dir: Path, out: Path, params: AnalysisParameters, patient: str | None, console) -> tuple[Any,
                                                                                                        Any]:
    from LesionResponseLib.workflow.pipeline import run_pipeline

    if not console.is_terminal:  # a spinner shows nothing here: one line per stage instead
        progress = cli_console(stderr=True)
        return run_pipeline(input_dir, out, params, patient=patient,
                            step=lambda name: progress.print(f"{STAGE_LINE}{name}", highlight=False, markup=False))
    with console.status("starting") as status:
        return run_pipeline(input_dir, out, params, patient=patient, step=lambda name: status.update(name))


def analysis_summary(analysis, report=None) -> dict[str, Any]:
    """What ``analyze`` reports: per time point the ROIs, category counts and heterogeneity; track patterns;
    doubtful registrations; prior-guided search counts; the tumour burden per time point (burden.csv's rows of
    all sites) and the reference regions' warnings; and, from the run ``report``, the reused and the computed
    stages and the re-applied review."""
    from collections import Counter

    from LesionResponseLib.analysis.burden import burden_rows
    from LesionResponseLib.datamodel import search_counts

    timepoints = []
    for tp in analysis.timepoints:
        k = tp.index
        counts = Counter(r.categories.get(k) for r in analysis.responses)
        timepoints.append({"index": k, "study_date": tp.study_date,
                           "rois": sum(r.timepoint == k and r.status == "accepted" for r in analysis.rois),
                           "categories": {c: counts.get(c, 0) for c in CATEGORIES} if k else None,
                           "heterogeneous": analysis.heterogeneous.get(k) if k else None})
    summary = {"patient_id": analysis.patient_id, "tracks": len(analysis.tracks), "timepoints": timepoints,
               "patterns": dict(sorted(Counter(r.pattern for r in analysis.responses).items())),
               "doubtful_registrations": [{"pair": f"tp{r.fixed_timepoint}->tp{r.moving_timepoint}",
                                           "message": r.message} for r in analysis.registrations if not r.ok],
               "prior_search": search_counts(analysis.prior_searches),
               "parameter_sources": analysis.parameters.non_default_sources(),
               "burden": [r for r in burden_rows(analysis) if r["site"] == "all"],
               "reference_warnings": [f"TP{region.timepoint} {region.organ} reference region: {warning}"
                                      for region in analysis.reference_regions for warning in region.warnings]}
    if report is not None:
        review = dataclasses.asdict(report.review) if report.review is not None else None
        summary.update(reused=report.reused(), computed=report.computed(), review=review)
    return summary


def print_summary(summary: dict[str, Any], console) -> None:
    """The :func:`analysis_summary` as a table and lines."""
    from rich.table import Table

    table = Table(title=f"Patient {summary['patient_id']}: {summary['tracks']} lesion-ROI tracks")
    for col in ("TP", "study date", "ROIs", *CATEGORIES, "heterogeneous"):
        table.add_column(col)
    for tp in summary["timepoints"]:
        cells = [str(tp["categories"][c]) for c in CATEGORIES] if tp["categories"] else [""] * len(CATEGORIES)
        flag = "" if tp["heterogeneous"] is None else ("yes" if tp["heterogeneous"] else "no")
        table.add_row(str(tp["index"]), tp["study_date"], str(tp["rois"]), *cells, flag)
    console.print(table)
    for reg in summary["doubtful_registrations"]:
        console.print(f"[yellow]warning:[/yellow] registration {reg['pair']} is doubtful ({reg['message']}); "
                      "check its matches in the review")
    console.print("track patterns: " + ", ".join(f"{p} {n}" for p, n in summary["patterns"].items()))
    counts = summary["prior_search"]
    if counts["searches"]:
        console.print(f"prior-guided search: {counts['searches']} missing lesion × time point(s) looked at, "
                      f"{counts['found']} found"
                      + (f", {counts['candidates']} model candidate(s) confirmed" if counts["candidates"] else "")
                      + " (rois.csv source = prior-guided)")
    if summary["parameter_sources"]:
        console.print("settings not at their default: " + ", ".join(
            f"{path} ({source})" for path, source in summary["parameter_sources"].items()), highlight=False)
    print_burden(summary, console)


def print_burden(summary: dict[str, Any], console) -> None:
    """Tumour burden per time point (burden.csv) and every reference region not placed or flagged."""
    console.print("tumour burden (burden.csv): " + "; ".join(
        f"TP{r['timepoint']} {r['volume_ml']:.1f} mL, {r['suv_total_pvc']:.0f} SUV·mL PV-corrected"
        + (f" ({signed_percent(r['volume_ml_change_pct'])} / {signed_percent(r['suv_total_pvc_change_pct'])})"
           if r["timepoint"] and r["volume_ml_change_pct"] is not None and r["suv_total_pvc_change_pct"] is not None
           else "") for r in summary["burden"]))
    for warning in summary["reference_warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


def analyze_command(
    input_dir: Path = typer.Argument(..., help="Folder with the patient's DICOM files (any layout, all studies)."),
    out: Path = out_option(..., "Output folder (created; the stage cache lives in OUT/cache)."),
    patient: str = patient_option(),
    as_json: bool = json_option("the summary"),
    params: AnalysisParameters = None,
) -> None:
    """Analyse one patient: segment, quantify, register, track, categorise; write the output folder."""
    console = cli_console(stderr=as_json)
    analysis, report = _run(input_dir, out, params, patient, console)
    summary = {**analysis_summary(analysis, report), "out": str(out)}
    if as_json:
        emit_json(summary)
        return
    print_summary(summary, console)
    reused = summary["reused"]
    console.print(f"reused from cache: {', '.join(reused) if reused else 'nothing'}")
    if report.review is not None:
        skipped = report.review.not_applicable
        console.print(f"reader's review: {report.review.applied} edit(s) re-applied"
                      + (f", [yellow]{len(skipped)} no longer apply[/yellow] (listed in "
                         f"{out / 'review' / 'not_applicable.json'})" if skipped else ""))
    console.print(f"written to {out}")


def demo_command(
    *, out: Path = out_option(Path("lesion-response-demo"),
                              "Folder for the phantom and the analysis (OUT/phantom, "
                           "OUT/analysis)."),
    seed: int = typer.Option(1, help="Phantom seed: the same seed gives the same patient."),
    timepoints: int = typer.Option(4, min=2, max=7, help="Number of scans (2–7)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Also write the HTML/PDF report "
                                                                   "(OUT/analysis/report)."),
    as_json: bool = json_option("the summary and the truth agreement"),
    params: AnalysisParameters = None,
) -> None:
    """Generate the phantom demo patient, analyse it, compare with its ground truth and write the report
    (``--segmentation truth``: analyse the phantom's true lesion masks)."""
    from LesionResponseLib.analysis.truth import truth_agreement
    from LesionResponseLib.phantom import generate_patient

    console = cli_console(stderr=as_json)
    phantom_dir, analysis_dir = out / "phantom", out / "analysis"
    if not (phantom_dir / "truth.json").is_file():
        with console.status(f"generating phantom patient (seed {seed}, {timepoints} time points)"):
            generate_patient(phantom_dir, seed=seed, timepoints=timepoints)
    if params.segmentation.method == "truth" and not params.segmentation.labels_dir:
        params = params.updated({"segmentation.labels_dir": str(phantom_dir / "truth")}, source="demo")
    analysis, _ = _run(phantom_dir / "dicom", analysis_dir, params, None, console)
    agreement = truth_agreement(analysis, analysis_dir, phantom_dir)
    paths = _demo_report(analysis_dir, console) if report else {}
    if as_json:
        emit_json({**analysis_summary(analysis), "truth_agreement": agreement, "phantom": str(phantom_dir),
                   "analysis": str(analysis_dir), "report": paths})
        return
    print_summary(analysis_summary(analysis), console)
    _print_agreement(agreement, console)
    console.print(f"phantom in {phantom_dir}, analysis in {analysis_dir}")
    if paths:
        console.print("report: " + ", ".join(str(p) for p in paths.values()))


def _demo_report(analysis_dir: Path, console) -> dict[str, Path]:
    """Write the patient report; a missing chromium only costs the PDF, never the analysis."""
    from LesionResponseLib.errors import LesionResponseError
    from LesionResponseLib.report import write_patient_report
    from LesionResponseLib.report.patient import find_chromium

    formats = ("html", "pdf") if find_chromium() else ("html",)
    try:
        with console.status("rendering the report"):
            return write_patient_report(analysis_dir, None, formats)
    except LesionResponseError as err:
        print_error(f"report not written: {err}", warning=True)
        return {}


def _print_agreement(agreement: dict, console) -> None:
    import numpy as np

    cat = agreement["category_agreement"]
    console.print(f"truth: {agreement['truth_tracks_found']}/{agreement['truth_tracks']} truth tracks found; "
                  f"categories agree on {cat * 100 if cat is not None else float('nan'):.0f}% of "
                  f"{agreement['category_pairs']} track×follow-up pairs; heterogeneity flags agree on "
                  f"{(agreement['heterogeneity_agreement'] or 0) * 100:.0f}% of follow-ups")
    for key, name in (("suv_total_errors_pct", "SUVtotal"), ("suv_total_pvc_errors_pct", "SUVtotal (PVC)")):
        errors = np.abs(agreement.get(key, []))
        if errors.size:
            console.print(f"{name} vs truth (tracks ≥ 2 mL): median |error| {np.median(errors):.1f}%, "
                          f"within 10%: {np.mean(errors <= 10) * 100:.0f}% of {errors.size}")


def cohort_analyze_command(
    input_path: Path = typer.Argument(None, help="A folder tree (every patient in it), or a manifest CSV "
                                                 "(patient_id,folder[,pacs][,labels]); omit with --pacs to take "
                                                 "every PET patient on the PACS."),
    *, out: Path = out_option(..., "Cohort folder: OUT/patients/<id>/ per patient, cohort.json, cohort.csv, "
                           "cohort-run.json, report/cohort.html."),
    pacs: str = typer.Option(None, help="DICOM server to retrieve from: a DICOMweb root (http://host:8042/dicom-web) "
                                        "or DIMSE dicom://AET@host:port (C-FIND + C-GET)."),
    patient: list[str] = typer.Option(None, "--patient", help="Analyse only this PatientID (repeat the option)."),
    cache: Path = typer.Option(None, help="Local cache for DICOM retrieved from --pacs (default OUT/pacs-cache)."),
    scheduler: str = typer.Option(None, help="Address of an existing Dask scheduler (tcp://host:8786, e.g. from "
                                             "dask-jobqueue or dask-kubernetes); default: a LocalCluster here."),
    workers: int = typer.Option(None, min=1, help="LocalCluster worker processes, each analysing one patient at a "
                                                  "time (default: one per 2 cores, within RAM at 4 GB each)."),
    threads: int = typer.Option(None, min=1, help="torch/ITK/OpenMP threads per patient (default: cores / workers; "
                                                  "on --scheduler: the worker's cores / its Dask threads)."),
    memory_limit: str = typer.Option("auto", help="Memory limit per LocalCluster worker (e.g. 6GB; auto: RAM / "
                                                  "workers); a worker above it is restarted by Dask."),
    dashboard_address: str = typer.Option(":8787", help="Where the LocalCluster serves the Dask dashboard."),
    as_json: bool = json_option("the run (every patient's status, the cohort figures)"),
    params: AnalysisParameters = None,
) -> None:
    """Analyse a cohort on Dask (one task per patient; resumable), then its cohort figures and report. Exits 4
    when a patient failed (the others are analysed)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from LesionResponseLib.cli_base import EXIT_PARTIAL
    from LesionResponseLib.workflow.cohort import ClusterPlan, discover, run_cohort
    from LesionResponseLib.workflow.pipeline import ARCHIVES

    console = cli_console(stderr=as_json)
    plan = ClusterPlan(scheduler=scheduler, workers=workers, threads=threads, memory_limit=memory_limit,
                       dashboard_address=dashboard_address)
    with console.status("finding patients"):
        jobs = discover(input_path, pacs, patient or None, unpack_dir=out / ARCHIVES)
    console.print(f"{len(jobs)} patient(s) to analyse into {out}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("patients", total=len(jobs))

        def started(client) -> None:
            bar.console.print(f"Dask dashboard: {client.dashboard_link or 'not available'} "
                              f"(scheduler {client.scheduler.address})")

        def finished(result) -> None:
            colour = {"done": "green", "skipped": "cyan"}.get(result.status, "red")
            note = f": {result.error}" if result.error else ""
            bar.console.print(f"[{colour}]{result.status}[/{colour}] {result.patient_id}{note}", highlight=False)
            bar.advance(task)

        run = run_cohort(jobs, out, params, plan, cache_dir=cache, on_start=started, on_result=finished)
    counts = {s: sum(r["status"] == s for r in run["patients"]) for s in ("done", "skipped", "failed")}
    if as_json:
        emit_json(run)
    else:
        console.print(f"{counts['done']} analysed, {counts['skipped']} unchanged (skipped), {counts['failed']} "
                      f"failed in {run['seconds']:.0f} s; status per patient: {out / 'cohort-run.json'}")
        if run["figures"]:
            f = run["figures"]
            console.print(f"cohort: {f['patients']} patients, {f['scans']} scans, {f['lesion_rois']} lesion-ROIs, "
                          f"{f['tracks']} tracks; figures in {out / 'cohort.json'}, report "
                          f"{out / 'report' / 'cohort.html'}")
    if counts["failed"]:
        raise typer.Exit(EXIT_PARTIAL)


def settings_command(
    config_file: Path = typer.Option(None, "--config", metavar="FILE",
                                     help="Also apply this settings file (TOML "
                                     "or analysis.json), as `analyze --config` does."),
    as_json: bool = json_option("every setting"),
) -> None:
    """List every analysis setting: its option, the value a run would use (built-in default, then the site file,
    then --config), where that value comes from, unit, allowed values and help. Set them with the options of
    analyze, demo and cohort-analyze, --set SECTION.NAME=VALUE, --config FILE or the site file."""
    from rich.table import Table

    from LesionResponseLib.config import (
        CONFIG_ENV,
        default_site_config_path,
        resolve_parameters,
        settings,
        site_config_path,
    )

    params = resolve_parameters(config_file=config_file)
    rows = [{"setting": spec.path, "option": spec.cli_flag, "value": params.value(spec.path),
             "default": spec.default, "source": params.sources.get(spec.path, "default"), "unit": spec.unit,
             "allowed": spec.describe_allowed(), "help": spec.long_help} for spec in settings()]
    site = site_config_path()
    if as_json:
        emit_json({"site_config": str(site) if site else None, "settings": rows})
        return
    console = cli_console()
    table = Table("setting", "option", "value", "source", "help", title="Analysis settings",
                  title_justify="left")
    for row in rows:
        table.add_row(row["setting"], row["option"], repr(row["value"]), row["source"], row["help"])
    console.print(table)
    hint = f"none (create {default_site_config_path()}, or name a file in ${CONFIG_ENV})"
    console.print(f"site config file: {site or hint}", highlight=False)
