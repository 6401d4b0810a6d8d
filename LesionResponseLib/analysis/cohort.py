"""Cohort figures over several analysed patients, the ones the paper reports (docs/DOMAIN.md §1).

Definitions (accepted ROIs only; categories as in :mod:`LesionResponseLib.analysis.response`):

- lesion-ROIs per image: accepted ROIs of each time point of each patient (median, range).
- tracks per patient: assessed tracks (median, range).
- heterogeneous share per follow-up k: patients with a follow-up k whose flag is true / patients with one.
- non-monotonic patients: among patients with more than one follow-up, those with at least one track whose
  pattern is ``non-monotonic``, ``new-then-resolved`` or ``disappeared-then-returned`` (each goes up and down).
- new at the first follow-up → resolved: tracks ``new`` at follow-up 1 (patients with > 1 follow-up) and,
  of those, the ones absent at the final time point.
- disappearing at the first follow-up → returned: tracks ``disappearing`` at follow-up 1 (patients with
  > 1 follow-up) and, of those, the ones present again at the final time point.

- tumour burden (``analysis.burden``): per patient the SSTR-expressing tumour volume, the total lesion uptake (Σ
  SUVtotal, Σ PV-corrected SUVtotal) and the lesion count at the baseline and the last time point and their change
  (%), and the change of the tumour volume by site; over the cohort the median and range of each change.

The same figures from a phantom's ground truth (``truth_cohort_summary``: true lesions as ROIs, truth
tracks, truth categories, true volumes and SUVtotal, the phantom's sites) let a synthetic cohort's analysis be
checked against truth figure by figure.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from LesionResponseLib.analysis.outputs import CSV_DIGITS, atomic_write_text
from LesionResponseLib.analysis.response import track_pattern
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.datamodel import Analysis, TrackResponse
from LesionResponseLib.errors import LesionResponseError, describe

NON_MONOTONIC = frozenset({"non-monotonic", "new-then-resolved", "disappeared-then-returned"})


def _present(response: TrackResponse, tp: int) -> bool:
    return response.suv_total.get(tp, 0.0) > 0.0


def _spread(values: list[int]) -> dict[str, float | int | None]:
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def rois_per_image(analysis: Analysis) -> list[int]:
    """Accepted lesion-ROIs of each time point of one patient, baseline first."""
    return [sum(r.timepoint == t.index and r.status == "accepted" for r in analysis.rois) for t in analysis.timepoints]


#: The burden sums compared between the baseline and the last time point (``analysis.burden.SUMS`` and the count).
BURDEN_MEASURES = ("volume_ml", "suv_total", "suv_total_pvc", "n_rois")


def _burden_columns(by_tp: list[dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Cohort-table burden columns from per time point ``{site or "all": {measure: value}}``: each measure at the
    baseline and the last time point with its change (%), and the tumour volume's change by site."""
    first, last = by_tp[0], by_tp[-1]
    empty = dict.fromkeys(BURDEN_MEASURES, 0.0)

    def change(site: str, measure: str) -> float | None:
        before = first.get(site, empty)[measure]
        after = last.get(site, empty)[measure]
        return None if before is None or after is None or before <= 0 else round(100.0 * (after - before) / before, 1)

    def value(sums: dict[str, dict[str, float]], measure: str) -> float | None:
        found = sums.get("all", empty)[measure]
        return round(found, CSV_DIGITS) if isinstance(found, float) else found  # counts stay integers

    columns: dict[str, Any] = {}
    for measure in BURDEN_MEASURES:
        columns[f"burden_{measure}_t0"] = value(first, measure)
        columns[f"burden_{measure}_last"] = value(last, measure)
        columns[f"burden_{measure}_change_pct"] = change("all", measure)
    for site in sorted((set(first) | set(last)) - {"all"}):
        columns[f"burden_volume_ml_change_pct_{site}"] = change(site, "volume_ml")
    return columns


def _analysis_burden(analysis: Analysis) -> list[dict[str, dict[str, float]]]:
    from LesionResponseLib.analysis.burden import burden_rows

    by_tp: list[dict[str, dict[str, float]]] = [{} for _ in analysis.timepoints]
    for row in burden_rows(analysis):
        by_tp[row["timepoint"]][row["site"]] = {m: row[m] for m in BURDEN_MEASURES}
    return by_tp


