"""Command-line commands of the orchestration layer: ``analyze``, ``demo`` and ``cohort-analyze`` (they
combine stages)."""

from __future__ import annotations

from pathlib import Path

import typer

from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.terminal import cli_console

_DEFAULTS = AnalysisParameters()


# options shared by analyze and cohort-analyze (one definition, same help and defaults)
_SEGMENTATION = typer.Option("model", help="'model' (shipped MONAI model), 'threshold', or a model file.")
_MODEL = typer.Option(None, help="Model file for --segmentation model (default: the shipped one).")
_REFERENCE = typer.Option("baseline", help="ΔSUVtotal reference: baseline, previous or nadir.")
_DECREASE = typer.Option(-30.0, help="ΔSUVtotal % below which a lesion is 'decreasing'.")
_INCREASE = typer.Option(30.0, help="ΔSUVtotal % above which a lesion is 'increasing'.")
_DILATION_MM = typer.Option(_DEFAULTS.matching.dilation_mm, help="Conformal dilation of ROIs before matching (mm).")
_MAX_DISTANCE_MM = typer.Option(_DEFAULTS.matching.max_distance_mm, help="Largest centroid distance of matched ROIs (mm).")
_MIN_OVERLAP = typer.Option(_DEFAULTS.matching.min_overlap, help="Smallest overlap coefficient of matched dilated ROIs (0–1).")
_MIN_VOLUME_ML = typer.Option(_DEFAULTS.segmentation.min_roi_volume_ml, help="Smallest lesion-ROI kept by the segmentation (mL).")
_EQUIVOCAL_MAX_VOLUME_ML = typer.Option(_DEFAULTS.segmentation.equivocal_max_volume_ml, help="Model ROIs smaller than "
                                              "this (mL) with SUVmax not above the liver SUVmean are dropped "
                                              "as equivocal (0: keep all).")
_REGISTRATION = typer.Option(_DEFAULTS.registration.method, help="Registration: auto (elastix when an engine is "
                             "available), elastix, elastix-slicer, elastix-program, elastix-itk, sitk-bspline, "
                             "sitk-rigid or identity (see `register --help`).")
_PSF_FWHM_MM = typer.Option(_DEFAULTS.quantification.psf_fwhm_mm, help="Reconstructed PET resolution, FWHM in mm (your "
                                  "scanner's; 5–7 on current PET/CT): used by the partial-volume-corrected SUVtotal.")
_PRIOR_SEARCH = typer.Option(_DEFAULTS.prior_search.enabled, help="Look for each track's lesion where the registration "
                             "puts it at time points without a ROI (marked prior-guided).")
_MEASURE = typer.Option(_DEFAULTS.response.measure, help="ROI quantity that drives the categories: suv_total_pvc "
                            "(partial-volume corrected, the default) or suv_total (SUVmean × volume, the paper's).")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
    app.command("analyze")(analyze_command)
    app.command("demo")(demo_command)
    app.command("cohort-analyze")(cohort_analyze_command)


def _params(segmentation: str, model: str | None, reference: str, decrease: float, increase: float,
            dilation_mm: float, max_distance_mm: float, min_overlap: float, min_volume_ml: float,
            registration: str, psf_fwhm_mm: float = _DEFAULTS.quantification.psf_fwhm_mm,
            measure: str = _DEFAULTS.response.measure,
            equivocal_max_volume_ml: float = _DEFAULTS.segmentation.equivocal_max_volume_ml,
            prior_search: bool = _DEFAULTS.prior_search.enabled):
    from LesionResponseLib.config import AnalysisParameters, ConfigError

    try:
        return AnalysisParameters().updated({
            "segmentation.method": segmentation, "segmentation.model_path": model,
            "segmentation.min_roi_volume_ml": min_volume_ml, "registration.method": registration,
            "matching.dilation_mm": dilation_mm, "matching.max_distance_mm": max_distance_mm,
            "matching.min_overlap": min_overlap, "response.reference": reference,
            "response.decrease_threshold_pct": decrease, "response.increase_threshold_pct": increase,
            "quantification.psf_fwhm_mm": psf_fwhm_mm, "response.measure": measure,
            "segmentation.equivocal_max_volume_ml": equivocal_max_volume_ml, "prior_search.enabled": prior_search})
    except ConfigError as err:
        raise typer.BadParameter(str(err)) from None


