"""Cohort summary over several analysed patients: CSV (one row per patient) + HTML with the paper's figures.

The figures themselves come from ``LesionResponseLib.analysis.cohort_summary`` / ``cohort_table``; this
module only lays them out next to the published values (docs/DOMAIN.md §1) and draws the per-patient chart.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np

from LesionResponseLib.datamodel import Analysis
from LesionResponseLib.report.data import CATEGORY_COLOURS, FOLLOW_UP_CATEGORIES, load_analysis_folder

PAPER = "Santoro-Fernandes et al., J Nucl Med 2025;66:565"


def _fmt(value: Any, unit: str = "") -> str:
    return "–" if value is None else f"{value}{unit}"


def _cell(value: Any) -> Any:
    """Table cell: None for missing, yes / no, integral floats (counts next to a missing value) as int, other
    numbers to one decimal (mL, SUV·mL, %; the CSV keeps them whole)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float):
        return int(value) if value.is_integer() else f"{value:.1f}"
    return value


def statements(figures: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, this cohort, paper) rows: the paper's headline figures side by side with ours."""
    f = figures
    per_image, per_patient = f["rois_per_image"], f["tracks_per_patient"]
    rows = [
        ("patients / scans", f"{f['patients']} / {f['scans']}", "18 / 67"),
        ("lesion-ROIs (median per image)", f"{f['lesion_rois']} ({_fmt(f['median_rois_per_image'])})", "3,289 (24)"),
        ("lesion-ROIs per image: range", f"{_fmt(per_image['min'])}–{_fmt(per_image['max'])}", "–"),
        ("tracks (median per patient)", f"{f['tracks']} ({_fmt(f['median_tracks_per_patient'])})", "1,459 (49)"),
        ("tracks per patient: range", f"{_fmt(per_patient['min'])}–{_fmt(per_patient['max'])}", "–"),
        ("patients heterogeneous at the first follow-up", _fmt(f["heterogeneous_first_follow_up_pct"], " %"),
         "100 %"),
        ("non-monotonic change among patients with > 1 follow-up",
         f"{f['non_monotonic_among_them']} of {f['patients_more_than_one_follow_up']}", "10 of 10"),
        ("new at the first follow-up → resolved at the last",
         f"{f['new_resolved_at_last']} of {f['new_at_first_follow_up']} ({_fmt(f['new_resolved_at_last_pct'], ' %')})",
         "80 of 129 (62 %)"),
        ("disappearing at the first follow-up → returned at the last",
         f"{f['disappeared_returned_at_last']} of {f['disappeared_at_first_follow_up']} "
         f"({_fmt(f['disappeared_returned_at_last_pct'], ' %')})", "7 of 60 (12 %)"),
    ]
    for k, h in f["heterogeneous_per_follow_up"].items():
        if k != "1":
            rows.append((f"patients heterogeneous at follow-up {k}",
                         f"{h['heterogeneous']} of {h['patients']} ({_fmt(h['pct'], ' %')})", "–"))
    for name, label in (("volume_ml_change_pct", "SSTR tumour volume"), ("suv_total_change_pct", "Σ SUVtotal"),
                        ("suv_total_pvc_change_pct", "Σ PV-corrected SUVtotal"), ("n_rois_change_pct", "lesion count")):
        spread = f.get("burden_change_pct", {}).get(name)
        if spread and spread["median"] is not None:
            rows.append((f"{label}: change baseline → last scan, median (range)",
                         f"{spread['median']:+.1f} % ({spread['min']:+.1f} to {spread['max']:+.1f} %)", "–"))
    return rows


def first_follow_up_counts(analysis: Analysis) -> dict[str, int]:
    """Tracks per category at the first follow-up (for the per-patient chart)."""
    return {cat: sum(r.categories.get(1) == cat for r in analysis.responses) for cat in FOLLOW_UP_CATEGORIES}


