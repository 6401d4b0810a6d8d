"""build_tracks: connected components of links, singletons, rejected ROIs, stable ids."""

from __future__ import annotations

import pytest

from LesionResponseLib.datamodel import LesionROI, Link, Track, roi_id_for
from LesionResponseLib.tracking import TrackingError, build_tracks


def roi(tp: int, label: int, status: str = "accepted") -> LesionROI:
    return LesionROI(roi_id=roi_id_for(tp, label), timepoint=tp, label=label, centroid_mm=(0.0, 0.0, 0.0),
                     volume_ml=1.0, suv_max=10.0, suv_mean=5.0, suv_peak=8.0, suv_total=5.0, status=status)


def link(a: tuple[int, int], b: tuple[int, int], kind: str = "one-to-one") -> Link:
    return Link(roi_a=roi_id_for(*a), roi_b=roi_id_for(*b), kind=kind)


def as_sets(tracks: list[Track]) -> dict[int, frozenset[str]]:
    return {t.track_id: frozenset(r for ids in t.rois.values() for r in ids) for t in tracks}


def test_components_singletons_split_and_skip() -> None:
    rois = [roi(0, 1), roi(0, 2), roi(0, 3), roi(1, 1), roi(1, 2), roi(1, 5), roi(2, 1), roi(2, 4)]
    links = [
        link((0, 1), (1, 1)), link((1, 1), (2, 1)),  # a lesion seen three times
        link((0, 2), (1, 2), "split"), link((0, 2), (1, 5), "split"),  # a split at tp1
        link((0, 3), (2, 4)),  # disappears at tp1 and returns at tp2
    ]
    tracks = build_tracks(rois, links)
    assert [t.track_id for t in tracks] == [1, 2, 3]
    assert tracks[0].rois == {0: ["tp0-L0001"], 1: ["tp1-L0001"], 2: ["tp2-L0001"]}
    assert tracks[1].rois == {0: ["tp0-L0002"], 1: ["tp1-L0002", "tp1-L0005"]}
    assert tracks[2].rois == {0: ["tp0-L0003"], 2: ["tp2-L0004"]}
    assert (tracks[2].first_timepoint, tracks[2].last_timepoint) == (0, 2)
    every = [r for t in tracks for ids in t.rois.values() for r in ids]
    assert sorted(every) == sorted(r.roi_id for r in rois) and len(every) == len(set(every))


def test_unlinked_roi_is_own_track_and_a_rejected_middle_roi_leaves_a_gap() -> None:
    rois = [roi(0, 1), roi(1, 1, status="rejected"), roi(2, 1), roi(1, 7)]
    tracks = build_tracks(rois, [link((0, 1), (1, 1)), link((1, 1), (2, 1))])
    # the rejected ROI is in no track, but the lesion before and after it stays one track; tp1-L7 stands alone
    assert as_sets(tracks) == {1: {"tp0-L0001", "tp2-L0001"}, 2: {"tp1-L0007"}}
    assert tracks[0].rois == {0: ["tp0-L0001"], 2: ["tp2-L0001"]}


def test_rejected_rois_bridge_only_across_time_points() -> None:
    # a chain of two rejected ROIs still bridges; two ROIs of one time point whose only common ROI was rejected
    # (a split from a ROI that was not a lesion) stay two tracks
    rois = [roi(0, 1), roi(1, 1, status="rejected"), roi(2, 1, status="rejected"), roi(3, 1),
            roi(0, 5, status="rejected"), roi(1, 5), roi(1, 6)]
    links = [link((0, 1), (1, 1)), link((1, 1), (2, 1)), link((2, 1), (3, 1)),
             link((0, 5), (1, 5), "split"), link((0, 5), (1, 6), "split")]
    assert as_sets(build_tracks(rois, links)) == {1: {"tp0-L0001", "tp3-L0001"}, 2: {"tp1-L0005"},
                                                  3: {"tp1-L0006"}}


def test_unknown_roi_in_link_is_an_error_naming_it() -> None:
    with pytest.raises(TrackingError, match="tp1-L0009"):
        build_tracks([roi(0, 1)], [link((0, 1), (1, 9))])


def test_stable_ids_after_unlink_keep_majority_and_fresh_ids_above_max() -> None:
    rois = [roi(0, 1), roi(1, 1), roi(2, 1), roi(3, 1), roi(0, 2), roi(1, 2)]
    before = build_tracks(rois, [link((0, 1), (1, 1)), link((1, 1), (2, 1)), link((2, 1), (3, 1)),
                                 link((0, 2), (1, 2))])
    relabelled = [Track(track_id=10 * t.track_id, rois=t.rois) for t in before]  # ids 10, 20
    # reader cuts the first track between tp0 and tp1: the 3-ROI part keeps 10, the 1-ROI part is new
    after = build_tracks(rois, [link((1, 1), (2, 1)), link((2, 1), (3, 1)), link((0, 2), (1, 2))],
                         previous=relabelled)
    assert as_sets(after) == {10: {"tp1-L0001", "tp2-L0001", "tp3-L0001"}, 20: {"tp0-L0002", "tp1-L0002"},
                              21: {"tp0-L0001"}}
    # min_new_id: an id used once and deleted since is never reused
    again = build_tracks(rois, [link((1, 1), (2, 1)), link((2, 1), (3, 1)), link((0, 2), (1, 2))],
                         previous=relabelled, min_new_id=50)
    assert as_sets(again)[50] == {"tp0-L0001"}


def test_merge_of_two_tracks_keeps_larger_id_owner_and_tie_breaks_to_lower_id() -> None:
    rois = [roi(0, 1), roi(1, 1), roi(2, 1), roi(0, 2), roi(1, 2)]
    previous = [Track(7, {0: ["tp0-L0001"], 1: ["tp1-L0001"], 2: ["tp2-L0001"]}),
                Track(3, {0: ["tp0-L0002"], 1: ["tp1-L0002"]})]
    merged = build_tracks(rois, [link((0, 1), (1, 1)), link((1, 1), (2, 1)), link((0, 2), (1, 2)),
                                 link((1, 2), (2, 1), "merge")], previous=previous)
    assert as_sets(merged) == {7: frozenset(r.roi_id for r in rois)}
    tie = [Track(7, {0: ["tp0-L0001"]}), Track(3, {0: ["tp0-L0002"]})]
    joined = build_tracks(rois[:1] + rois[3:4], [link((0, 1), (0, 2))], previous=tie)
    assert list(as_sets(joined)) == [3]
    # deterministic whatever the input order
    shuffled = build_tracks(list(reversed(rois)), list(reversed([link((0, 1), (1, 1)), link((0, 2), (1, 2))])))
    assert as_sets(shuffled) == as_sets(build_tracks(rois, [link((0, 1), (1, 1)), link((0, 2), (1, 2))]))


def test_round_trip_through_dict() -> None:
    tracks = build_tracks([roi(0, 1), roi(1, 1)], [link((0, 1), (1, 1))])
    assert [Track.from_dict(t.to_dict()) for t in tracks] == tracks