def _run(input_dir: Path, out: Path, params, patient: str | None, labels: Path | None, console):
    from LesionResponseLib.workflow.pipeline import run_pipeline

    with console.status("starting") as status:
        return run_pipeline(input_dir, out, params, patient, labels, step=lambda name: status.update(name))


def print_summary(analysis, console) -> None:
    """Time points, ROIs per time point, tracks, category counts per follow-up and heterogeneity."""
    from collections import Counter

    from rich.table import Table

    table = Table(title=f"Patient {analysis.patient_id}: {len(analysis.tracks)} lesion-ROI tracks")
    for col in ("TP", "study date", "ROIs", "new", "increasing", "stable", "decreasing", "disappearing",
                "heterogeneous"):
        table.add_column(col)
    for tp in analysis.timepoints:
        k = tp.index
        n_rois = sum(r.timepoint == k and r.status == "accepted" for r in analysis.rois)
        counts = Counter(r.categories.get(k) for r in analysis.responses)
        cells = [str(counts.get(c, 0)) if k else "" for c in ("new", "increasing", "stable", "decreasing",
                                                               "disappearing")]
        flag = ("yes" if analysis.heterogeneous.get(k) else "no") if k else ""
        table.add_row(str(k), tp.study_date, str(n_rois), *cells, flag)
    console.print(table)
    for reg in analysis.registrations:
        if not reg.ok:
            console.print(f"[yellow]warning:[/yellow] registration tp{reg.fixed_timepoint}->tp{reg.moving_timepoint} "
                          f"is doubtful ({reg.message}); check its matches in the review")
    patterns = Counter(r.pattern for r in analysis.responses)
    console.print("track patterns: " + ", ".join(f"{p} {n}" for p, n in sorted(patterns.items())))
    from LesionResponseLib.workflow.prior_search import search_counts

    counts = search_counts(analysis.prior_searches)
    if counts["searches"]:
        console.print(f"prior-guided search: {counts['searches']} missing lesion × time point(s) looked at, "
                      f"{counts['found']} found"
                      + (f", {counts['candidates']} model candidate(s) confirmed" if counts["candidates"] else "")
                      + " (rois.csv source = prior-guided)")
    print_burden(analysis, console)


def print_burden(analysis, console) -> None:
    """Tumour burden per time point (burden.csv) and every reference region not placed or flagged."""
    from LesionResponseLib.analysis.burden import burden_rows

    overall = [r for r in burden_rows(analysis) if r["site"] == "all"]
    console.print("tumour burden (burden.csv): " + "; ".join(
        f"TP{r['timepoint']} {r['volume_ml']:.1f} mL, {r['suv_total_pvc']:.0f} SUV·mL PV-corrected"
        + (f" ({r['volume_ml_change_pct']:+.0f} % / {r['suv_total_pvc_change_pct']:+.0f} %)"
           if r["timepoint"] and r["volume_ml_change_pct"] is not None and r["suv_total_pvc_change_pct"] is not None
           else "") for r in overall))
    for region in analysis.reference_regions:
        for warning in region.warnings:
            console.print(f"[yellow]warning:[/yellow] TP{region.timepoint} {region.organ} reference region: {warning}",
                          highlight=False)


