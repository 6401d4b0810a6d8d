"""Cohort figures over several analysed patients, the ones the paper reports (DOMAIN.md §1).

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
"""

from __future__ import annotations

import statistics
from typing import Any

from LesionResponseLib.datamodel import Analysis, TrackResponse

NON_MONOTONIC = frozenset({"non-monotonic", "new-then-resolved", "disappeared-then-returned"})


def _present(response: TrackResponse, tp: int) -> bool:
    return response.suv_total.get(tp, 0.0) > 0.0


def _spread(values: list[int]) -> dict[str, float | int | None]:
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def patient_figures(analysis: Analysis) -> dict[str, Any]:
    """One patient's row of the cohort table."""
    n_tp = len(analysis.timepoints)
    last = n_tp - 1
    responses = analysis.responses
    new_first = [r for r in responses if r.categories.get(1) == "new"]
    gone_first = [r for r in responses if r.categories.get(1) == "disappearing"]
    row: dict[str, Any] = {
        "patient_id": analysis.patient_id,
        "n_scans": n_tp,
        "n_rois": sum(r.status == "accepted" for r in analysis.rois),
        "n_tracks": len(responses),
        "non_monotonic": any(r.pattern in NON_MONOTONIC for r in responses) if n_tp > 2 else None,
        "new_at_first_follow_up": len(new_first),
        "new_resolved_at_last": sum(not _present(r, last) for r in new_first) if n_tp > 2 else None,
        "disappeared_at_first_follow_up": len(gone_first),
        "disappeared_returned_at_last": sum(_present(r, last) for r in gone_first) if n_tp > 2 else None,
    }
    for k in range(1, n_tp):
        row[f"heterogeneous_t{k}"] = bool(analysis.heterogeneous.get(k, False))
    return row


def cohort_table(analyses: list[Analysis]):
    """A pandas DataFrame, one row per patient (:func:`patient_figures`)."""
    import pandas as pd

    return pd.DataFrame([patient_figures(a) for a in analyses])


def cohort_summary(analyses: list[Analysis]) -> dict[str, Any]:
    """The paper's cohort figures (module docstring) as a JSON-compatible dict."""
    rows = [patient_figures(a) for a in analyses]
    per_image = [sum(r.timepoint == t.index and r.status == "accepted" for r in a.rois)
                 for a in analyses for t in a.timepoints]
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
    }