def _truth_burden(truth: dict[str, Any]) -> list[dict[str, dict[str, float]]]:
    """Per time point the true burden overall and by site (true volumes and SUVtotal; no PV-corrected value)."""
    from LesionResponseLib.analysis.truth import PHANTOM_SITE_NAMES

    by_tp: list[dict[str, dict[str, float]]] = []
    for k in range(int(truth["n_timepoints"])):
        sums: dict[str, dict[str, float]] = {}
        for lesion in truth["lesions"]:
            entry = lesion["timepoints"][str(k)]
            if not entry["present"]:
                continue
            for site in ("all", PHANTOM_SITE_NAMES.get(lesion["site"], lesion["site"])):
                totals = sums.setdefault(site, {"volume_ml": 0.0, "suv_total": 0.0, "suv_total_pvc": None,
                                                "n_rois": 0})
                totals["volume_ml"] += float(entry["volume_ml"])
                totals["suv_total"] += float(entry["suv_total"])
                totals["n_rois"] += len(entry["labels"])
        by_tp.append(sums)
    return by_tp


def _row(patient_id: str, per_image: list[int], responses: list[TrackResponse],
         heterogeneous: dict[int, bool]) -> dict[str, Any]:
    """One patient's figures from its ROI counts per image, track responses and heterogeneity flags."""
    n_tp = len(per_image)
    last = n_tp - 1
    new_first = [r for r in responses if r.categories.get(1) == "new"]
    gone_first = [r for r in responses if r.categories.get(1) == "disappearing"]
    spread = _spread(per_image)
    row: dict[str, Any] = {
        "patient_id": patient_id,
        "n_scans": n_tp,
        "n_rois": sum(per_image),
        "rois_per_image_median": spread["median"],
        "rois_per_image_min": spread["min"],
        "rois_per_image_max": spread["max"],
        "n_tracks": len(responses),
        "non_monotonic": any(r.pattern in NON_MONOTONIC for r in responses) if n_tp > 2 else None,
        "new_at_first_follow_up": len(new_first),
        "new_resolved_at_last": sum(not _present(r, last) for r in new_first) if n_tp > 2 else None,
        "disappeared_at_first_follow_up": len(gone_first),
        "disappeared_returned_at_last": sum(_present(r, last) for r in gone_first) if n_tp > 2 else None,
    }
    for k in range(1, n_tp):
        row[f"heterogeneous_t{k}"] = bool(heterogeneous.get(k, False))
    return row


def patient_figures(analysis: Analysis) -> dict[str, Any]:
    """One patient's row of the cohort table."""
    return {**_row(analysis.patient_id, rois_per_image(analysis), analysis.responses, analysis.heterogeneous),
            **_burden_columns(_analysis_burden(analysis))}


def cohort_table(analyses: list[Analysis]):
    """A pandas DataFrame, one row per patient (:func:`patient_figures`)."""
    import pandas as pd

    return pd.DataFrame([patient_figures(a) for a in analyses])


def cohort_summary(analyses: list[Analysis]) -> dict[str, Any]:
    """The paper's cohort figures (module docstring) as a JSON-compatible dict."""
    return summarise([patient_figures(a) for a in analyses], [rois_per_image(a) for a in analyses])


def write_cohort_figures(analyses: list[Analysis], out_dir: str | Path) -> dict[str, Any]:
    """Write ``out_dir/cohort.json`` (:func:`cohort_summary`) and ``out_dir/cohort.csv`` (:func:`cohort_table`);
    returns the summary."""
    out = Path(out_dir)
    summary = cohort_summary(analyses)
    atomic_write_text(out / "cohort.json", json.dumps(summary, indent=1))
    atomic_write_text(out / "cohort.csv", cohort_table(analyses).to_csv(index=False))
    return summary