def _bars_png(analyses: list[Analysis]) -> str:
    """Stacked bars of first-follow-up categories per patient (base64 PNG)."""
    from LesionResponseLib.report.plots import _png, _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.6 * len(analyses) + 2.5), 3.6))
    names = [a.patient_id for a in analyses]
    counts = [first_follow_up_counts(a) for a in analyses]
    bottom = [0.0] * len(analyses)
    for cat in FOLLOW_UP_CATEGORIES:
        heights = [float(c[cat]) for c in counts]
        ax.bar(range(len(names)), heights, bottom=bottom, color=CATEGORY_COLOURS[cat], label=cat)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_ylabel("tracks at the first follow-up")
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Track categories at the first follow-up, per patient")
    return base64.b64encode(_png(fig)).decode("ascii")


def _rois_per_image_png(analyses: list[Analysis]) -> str:
    """Lesion-ROIs of every image per patient (dots, baseline ringed) with the patient's median (bar)."""
    import statistics

    from LesionResponseLib.analysis.cohort import rois_per_image
    from LesionResponseLib.report.plots import _png, _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.6 * len(analyses) + 2.5), 3.2))
    for i, analysis in enumerate(analyses):
        counts = rois_per_image(analysis)
        ax.scatter([i] * len(counts), counts, s=16, color="#3a6ea5", zorder=3)
        ax.scatter([i], counts[:1], s=60, facecolors="none", edgecolors="#222", zorder=4)
        ax.hlines(statistics.median(counts), i - 0.3, i + 0.3, color="#c0392b", lw=2)
    ax.set_xticks(range(len(analyses)), [a.patient_id for a in analyses], rotation=45, ha="right")
    ax.set_ylabel("lesion-ROIs per image")
    ax.set_title("Lesion-ROIs per image (ringed: baseline; bar: median)")
    return base64.b64encode(_png(fig)).decode("ascii")


def _heterogeneity_png(figures: dict[str, Any]) -> str:
    """Share of patients with a heterogeneous response at each follow-up (n above each bar)."""
    from LesionResponseLib.report.plots import _png, _pyplot

    plt = _pyplot()
    per = figures["heterogeneous_per_follow_up"]
    fig, ax = plt.subplots(figsize=(max(3.5, 0.7 * len(per) + 1.5), 2.8))
    ks = list(per)
    ax.bar(range(len(ks)), [per[k]["pct"] or 0.0 for k in ks], color="#8e44ad")
    for i, k in enumerate(ks):
        ax.text(i, (per[k]["pct"] or 0.0) + 2, f"{per[k]['heterogeneous']}/{per[k]['patients']}", ha="center",
                fontsize=8)
    ax.set_xticks(range(len(ks)), [f"FU{k}" for k in ks])
    ax.set_ylim(0, 110)
    ax.set_ylabel("% of patients")
    ax.set_title("Heterogeneous response per follow-up")
    return base64.b64encode(_png(fig)).decode("ascii")


def write_cohort_report(out_dirs: list[str | Path], dest: str | Path) -> dict[str, Path]:
    """Write ``cohort.csv`` (one row per patient) and ``cohort.html`` for the folders ``out_dirs`` into ``dest``."""
    import jinja2

    from LesionResponseLib.analysis import cohort_summary, cohort_table

    analyses = [load_analysis_folder(d) for d in out_dirs]
    table = cohort_table(analyses)
    for cat in FOLLOW_UP_CATEGORIES:
        table[f"first_follow_up_{cat}"] = [first_follow_up_counts(a)[cat] for a in analyses]
    figures = cohort_summary(analyses)
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = folder / "cohort.csv", folder / "cohort.html"
    table.to_csv(csv_path, index=False)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True)
    rows = [{k: _cell(v) for k, v in row.items()} for row in table.to_dict("records")]
    html_path.write_text(env.get_template("cohort.html.j2").render(
        figures=figures, statements=statements(figures), paper=PAPER, rows=rows, columns=list(table.columns),
        chart=_bars_png(analyses) if analyses else "",
        rois_chart=_rois_per_image_png(analyses) if analyses else "",
        heterogeneity_chart=_heterogeneity_png(figures) if figures["heterogeneous_per_follow_up"] else ""),
        encoding="utf-8")
    return {"csv": csv_path, "html": html_path}
