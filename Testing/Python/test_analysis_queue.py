"""The review queue (analysis.queue) on hand-made analyses whose weak spots are known: each feature, the reasons
a reader is shown, the order, and the curve helper of the benchmark (analysis.truth.queue_capture)."""

from __future__ import annotations

import pytest

from LesionResponseLib.analysis.queue import (
    FEATURES,
    MODEL,
    REASONS,
    review_queue,
    score_track,
    track_features,
)
from LesionResponseLib.analysis.response import assess_response
from LesionResponseLib.analysis.truth import queue_capture
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.datamodel import Analysis, LesionROI, Link, SearchRecord, TimePointInfo, Track

EQUAL = {"intercept": 0.0, "weights": dict.fromkeys(FEATURES, 1.0), "means": dict.fromkeys(FEATURES, 0.0),
         "sds": dict.fromkeys(FEATURES, 1.0)}


def _tp(k: int) -> TimePointInfo:
    return TimePointInfo(index=k, patient_id="Q", study_date=f"2025010{k + 1}", scan_datetime="",
                         study_instance_uid=f"1.{k}", pet_series_instance_uid=f"2.{k}", ct_series_instance_uid=None,
                         frame_of_reference_uid=None, suv_factor=1e-4, suv_method="BQML/START")


def _roi(tp: int, label: int, total: float, *, sd: float = 1.0, volume: float = 5.0, source: str = "model",
         background: float = 1.0, edge: bool = False) -> LesionROI:
    return LesionROI(roi_id=f"tp{tp}-L{label:04d}", timepoint=tp, label=label, centroid_mm=(0.0, 0.0, 0.0),
                     volume_ml=volume, suv_max=12.0, suv_mean=total / volume, suv_peak=10.0, suv_total=total,
                     suv_total_pvc=total, suv_total_sd=sd, suv_total_pvc_sd=sd, source=source,  # type: ignore[arg-type]
                     background_suv=background, at_fov_edge=edge)


def _analysis() -> Analysis:
    """Track 1: three big, sure, well-linked ROIs. Track 2: a small lesion whose follow-up ROI the prior-guided
    search found, with a noisy measure (indeterminate), next to hot uptake, linked with 10 % overlap, absent at
    T1. Track 3: one ROI at the edge of the field of view, new at T2."""
    rois = [_roi(0, 1, 100.0), _roi(1, 1, 102.0), _roi(2, 1, 98.0),
            _roi(0, 2, 10.0, sd=3.0, volume=0.2, background=8.0), _roi(2, 2, 9.0, sd=3.0, volume=0.2,
                                                                          source="prior-guided", background=8.0),
            _roi(2, 3, 20.0, edge=True)]
    links = [Link("tp0-L0001", "tp1-L0001", overlap=0.9), Link("tp1-L0001", "tp2-L0001", overlap=0.85),
             Link("tp0-L0002", "tp2-L0002", overlap=0.1)]
    tracks = [Track(1, {0: ["tp0-L0001"], 1: ["tp1-L0001"], 2: ["tp2-L0001"]}),
              Track(2, {0: ["tp0-L0002"], 2: ["tp2-L0002"]}), Track(3, {2: ["tp2-L0003"]})]
    params = AnalysisParameters()
    responses, heterogeneous = assess_response(tracks, rois, 3, params)
    return Analysis("Q", [_tp(k) for k in range(3)], rois, links=links, tracks=tracks, responses=responses,
                    heterogeneous=heterogeneous, parameters=params)


def test_features_name_the_weak_spots_of_each_track() -> None:
    analysis = _analysis()
    sure, _ = track_features(analysis, analysis.tracks[0])
    weak, details = track_features(analysis, analysis.tracks[1])
    edge, _ = track_features(analysis, analysis.tracks[2])
    assert sure["indeterminate"] == 0 and sure["prior_guided"] == 0 and sure["gap"] == 0
    assert sure["weak_link"] == pytest.approx(0.15) and sure["small"] == 0.0  # 5 mL: not small
    assert weak["indeterminate"] == 1 and details["indeterminate"] == "T2"  # 9 ± 3 against 10 ± 3
    assert weak["prior_guided"] == 0.5 and details["prior_guided"] == "T2"
    assert weak["gap"] == 1 and details["gap"] == "absent at T1" and weak["disappearing"] == 1
    assert weak["weak_link"] == pytest.approx(0.9) and "10 %" in details["weak_link"]
    assert weak["hot_surroundings"] == pytest.approx(8.0 / 45.0)  # background SUV 8 around SUVmean 9 / 0.2 mL
    assert weak["small"] == pytest.approx(0.699, abs=1e-3)  # -log10(0.2 mL)
    assert edge["fov_edge"] == 1 and edge["new"] == 1 and edge["single"] == 1
    assert weak["near_limit"] == 0.0
    # a search from T0 at T1 that found nothing: its filtered peak 3/4 of the way from the background to the limit
    analysis.prior_searches.append(SearchRecord("forward", 1, 0, ["tp0-L0002"], None, limit_suv=5.0,
                                                peak_filtered_suv=4.0, background_suv=1.0))
    near, near_details = track_features(analysis, analysis.tracks[1])
    assert near["near_limit"] == pytest.approx(0.75) and near_details["near_limit"] == "T1, 75 % of the way"


def test_the_queue_puts_the_weak_track_first_with_its_reasons_and_reviewed_tracks_last() -> None:
    analysis = _analysis()
    queue = review_queue(analysis, EQUAL)
    assert [item.track_id for item in queue][-1] == 1  # the sure track is the least likely error
    weak = next(item for item in queue if item.track_id == 2)
    assert REASONS["prior_guided"].format(detail="T2") in weak.reasons
    assert REASONS["indeterminate"].format(detail="T2") in weak.reasons
    assert weak.score > next(item for item in queue if item.track_id == 1).score
    analysis.reviewed_tracks = [queue[0].track_id]
    again = review_queue(analysis, EQUAL)
    assert again[-1].track_id == queue[0].track_id and again[-1].reviewed
    assert [i.track_id for i in again[:-1]] == [i.track_id for i in queue[1:]]


def test_the_shipped_model_only_raises_scores() -> None:
    assert set(MODEL["weights"]) == set(FEATURES) and all(w >= 0 for w in MODEL["weights"].values())
    assert all(MODEL["sds"][name] > 0 for name in FEATURES)
    zero = dict.fromkeys(FEATURES, 0.0)
    for name in FEATURES:
        assert score_track({**zero, name: 1.0}) >= score_track(zero)


def test_queue_capture_counts_the_wrong_tracks_in_the_top_of_the_queue() -> None:
    scores = {1: 0.9, 2: 0.8, 3: 0.1, 4: 0.7, 5: 0.2, 6: 0.05, 7: 0.3, 8: 0.4, 9: 0.6, 10: 0.5}
    figures = queue_capture(scores, wrong={1, 3, 4}, fractions=(0.2, 0.5))
    assert figures["tracks"] == 10 and figures["wrong"] == 3
    assert figures["curve"][0] == {"fraction": 0.2, "tracks": 2, "captured": pytest.approx(1 / 3), "ceiling": pytest.approx(2 / 3)}
    assert figures["curve"][1]["captured"] == pytest.approx(2 / 3) and figures["curve"][1]["ceiling"] == 1.0