def summarise(rows: list[dict[str, Any]], per_image_by_patient: list[list[int]]) -> dict[str, Any]:
    """Cohort figures from per-patient rows (:func:`patient_figures`) and their ROI counts per image."""
    per_image = [n for counts in per_image_by_patient for n in counts]
    multi = [r for r in rows if r["n_scans"] > 2]
    max_followups = max((r["n_scans"] - 1 for r in rows), default=0)
    heterogeneous = {}
    for k in range(1, max_followups + 1):
        eligible = [r for r in rows if f"heterogeneous_t{k}" in r]
        heterogeneous[str(k)] = {"patients": len(eligible),
                                 "heterogeneous": sum(r[f"heterogeneous_t{k}"] for r in eligible),
                                 "pct": _pct(sum(r[f"heterogeneous_t{k}"] for r in eligible), len(eligible))}
    new = sum(r["new_at_first_follow_up"] for r in multi)
    resolved = sum(r["new_resolved_at_last"] for r in multi)
    gone = sum(r["disappeared_at_first_follow_up"] for r in multi)
    returned = sum(r["disappeared_returned_at_last"] for r in multi)
    tracks = [r["n_tracks"] for r in rows]
    return {
        "patients": len(rows),
        "scans": sum(r["n_scans"] for r in rows),
        "lesion_rois": sum(per_image),
        "rois_per_image": _spread(per_image),
        "median_rois_per_image": _spread(per_image)["median"],
        "tracks": sum(tracks),
        "tracks_per_patient": _spread(tracks),
        "median_tracks_per_patient": _spread(tracks)["median"],
        "heterogeneous_per_follow_up": heterogeneous,
        "heterogeneous_first_follow_up_pct": heterogeneous.get("1", {}).get("pct"),
        "patients_more_than_one_follow_up": len(multi),
        "non_monotonic_among_them": sum(bool(r["non_monotonic"]) for r in multi),
        "new_at_first_follow_up": new,
        "new_resolved_at_last": resolved,
        "new_resolved_at_last_pct": _pct(resolved, new),
        "disappeared_at_first_follow_up": gone,
        "disappeared_returned_at_last": returned,
        "disappeared_returned_at_last_pct": _pct(returned, gone),
        "burden_change_pct": _burden_spread(rows),
    }


def _burden_spread(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    """Median and range over patients of each burden change (baseline to last time point), overall and by site."""
    names = sorted({k for r in rows for k in r if k.startswith("burden_") and "_change_pct" in k})
    return {name.removeprefix("burden_"): _spread([r[name] for r in rows if r.get(name) is not None])
            for name in names}


# ------------------------------------------------------------------------------------------ phantom truth
def truth_responses(truth: dict[str, Any]) -> list[TrackResponse]:
    """Track responses of a phantom's ground truth (``truth.json``): true SUVtotal, categories, pattern.

    Categories are the truth's own (baseline reference, ±30 %, docs/ARCHITECTURE.md); the pattern is
    :func:`track_pattern` over the true SUVtotal with the default thresholds. Tracks never present are left out.
    """
    params = AnalysisParameters()
    responses = []
    for track_id, entry in truth["tracks"].items():
        totals = {k: (v if v > 0 else None) for k, v in enumerate(entry["suv_total"])}
        if all(v is None for v in totals.values()):
            continue
        responses.append(TrackResponse(track_id=int(track_id), suv_total={k: v or 0.0 for k, v in totals.items()},
                                       categories={int(k): c for k, c in entry["categories"].items()},
                                       delta_suv_total_pct={}, pattern=track_pattern(totals, params)))
    return responses


def truth_rois_per_image(truth: dict[str, Any]) -> list[int]:
    """True lesion-ROIs per time point: distinct truth labels present there (a merged lesion counts once)."""
    n = int(truth["n_timepoints"])
    labels: list[set[int]] = [set() for _ in range(n)]
    for lesion in truth["lesions"]:
        for tp, entry in lesion["timepoints"].items():
            if entry.get("present"):
                labels[int(tp)].update(int(v) for v in entry["labels"])
    return [len(s) for s in labels]


def truth_patient_figures(truth: dict[str, Any]) -> dict[str, Any]:
    """The cohort-table row of a phantom patient computed from its ground truth (same keys as
    :func:`patient_figures`), so an analysed cohort can be compared with its truth figure by figure."""
    return {**_row(str(truth["patient_id"]), truth_rois_per_image(truth), truth_responses(truth),
                   {int(k): bool(v) for k, v in truth["heterogeneous"].items()}),
            **_burden_columns(_truth_burden(truth))}


def truth_cohort_summary(phantom_dirs: list[str | Path]) -> dict[str, Any]:
    """:func:`cohort_summary` of the ground truth of phantom folders (each holds ``truth.json``)."""
    truths = [_load_truth(d) for d in phantom_dirs]
    return summarise([truth_patient_figures(t) for t in truths], [truth_rois_per_image(t) for t in truths])


def truth_cohort_table(phantom_dirs: list[str | Path]):
    """:func:`cohort_table` of the ground truth of phantom folders (a pandas DataFrame)."""
    import pandas as pd

    return pd.DataFrame([truth_patient_figures(_load_truth(d)) for d in phantom_dirs])


def _load_truth(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "truth.json"
    if not path.is_file():
        raise LesionResponseError(describe("no truth.json: not a phantom folder", path=folder,
                                           fix="Give phantom folders written by `lesion-response phantom` or "
                                               "`phantom-cohort`."))
    return json.loads(path.read_text())
