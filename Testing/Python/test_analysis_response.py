"""assess_response on hand-built tracks with known categories, references, heterogeneity and patterns."""

from __future__ import annotations

import pytest

from LesionResponseLib.analysis.response import assess_response, roi_categories, track_pattern
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.datamodel import LesionROI, Track


def _roi(tp: int, label: int, total: float, status: str = "accepted") -> LesionROI:
    return LesionROI(roi_id=f"tp{tp}-L{label:04d}", timepoint=tp, label=label, centroid_mm=(0.0, 0.0, 0.0),
                     volume_ml=1.0, suv_max=total, suv_mean=total, suv_peak=total, suv_total=total,
                     status=status)  # type: ignore[arg-type]


def _patient(series: dict[int, list[list[float] | None]], rejected: frozenset[str] = frozenset()):
    """tracks from {track_id: [SUVtotals of its ROIs per time point, or None]}."""
    rois, tracks, label = [], [], 0
    for track_id, per_tp in series.items():
        ids: dict[int, list[str]] = {}
        for tp, totals in enumerate(per_tp):
            for total in totals or []:
                label += 1
                roi = _roi(tp, label, total)
                if roi.roi_id in rejected:
                    roi.status = "rejected"
                rois.append(roi)
                ids.setdefault(tp, []).append(roi.roi_id)
        tracks.append(Track(track_id=track_id, rois=ids))
    return tracks, rois


SERIES = {
    1: [[100.0], [50.0], [20.0], [10.0]],  # decreasing every time: monotonic
    2: [[100.0], [100.0], [150.0], [80.0]],  # stable, increasing, stable vs baseline; non-monotonic steps
    3: [None, [30.0], [40.0], None],  # new, new, absent: new-then-resolved
    4: [[50.0], None, None, [60.0]],  # disappearing twice (baseline present), stable: disappeared-then-returned
    5: [[40.0], [30.0, 20.0], [20.0, 10.0], [25.0]],  # split sums: 50 (+25 %), 30, 25: stable, stable, decreasing
    6: [None, None, [5.0], [7.0]],  # new at tp2, still present: new
}


def test_categories_and_deltas_against_baseline() -> None:
    tracks, rois = _patient(SERIES)
    responses, hetero = assess_response(tracks, rois, 4, AnalysisParameters())
    by_id = {r.track_id: r for r in responses}
    assert [by_id[1].categories[k] for k in (1, 2, 3)] == ["decreasing", "decreasing", "decreasing"]
    assert [by_id[2].categories[k] for k in (1, 2, 3)] == ["stable", "increasing", "stable"]
    assert [by_id[3].categories[k] for k in (1, 2, 3)] == ["new", "new", "absent"]
    assert [by_id[4].categories[k] for k in (1, 2, 3)] == ["disappearing", "disappearing", "stable"]
    assert [by_id[5].categories[k] for k in (1, 2, 3)] == ["stable", "stable", "decreasing"]
    assert [by_id[6].categories[k] for k in (1, 2, 3)] == ["absent", "new", "new"]
    assert by_id[5].suv_total == {0: 40.0, 1: 50.0, 2: 30.0, 3: 25.0}
    assert by_id[5].delta_suv_total_pct[1] == pytest.approx(25.0)
    assert by_id[4].delta_suv_total_pct[1] == -100.0 and by_id[3].delta_suv_total_pct[1] is None
    assert {k: r.pattern for k, r in by_id.items()} == {
        1: "monotonic", 2: "non-monotonic", 3: "new-then-resolved", 4: "disappeared-then-returned",
        5: "monotonic", 6: "new"}
    assert hetero == {1: True, 2: True, 3: True}


def test_heterogeneity_needs_both_directions() -> None:
    tracks, rois = _patient({1: [[100.0], [50.0]], 2: [[100.0], [110.0]]})
    assert assess_response(tracks, rois, 2, AnalysisParameters())[1] == {1: False}
    tracks, rois = _patient({1: [[100.0], [50.0]], 2: [None, [10.0]]})
    assert assess_response(tracks, rois, 2, AnalysisParameters())[1] == {1: True}


def test_previous_and_nadir_references() -> None:
    tracks, rois = _patient({1: [[100.0], [40.0], [60.0], [50.0]]})
    prev = assess_response(tracks, rois, 4, AnalysisParameters().updated({"response.reference": "previous"}))[0][0]
    assert [prev.categories[k] for k in (1, 2, 3)] == ["decreasing", "increasing", "stable"]
    assert prev.delta_suv_total_pct[2] == pytest.approx(50.0)
    nadir = assess_response(tracks, rois, 4, AnalysisParameters().updated({"response.reference": "nadir"}))[0][0]
    assert nadir.delta_suv_total_pct[3] == pytest.approx(25.0)  # nadir 40 at tp1
    assert [nadir.categories[k] for k in (1, 2, 3)] == ["decreasing", "increasing", "stable"]


def test_thresholds_are_parameters() -> None:
    tracks, rois = _patient({1: [[100.0], [80.0]]})
    assert assess_response(tracks, rois, 2, AnalysisParameters())[0][0].categories[1] == "stable"
    strict = AnalysisParameters().updated({"response.decrease_threshold_pct": -10.0, "response.increase_threshold_pct": 10.0})
    assert assess_response(tracks, rois, 2, strict)[0][0].categories[1] == "decreasing"


def test_rejected_rois_do_not_count() -> None:
    tracks, rois = _patient({1: [[100.0], [60.0, 60.0]], 2: [[10.0], None]}, rejected=frozenset({"tp1-L0003", "tp0-L0004"}))
    responses, _ = assess_response(tracks, rois, 2, AnalysisParameters())
    assert responses[0].suv_total[1] == 60.0 and responses[0].categories[1] == "decreasing"
    assert [r.track_id for r in responses] == [1]  # track 2's only ROI is rejected: no response
    cats = roi_categories(tracks, responses, rois)
    assert cats["tp0-L0001"] == "baseline" and cats["tp1-L0002"] == "decreasing" and cats["tp1-L0003"] == cats["tp0-L0004"] == ""


def test_single_timepoint_is_baseline_only() -> None:
    tracks, rois = _patient({1: [[10.0]]})
    responses, hetero = assess_response(tracks, rois, 1, AnalysisParameters())
    assert responses[0].pattern == "baseline-only" and responses[0].categories == {} and hetero == {}
    assert track_pattern({0: 1.0}, AnalysisParameters()) == "baseline-only"
