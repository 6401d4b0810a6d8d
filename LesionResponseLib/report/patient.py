"""Per-patient report: one self-contained HTML file (Jinja2, base64 PNGs) and its PDF (headless chromium)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from LesionResponseLib import __version__
from LesionResponseLib.errors import describe
from LesionResponseLib.report import plots
from LesionResponseLib.report.data import (
    CATEGORY_COLOURS,
    FOLLOW_UP_CATEGORIES,
    ReportData,
    ReportInputError,
    category_counts,
    load_labels,
    load_report_data,
    load_suv,
)
from LesionResponseLib.segmentation.anatomy import NOT_SEARCHED_INTRACRANIAL
from LesionResponseLib.terminal import signed_percent

TEMPLATES = Path(__file__).parent / "templates"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-pdf-header-footer")


def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _timepoint_rows(data: ReportData) -> list[dict[str, Any]]:
    from LesionResponseLib.dicomio.tracer import tracer_label

    rows = []
    for t in data.analysis.timepoints:
        rows.append({"index": t.index, "date": t.study_date, "weight": _fmt(t.weight_kg),
                     "activity": _fmt(None if t.injected_activity_bq is None else t.injected_activity_bq / 1e6),
                     "uptake": _fmt(None if t.uptake_time_s is None else t.uptake_time_s / 60),
                     "method": t.suv_method, "factor": f"{t.suv_factor:.4g}", "manufacturer": t.manufacturer or "–",
                     "reference_time": t.suv_reference_time_source or "–", "normalisation": t.suv_normalisation or "",
                     "tracer": tracer_label(t), "geometry": "; ".join(t.geometry_notes) or "regular",
                     "n_rois": len(data.accepted_rois(t.index)),
                     "n_prior": sum(r.source == "prior-guided" for r in data.accepted_rois(t.index))})
    return rows


def _reference_rows(data: ReportData) -> list[dict[str, Any]]:
    """Per time point and reference organ: SUVmean ± SD, volume, who placed it and its warnings."""
    rows = []
    for region in sorted(data.analysis.reference_regions, key=lambda r: (r.timepoint, r.organ)):
        rows.append({"tp": region.timepoint, "organ": region.organ, "placed": region.placed,
                     "mean": _fmt(region.suv_mean, 2), "sd": _fmt(region.suv_sd, 2),
                     "volume": _fmt(region.volume_ml), "diameter": f"{region.diameter_mm:g}",
                     "source": region.source, "warnings": "; ".join(region.warnings)})
    return rows


def _burden_rows(data: ReportData) -> list[dict[str, Any]]:
    """``burden.csv``'s rows formatted for the report (change from TP0 in brackets)."""
    from LesionResponseLib.analysis.burden import burden_rows

    def change(value: float | None) -> str:
        return "" if value is None else f" ({signed_percent(value)})"

    return [{"tp": r["timepoint"], "site": r["site"], "n": r["n_rois"],
             "n_change": f" ({r['n_rois_change']:+d})" if r["timepoint"] else "",
             "volume": _fmt(r["volume_ml"]) + (change(r["volume_ml_change_pct"]) if r["timepoint"] else ""),
             "total": _fmt(r["suv_total"]) + (change(r["suv_total_change_pct"]) if r["timepoint"] else ""),
             "total_pvc": _fmt(r["suv_total_pvc"]) + (change(r["suv_total_pvc_change_pct"]) if r["timepoint"] else "")}
            for r in burden_rows(data.analysis)]


def _grade_counts(data: ReportData) -> list[dict[str, Any]]:
    """Per time point: accepted ROIs by Krenning-like grade (``analysis.burden.krenning_grade``)."""
    from LesionResponseLib.analysis.burden import lesion_ratios

    ratios = lesion_ratios(data.analysis)
    rows = []
    for t in data.analysis.timepoints:
        grades = [ratios[r.roi_id]["krenning_grade"] or "–" for r in data.accepted_rois(t.index)]
        rows.append({"tp": t.index, **{g: grades.count(g) for g in ("≤2", "3", "4", "≥3", "–")}})
    return rows