def analyze_command(
    input_dir: Path = typer.Argument(..., help="Folder with the patient's DICOM files (any layout, all studies)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created; the stage cache lives in OUT/cache)."),
    patient: str = typer.Option(None, help="PatientID to analyse when the folder holds several patients."),
    segmentation: str = _SEGMENTATION,
    model: str = _MODEL,
    labels: Path = typer.Option(None, help="Use label maps tp{k}.nii.gz (or tp{k}_lesions.nii.gz) from this "
                                           "folder instead of segmenting."),
    reference: str = _REFERENCE,
    decrease: float = _DECREASE,
    increase: float = _INCREASE,
    dilation_mm: float = _DILATION_MM,
    max_distance_mm: float = _MAX_DISTANCE_MM,
    min_overlap: float = _MIN_OVERLAP,
    min_volume_ml: float = _MIN_VOLUME_ML,
    equivocal_max_volume_ml: float = _EQUIVOCAL_MAX_VOLUME_ML,
    registration: str = _REGISTRATION,
    psf_fwhm_mm: float = _PSF_FWHM_MM,
    measure: str = _MEASURE,
    weight_kg: float = typer.Option(None, "--weight-kg", help="Body weight in kg used instead of PatientWeight "
                                    "(0010,1030) for every time point, e.g. when it is missing."),
    prior_search: bool = _PRIOR_SEARCH,
    keep_intracranial: bool = typer.Option(not _DEFAULTS.segmentation.drop_intracranial,
                                           "--keep-intracranial/--drop-intracranial",
                                           help="Keep model ROIs lying in the cranial cavity found on the CT "
                                                "(dropped by default: the pituitary's physiological uptake)."),
    candidates: bool = typer.Option(_DEFAULTS.prior_search.candidates, "--candidates/--no-candidates",
                                    help="Also confirm lesions the model found below its minimum ROI volume when "
                                         "the search finds them at an adjacent time point (more lesions, and "
                                         "more physiological uptake to reject; README)."),
) -> None:
    """Analyse one patient: segment, quantify, register, track, categorise; write the output folder."""
    from LesionResponseLib.errors import LesionResponseError

    console = cli_console()
    try:
        params = _params(segmentation, model, reference, decrease, increase, dilation_mm, max_distance_mm,
                         min_overlap, min_volume_ml, registration, psf_fwhm_mm, measure, equivocal_max_volume_ml,
                         prior_search)
        params = params.updated({"input.weight_kg": weight_kg, "prior_search.candidates": candidates,
                                 "segmentation.drop_intracranial": not keep_intracranial})
        analysis, report = _run(input_dir, out, params, patient, labels, console)
    except LesionResponseError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    print_summary(analysis, console)
    reused = report.reused()
    console.print(f"reused from cache: {', '.join(reused) if reused else 'nothing'}")
    if report.review is not None:
        skipped = report.review["not_applicable"]
        console.print(f"reader's review: {report.review['applied']} edit(s) re-applied"
                      + (f", [yellow]{len(skipped)} no longer apply[/yellow] (listed in "
                         f"{out / 'review' / 'not_applicable.json'})" if skipped else ""))
    console.print(f"written to {out}")


def demo_command(
    out: Path = typer.Option(Path("lesion-response-demo"), "--out", "-o", help="Folder for the phantom and the "
                                                                                "analysis (OUT/phantom, OUT/analysis)."),
    seed: int = typer.Option(1, help="Phantom seed: the same seed gives the same patient."),
    timepoints: int = typer.Option(4, min=2, max=7, help="Number of scans (2–7)."),
    segmentation: str = typer.Option("model", help="'model', 'threshold', 'truth' (phantom masks) or a model file."),
    registration: str = typer.Option(_DEFAULTS.registration.method, help="Registration method (see `analyze --help`)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Also write the HTML/PDF report "
                                                                   "(OUT/analysis/report)."),
    measure: str = typer.Option(_DEFAULTS.response.measure, help="ROI quantity that drives the categories: "
                                "suv_total or suv_total_pvc (see `analyze --help`)."),
) -> None:
    """Generate the phantom demo patient, analyse it, compare with its ground truth and write the report."""
    from LesionResponseLib.analysis.truth import truth_agreement
    from LesionResponseLib.errors import LesionResponseError
    from LesionResponseLib.phantom import generate_patient

    console = cli_console()
    phantom_dir, analysis_dir = out / "phantom", out / "analysis"
    try:
        if not (phantom_dir / "truth.json").is_file():
            with console.status(f"generating phantom patient (seed {seed}, {timepoints} time points)"):
                generate_patient(phantom_dir, seed=seed, timepoints=timepoints)
        truth_labels = phantom_dir / "truth" if segmentation == "truth" else None
        d = _DEFAULTS
        params = _params("truth" if truth_labels else segmentation, None, d.response.reference, d.response.decrease_threshold_pct,
                         d.response.increase_threshold_pct, d.matching.dilation_mm, d.matching.max_distance_mm, d.matching.min_overlap,
                         d.segmentation.min_roi_volume_ml, registration, d.quantification.psf_fwhm_mm, measure)
        analysis, _ = _run(phantom_dir / "dicom", analysis_dir, params, None, truth_labels, console)
        agreement = truth_agreement(analysis, analysis_dir, phantom_dir)
    except LesionResponseError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    print_summary(analysis, console)
    _print_agreement(agreement, console)
    console.print(f"phantom in {phantom_dir}, analysis in {analysis_dir}")
    if report:
        _demo_report(analysis_dir, console)