def _track_notes(data: ReportData, track_id: int) -> str:
    """Where the track's ROIs are not the model's (prior-guided, marked when found by model evidence; reader)
    and the detection limit where its lesion was looked for and not found (``Analysis.prior_searches``)."""
    track = next((t for t in data.analysis.tracks if t.track_id == track_id), None)
    if track is None:
        return ""
    by_id = {r.roi_id: r for r in data.analysis.rois}
    ids = {rid for rois in track.rois.values() for rid in rois}
    by_model = data.analysis.model_evidence_rois()
    notes = [f"TP{tp} {by_id[rid].source}" + (" (model evidence)" if rid in by_model else "")
             for tp, rois in sorted(track.rois.items()) for rid in rois
             if rid in by_id and by_id[rid].source != "model"]
    intracranial = []
    for record in data.analysis.prior_searches:
        if record.found or not set(record.prior_rois) & ids:
            continue
        if record.reason == NOT_SEARCHED_INTRACRANIAL:
            intracranial.append(f"TP{record.timepoint}")
        elif math.isfinite(record.limit_suv):  # NaN: the search could not run (reason in analysis.json)
            notes.append(f"TP{record.timepoint} searched, not found (limit {record.limit_suv:.1f} SUV)")
    if intracranial:
        notes.append(f"{', '.join(intracranial)} not searched: in the cranial cavity (pituitary uptake or a "
                     "meningioma?)")
    return "; ".join(notes)


def _change(response: Any, k: int) -> tuple[str, str]:
    """The change at follow-up ``k`` and its interval: ``("−42", "(−55…−27)")`` (no interval: "")."""
    delta, interval = response.delta_suv_total_pct.get(k), response.delta_interval_pct.get(k)
    return _fmt(delta, 0), f"({interval[0]:+.0f}…{interval[1]:+.0f})" if interval and delta is not None else ""


def _track_rows(data: ReportData) -> list[dict[str, Any]]:
    n_tp = len(data.analysis.timepoints)
    rows = []
    for r in sorted(data.analysis.responses, key=lambda r: r.track_id):
        cats = [(r.categories.get(k, "absent"), *_change(r, k), bool(r.indeterminate.get(k))) for k in range(1, n_tp)]
        rows.append({"track_id": r.track_id, "pattern": r.pattern, "cats": cats,
                     "suv": [_fmt(r.suv_total.get(k, 0.0)) for k in range(n_tp)],
                     "notes": _track_notes(data, r.track_id)})
    return rows


def _review_queue(data: ReportData) -> dict[str, Any]:
    """What the reader has not reviewed (in queue order: the likeliest errors first, with the reasons) and who
    marked the others reviewed, when (the ``reviewed`` edits of the audit trail)."""
    from LesionResponseLib.analysis.queue import review_queue

    items = review_queue(data.analysis)
    marks = {int(e["edit"]["track_id"]): f"{e.get('user', '')} {str(e.get('time', ''))[:16]}".strip()
             for e in data.analysis.audit if e.get("type") == "reviewed" and "edit" in e}
    left = [{"track_id": i.track_id, "score": f"{100 * i.score:.0f} %", "reasons": "; ".join(i.reasons) or "–"}
            for i in items if not i.reviewed]
    done = [f"T{i.track_id:03d}" + (f" ({marks[i.track_id]})" if i.track_id in marks else "")
            for i in items if i.reviewed]
    return {"left": left, "reviewed": done, "total": len(items)}


def _audit_rows(data: ReportData) -> list[dict[str, str]]:
    """Reader edits from analysis.json ``audit``, else ``review/audit.jsonl``."""
    entries = list(data.analysis.audit)
    jsonl = data.out_dir / "review" / "audit.jsonl"
    if not entries and jsonl.exists():
        entries = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    rows = []
    for entry in entries:
        rest = {k: v for k, v in entry.items() if k not in ("time", "timestamp", "user", "action", "op")}
        rows.append({"time": str(entry.get("time", entry.get("timestamp", ""))), "user": str(entry.get("user", "")),
                     "action": str(entry.get("action", entry.get("op", ""))),
                     "details": json.dumps(rest, default=str)[:300]})
    return rows


def _mips(data: ReportData, suv_window: float) -> list[str]:
    """Base64 PNG MIP per time point; tracks disappearing at k+1 outlined blue on TP k."""
    n_tp = len(data.analysis.timepoints)
    images = []
    for k in range(n_tp):
        leaving = {r.track_id for r in data.analysis.responses if r.categories.get(k + 1) == "disappearing"}
        png = plots.mip_figure(data, k, load_labels(data.out_dir, k), suv=load_suv(data, k),
                               disappearing_next=leaving, suv_window=suv_window)
        images.append(_b64(png))
    return images


def tracer_title(data: ReportData) -> str:
    """The tracer(s) of the analysis from the headers, for the report's title (``TimePointInfo.radiopharmaceutical``)."""
    names = list(dict.fromkeys(t.radiopharmaceutical for t in data.analysis.timepoints if t.radiopharmaceutical))
    return " / ".join(names) if names else "radiopharmaceutical not named in the DICOM headers;"


def render_patient_html(data: ReportData, suv_window: float = 10.0) -> str:
    """The report as one self-contained HTML string. A baseline-only analysis (one time point) shows its ROIs,
    measures and MIP and leaves out what needs a follow-up (categories, waterfall, trends, heterogeneity)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    n_tp = len(data.analysis.timepoints)
    figures = {"spaghetti": _b64(plots.spaghetti_plot(data)), "counts": _b64(plots.category_bars(data)),
               "waterfall": _b64(plots.waterfall_plot(data))} if n_tp > 1 else {}
    first = data.analysis.timepoints[0]
    return env.get_template("patient.html.j2").render(
        patient_id=data.analysis.patient_id, n_timepoints=n_tp, n_tracks=len(data.analysis.tracks),
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=data.analysis.software_version or __version__, schema_version=data.analysis.schema_version,
        heterogeneity=sorted(data.analysis.heterogeneous.items()), counts=sorted(category_counts(data).items()),
        categories=FOLLOW_UP_CATEGORIES, colours=CATEGORY_COLOURS, params=data.analysis.parameters.to_dict(),
        sex=first.sex, timepoints=_timepoint_rows(data),
        warnings=[f"TP{t.index}: {w}" for t in data.analysis.timepoints for w in t.warnings],
        assumptions=[f"TP{t.index}: {a}" for t in data.analysis.timepoints for a in t.suv_assumptions],
        figures=figures, mips=_mips(data, suv_window), suv_window=suv_window, follow_ups=range(1, n_tp),
        tracer=tracer_title(data),
        other_tracer=[f"TP{t.index} {t.radiopharmaceutical or t.radionuclide or '?'}"
                      for t in data.analysis.timepoints if t.tracer_override],
        measure=plots.measure_name(data), queue=_review_queue(data),
        interval_level=f"{100 * data.analysis.parameters.response.interval_level:.0f}",
        track_rows=_track_rows(data), audit=_audit_rows(data), reference_rows=_reference_rows(data),
        burden_rows=_burden_rows(data), grade_counts=_grade_counts(data), burden_figure=_b64(plots.burden_plot(data)))


def find_chromium() -> str | None:
    """Path of a chromium executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def html_to_pdf(html_path: Path, pdf_path: Path, timeout_s: float = 120.0) -> Path:
    """Print ``html_path`` to ``pdf_path`` with headless chromium (A4, CSS @page)."""
    chromium = find_chromium()
    if chromium is None:
        raise ReportInputError(describe("chromium not found, cannot print the PDF", path=pdf_path,
                                        fix="Install chromium (apt-get install chromium) or use --no-pdf."))
    with tempfile.TemporaryDirectory(prefix="lr-chromium-") as profile:
        command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={pdf_path}",
                   html_path.resolve().as_uri()]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                                env={**os.environ, "HOME": profile})
    if not pdf_path.exists() or pdf_path.stat().st_size == 0:
        raise ReportInputError(describe(f"chromium did not write the PDF ({result.stderr.strip()[-300:]})",
                                        path=pdf_path, fix="Check that chromium runs headless here, or use --no-pdf."))
    return pdf_path


def write_patient_report(out_dir: str | Path, report_dir: str | Path | None = None,
                         formats: tuple[str, ...] = ("html", "pdf")) -> dict[str, Path]:
    """Write ``report.html`` (and ``report.pdf``) for the analysis in ``out_dir``.

    ``report_dir`` defaults to ``out_dir/report``. Returns ``{"html": path, "pdf": path}``.
    """
    unknown = set(formats) - {"html", "pdf"}
    if unknown:
        raise ReportInputError(describe(f"unknown report format(s) {sorted(unknown)}", fix="Use html and/or pdf."))
    data = load_report_data(out_dir)
    dest = Path(report_dir) if report_dir is not None else Path(out_dir) / "report"
    dest.mkdir(parents=True, exist_ok=True)
    html_path = dest / "report.html"
    html_path.write_text(render_patient_html(data), encoding="utf-8")
    paths = {"html": html_path}
    if "pdf" in formats:
        paths["pdf"] = html_to_pdf(html_path, dest / "report.pdf")
    if "html" not in formats:
        html_path.unlink()
        del paths["html"]
    return paths