def _demo_report(analysis_dir: Path, console) -> None:
    """Write the patient report; a missing chromium only costs the PDF, never the analysis."""
    from LesionResponseLib.errors import LesionResponseError
    from LesionResponseLib.report import write_patient_report
    from LesionResponseLib.report.patient import find_chromium

    formats = ("html", "pdf") if find_chromium() else ("html",)
    try:
        with console.status("rendering the report"):
            paths = write_patient_report(analysis_dir, None, formats)
    except LesionResponseError as err:
        console.print(f"[yellow]report not written:[/yellow] {err}")
        return
    console.print("report: " + ", ".join(str(p) for p in paths.values()))


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
                                                 "(patient_id,folder[,pacs][,labels]); omit with --pacs to take every PET "
                                                 "patient on the PACS."),
    out: Path = typer.Option(..., "--out", "-o", help="Cohort folder: OUT/patients/<id>/ per patient, cohort.json, "
                                                      "cohort.csv, cohort-run.json, report/cohort.html."),
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
    segmentation: str = _SEGMENTATION,
    model: str = _MODEL,
    reference: str = _REFERENCE,
    decrease: float = _DECREASE,
    increase: float = _INCREASE,
    dilation_mm: float = _DILATION_MM,
    max_distance_mm: float = _MAX_DISTANCE_MM,
    min_overlap: float = _MIN_OVERLAP,
    min_volume_ml: float = _MIN_VOLUME_ML,
    equivocal_max_volume_ml: float = _EQUIVOCAL_MAX_VOLUME_ML,
    registration: str = _REGISTRATION,
    psf_fwhm_mm: float = _PSF_FWHM_MM,
    measure: str = _MEASURE,
    prior_search: bool = _PRIOR_SEARCH,
) -> None:
    """Analyse a cohort on Dask (one task per patient; resumable), then its cohort figures and report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from LesionResponseLib.errors import LesionResponseError
    from LesionResponseLib.workflow.cohort import ClusterPlan, discover, run_cohort

    console = cli_console()
    params = _params(segmentation, model, reference, decrease, increase, dilation_mm, max_distance_mm,
                     min_overlap, min_volume_ml, registration, psf_fwhm_mm, measure, equivocal_max_volume_ml,
                     prior_search)
    plan = ClusterPlan(scheduler=scheduler, workers=workers, threads=threads, memory_limit=memory_limit,
                       dashboard_address=dashboard_address)
    try:
        with console.status("finding patients"):
            jobs = discover(input_path, pacs, patient or None)
        console.print(f"{len(jobs)} patient(s) to analyse into {out}")
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as bar:
            task = bar.add_task("patients", total=len(jobs))

            def started(client) -> None:
                bar.console.print(f"Dask dashboard: {client.dashboard_link or 'not available'} "
                                  f"(scheduler {client.scheduler.address})")

            def finished(result) -> None:
                colour = {"done": "green", "skipped": "cyan"}.get(result["status"], "red")
                note = f": {result['error']}" if result["error"] else ""
                bar.console.print(f"[{colour}]{result['status']}[/{colour}] {result['patient_id']}{note}",
                                  highlight=False)
                bar.advance(task)

            run = run_cohort(jobs, out, params, plan, cache, on_start=started, on_result=finished)
    except LesionResponseError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    counts = {s: sum(r["status"] == s for r in run["patients"]) for s in ("done", "skipped", "failed")}
    console.print(f"{counts['done']} analysed, {counts['skipped']} unchanged (skipped), {counts['failed']} failed "
                  f"in {run['seconds']:.0f} s; status per patient: {out / 'cohort-run.json'}")
    if run["figures"]:
        f = run["figures"]
        console.print(f"cohort: {f['patients']} patients, {f['scans']} scans, {f['lesion_rois']} lesion-ROIs, "
                      f"{f['tracks']} tracks; figures in {out / 'cohort.json'}, report {out / 'report' / 'cohort.html'}")
    if counts["failed"]:
        raise typer.Exit(1)
