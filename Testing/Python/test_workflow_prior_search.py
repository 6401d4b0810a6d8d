"""The prior-guided search in the analyze pipeline, on the small phantom (seed 2, 2 time points, 160 mm slab).

The phantom's true lesion masks stand in for the segmentation, with lesions removed where a single-scan
segmentation would have missed them: the pipeline must find them again at their known location, link them
into their track, mark them ``prior-guided``, and leave lesions that truly disappeared disappearing.
Truth (truth.json): lesion 8 (liver, 7 mL, SUVmax 30, stable), lesion 12 (lymph node, 1.0 -> 0.63 mL,
SUVmax 10 -> 7.4, decreasing), lesions 16 and 21 (present at baseline only: disappearing).
"""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from LesionResponseLib.analysis import load_analysis
from LesionResponseLib.analysis.response import track_ids_by_roi
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.workflow import run_pipeline

PARAMS = AnalysisParameters().updated({"registration.method": "auto"})

# one pytest-xdist worker (--dist loadgroup): the module's search analysis (`searched`) is built once, not per worker
pytestmark = pytest.mark.xdist_group("workflow_prior_search")


def _labels_without(phantom, folder, removed: dict[int, list[int]]):
    folder.mkdir()
    for k in (0, 1):
        image = sitk.ReadImage(str(phantom / "truth" / f"tp{k}_lesions.nii.gz"))
        array = sitk.GetArrayFromImage(image)
        array[np.isin(array, removed.get(k, []))] = 0
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(image)
        sitk.WriteImage(out, str(folder / f"tp{k}.nii.gz"))
    return folder


@pytest.fixture(scope="module")
def searched(make_phantom, tmp_path_factory):
    phantom = make_phantom(seed=2, timepoints=2, axial_extent_mm=160)
    work = tmp_path_factory.mktemp("prior")
    # lesion 8 missed at baseline (a "new" lesion at follow-up, visible in retrospect); lesion 12 missed at follow-up
    labels = _labels_without(phantom, work / "labels", {0: [8], 1: [12]})
    analysis, report = run_pipeline(phantom / "dicom", work / "out", PARAMS, labels_dir=labels)
    return phantom, work, analysis, report


def _track_of(analysis, roi_id: str) -> int:
    return track_ids_by_roi(analysis.tracks)[roi_id]


def _response(analysis, roi_id: str):
    tid = _track_of(analysis, roi_id)
    return next(r for r in analysis.responses if r.track_id == tid)


def _roi_at(analysis, timepoint: int, truth_array: np.ndarray, labels_dir, truth_label: int):
    """The accepted ROI of ``timepoint`` overlapping truth lesion ``truth_label`` most (None if none)."""
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(labels_dir / f"tp{timepoint}.nii.gz")))
    values, counts = np.unique(labels[(truth_array == truth_label) & (labels > 0)], return_counts=True)
    if values.size == 0:
        return None
    label = int(values[np.argmax(counts)])
    return next(r for r in analysis.rois if r.timepoint == timepoint and r.label == label)


@pytest.mark.slow
def test_lesion_missed_at_follow_up_is_found_and_stays_in_its_track(searched) -> None:
    phantom, work, analysis, report = searched
    assert report.stages["prior-guided search"] == "computed"
    truth1 = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom / "truth" / "tp1_lesions.nii.gz")))
    found = _roi_at(analysis, 1, truth1, work / "out" / "labels", 12)
    assert found is not None and found.source == "prior-guided"
    assert _track_of(analysis, found.roi_id) == _track_of(analysis, "tp0-L0012")
    assert _response(analysis, "tp0-L0012").categories[1] != "disappearing"  # it is still there
    assert 0.3 < found.volume_ml < 2.5 and found.suv_max < 10  # faint and small, as the truth says
    with open(work / "out" / "rois.csv", newline="") as handle:
        rows = {row["roi_id"]: row for row in csv.DictReader(handle)}
    assert rows[found.roi_id]["source"] == "prior-guided" and rows["tp0-L0012"]["source"] == "model"


@pytest.mark.slow
def test_new_lesion_visible_in_retrospect_is_linked_back(searched) -> None:
    phantom, work, analysis, _ = searched
    truth0 = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom / "truth" / "tp0_lesions.nii.gz")))
    earlier = _roi_at(analysis, 0, truth0, work / "out" / "labels", 8)
    assert earlier is not None and earlier.source == "prior-guided"
    assert _track_of(analysis, earlier.roi_id) == _track_of(analysis, "tp1-L0008")
    assert _response(analysis, "tp1-L0008").categories[1] == "stable"  # truth: stable, not new
    record = next(r for r in analysis.prior_searches if r.roi_id == earlier.roi_id)
    assert record.direction == "backward" and record.prior_rois == ["tp1-L0008"]


@pytest.mark.slow
def test_disappeared_lesions_get_no_roi_and_their_detection_limit(searched) -> None:
    phantom, work, analysis, _ = searched
    for label in (16, 21):
        response = _response(analysis, f"tp0-L{label:04d}")
        assert response.categories[1] == "disappearing"
        record = next(r for r in analysis.prior_searches if r.prior_rois == [f"tp0-L{label:04d}"])
        assert not record.found and record.roi_id is None
        assert record.limit_suv > record.background_suv > 0
    # no invented ROIs: every prior-guided ROI lies on a true lesion
    for roi in (r for r in analysis.rois if r.source == "prior-guided"):
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom / "truth" / f"tp{roi.timepoint}_lesions.nii.gz")))
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "out" / "labels" / f"tp{roi.timepoint}.nii.gz")))
        assert (truth[labels == roi.label] > 0).any(), roi
    assert load_analysis(work / "out").prior_searches == analysis.prior_searches


@pytest.mark.slow
def test_reader_edits_on_prior_guided_rois_survive_a_rerun(searched) -> None:
    from LesionResponseLib.review import ReviewSession

    phantom, work, analysis, _ = searched
    out = work / "rerun"
    shutil.copytree(work / "out", out)
    victim = next(r.roi_id for r in analysis.rois if r.source == "prior-guided")
    with ReviewSession.open(out, "reader") as session:
        session.reject(victim, reason="physiological")
    again, report = run_pipeline(phantom / "dicom", out, PARAMS, labels_dir=work / "labels")
    assert report.stages["prior-guided search"] == "reused" and report.review.applied == 1
    assert {r.roi_id for r in load_analysis(out).rois if r.status == "rejected"} == {victim}


@pytest.mark.slow
def test_lesion_pair_agreement_counts_every_true_pair(searched) -> None:
    """analysis.truth.lesion_pair_agreement (bench_analysis): all true lesion x follow-up pairs, detection by
    history, false positives by source. Here every lesion present at both time points has a ROI at the
    follow-up (truth masks + the two lesions the search found again) and no ROI lies off a true lesion."""
    import json

    from LesionResponseLib.analysis.truth import lesion_pair_agreement

    phantom, work, analysis, _ = searched
    truth = json.loads((phantom / "truth.json").read_text())
    figures = lesion_pair_agreement(analysis, work / "out", phantom)
    expected = [t for t in truth["tracks"].values() if t["categories"]["1"] != "absent"]
    assert figures["n_all"] == len(expected) and figures["detection_follow_up"] == 1.0
    assert figures["false_positives"]["per_scan"] == 0.0 and figures["false_positive_rois"] == []
    assert figures["n_decreasing"] == sum(t["categories"]["1"] == "decreasing" for t in expected)
    assert all(p["measured"] != "disappearing" for p in figures["pairs"] if p["truth"] != "disappearing")


@pytest.mark.slow
def test_model_probabilities_are_cached_and_are_the_searches_model_evidence(make_phantom, tmp_path) -> None:
    """With the shipped model, each time point's lesion probability is cached next to its label map (uint8 on
    the PET grid) and handed to the searches: every record says which evidence was consulted, and changing the
    model-evidence threshold re-runs the search alone."""
    phantom = make_phantom(seed=2, timepoints=2, axial_extent_mm=160)
    out = tmp_path / "out"
    analysis, report = run_pipeline(phantom / "dicom", out, PARAMS)
    cached = sorted((out / "cache").glob("seg-*-probability.nii.gz"))
    assert len(cached) == 2
    for path in cached:
        probability = sitk.ReadImage(str(path))
        assert probability.GetPixelID() == sitk.sitkUInt8
        suv = [sitk.ReadImage(str(out / "suv" / f"tp{k}.nii.gz")) for k in (0, 1)]
        assert any(probability.GetSize() == s.GetSize() and probability.GetOrigin() == s.GetOrigin() for s in suv)
        assert sitk.GetArrayViewFromImage(probability).max() > 127  # the model's lesions (p > 0.5) are in it
    assert analysis.prior_searches, "the small phantom has lesions the model does not see at every time point"
    for record in analysis.prior_searches:
        assert record.evidence in ("uptake", "model", "")
        assert (record.evidence == "") == (not record.found)
        if record.direction == "candidate":
            continue
        if not record.found and record.limit_suv == record.limit_suv:  # uptake test ran (not NaN)
            assert 0.0 <= record.model_probability < 0.2  # consulted, under the threshold
        else:
            assert record.model_probability is None or record.evidence == "model"
    again, rerun = run_pipeline(phantom / "dicom", out,
                                AnalysisParameters().updated({"registration.method": "auto", "prior_search.model_probability": 0.0}))
    assert rerun.stages["segmentation tp0"] == "reused" and rerun.stages["prior-guided search"] == "computed"
    assert all(r.model_probability is None and r.evidence != "model" for r in again.prior_searches)


def _two_scans(seed: int):
    """Two synthetic scans of a 0.9 mL lesion (SUV 5 + 4 over liver-like 5; the scenes of the prior-guided tests):
    PETs, true sphere masks, empty label maps, identity registration and the sphere's centre voxel (z, y, x)."""
    from test_segmentation_prior_guided import _scene

    pets, spheres = {}, {}
    for k in (0, 1):
        pets[k], _, spheres[k] = _scene(contrast=4.0, seed=seed + k)
    labels = {k: sitk.Image(pets[k].GetSize(), sitk.sitkUInt16) for k in (0, 1)}
    for k in (0, 1):
        labels[k].CopyInformation(pets[k])
    centre = tuple(int(c) for c in np.argwhere(spheres[0]).mean(axis=0).round())
    return pets, spheres, labels, {(0, 1): sitk.TranslationTransform(3, (0.0, 0.0, 0.0))}, centre


def test_model_candidates_become_rois_only_when_confirmed_at_an_adjacent_time_point() -> None:
    """Two scans of a 0.9 mL lesion (SUV 5 + 4 over liver-like 5; synthetic scenes of the prior-guided tests).
    The model's only output at the baseline was a component its ROI filters dropped (a candidate): the search
    finds the lesion at the follow-up, so both become prior-guided ROIs; a candidate on plain background is
    not confirmed and gives no ROI."""
    from LesionResponseLib.workflow.prior_search import search_tracks

    pets, spheres, labels, identity, centre = _two_scans(seed=10)
    candidates = np.zeros(spheres[0].shape, np.uint16)
    candidates[centre] = 1  # one voxel: under the 0.1 mL minimum ROI volume
    candidates[centre[0], centre[1], 4] = 2  # plain background 56 mm away
    arrays, records = search_tracks([], [], labels, pets, identity, PARAMS, candidates={0: candidates})
    assert [r.direction for r in records] == ["confirm", "candidate", "confirm"]
    assert records[0].found and records[1].roi_id == "tp0-L0001" and not records[2].found
    assert arrays[0][centre] == 1 and arrays[0][centre[0], centre[1], 4] == 0
    for k in (0, 1):  # both ROIs are contoured on the lesion by the search (not the one candidate voxel)
        assert (arrays[k][spheres[k]] > 0).mean() >= 0.5 and (arrays[k] > 0).sum() <= 4 * spheres[k].sum()


def _one_roi_at_baseline(pets, spheres):
    """Label maps (the baseline sphere as ROI 1, nothing at the follow-up), that ROI and its one-scan track."""
    from LesionResponseLib.datamodel import LesionROI, Track

    labels = {}
    for k in (0, 1):
        labels[k] = sitk.GetImageFromArray(spheres[0].astype(np.uint16) if k == 0 else
                                           np.zeros(spheres[0].shape, np.uint16))
        labels[k].CopyInformation(pets[k])
    roi = LesionROI(roi_id="tp0-L0001", timepoint=0, label=1, centroid_mm=(0.0, 0.0, 0.0), volume_ml=0.9,
                    suv_max=8.0, suv_mean=7.0, suv_peak=7.5, suv_total=6.3)
    return labels, roi, Track(track_id=1, rois={0: ["tp0-L0001"]})


def test_no_search_from_a_roi_in_the_cranial_cavity() -> None:
    """A one-off ROI on uptake inside the cranial cavity (the pituitary, which the model calls a lesion on the odd
    scan) is not followed: the search is recorded as not run and adds no ROI; the same scene outside the cavity
    is searched and found. Candidates there are not confirmed either."""
    from LesionResponseLib.workflow.prior_search import NOT_SEARCHED_INTRACRANIAL, search_tracks

    pets, spheres, empty, identity, centre = _two_scans(seed=20)
    labels, roi, track = _one_roi_at_baseline(pets, spheres)
    cavity = ndimage.binary_dilation(spheres[0], iterations=3)

    arrays, records = search_tracks([track], [roi], labels, pets, identity, PARAMS, cranial_of=lambda k: cavity)
    assert [(r.direction, r.found, r.roi_id, r.reason) for r in records] == \
        [("forward", False, None, NOT_SEARCHED_INTRACRANIAL)]
    assert not arrays[1].any()
    arrays, records = search_tracks([track], [roi], labels, pets, identity, PARAMS,
                                    cranial_of=lambda k: np.zeros_like(cavity))
    assert records[0].found and (arrays[1][spheres[1]] > 0).mean() >= 0.5
    candidates = np.zeros(spheres[0].shape, np.uint16)
    candidates[centre] = 1
    arrays, records = search_tracks([], [], empty, pets, identity, PARAMS, candidates={0: candidates},
                                    cranial_of=lambda k: cavity)
    assert [r.reason for r in records] == [NOT_SEARCHED_INTRACRANIAL] and not arrays[1].any()


def test_physiological_uptake_by_the_model_is_neither_searched_from_nor_kept() -> None:
    """The model's organ output (an adrenal the lesion head once called a lesion): no search starts from a ROI
    lying on it, and a find lying on it at the other scan is not kept; the same scene without it is searched
    and found. A ROI touching an organ (under half its voxels on it) is still followed."""
    from LesionResponseLib.workflow.prior_search import (
        NOT_KEPT_PHYSIOLOGICAL,
        NOT_SEARCHED_PHYSIOLOGICAL,
        search_tracks,
    )

    pets, spheres, _empty, identity, _centre = _two_scans(seed=21)
    labels, roi, track = _one_roi_at_baseline(pets, spheres)
    organ = ndimage.binary_dilation(spheres[0] | spheres[1], iterations=2).astype(np.uint8) * 230  # p = 0.9
    nothing = np.zeros_like(organ)

    def run(physiological):
        return search_tracks([track], [roi], labels, pets, identity, PARAMS, physiological=physiological)

    arrays, records = run({0: organ, 1: organ})
    assert [(r.found, r.roi_id, r.reason) for r in records] == [(False, None, NOT_SEARCHED_PHYSIOLOGICAL)]
    assert not arrays[1].any()
    arrays, records = run({0: nothing, 1: organ})
    assert [(r.found, r.roi_id, r.reason) for r in records] == [(False, None, NOT_KEPT_PHYSIOLOGICAL)]
    assert records[0].peak_filtered_suv > records[0].limit_suv  # the uptake was there: the organ rule said no
    assert not arrays[1].any()
    arrays, records = run({0: nothing, 1: nothing})
    assert records[0].found and (arrays[1][spheres[1]] > 0).mean() >= 0.5
    touching = np.zeros_like(organ)  # an organ beside the lesion: its edge covers some of the ROI's voxels
    voxels = np.argwhere(spheres[0])
    touching[tuple(voxels[: max(1, len(voxels) // 3)].T)] = 230
    from LesionResponseLib.segmentation.prior_guided import physiological_share
    assert 0 < physiological_share(spheres[0], touching) < 0.5
    arrays, records = run({0: touching, 1: nothing})
    assert records[0].found and (arrays[1][spheres[1]] > 0).mean() >= 0.5
    faint = (organ > 0).astype(np.uint8) * 115  # p = 0.45: an organ at the model's own calibrated 0.4, not at 0.5
    assert run({0: faint, 1: faint})[1][0].found
    _arrays, records = search_tracks([track], [roi], labels, pets, identity, PARAMS, physiological={0: faint, 1: faint},
                                     physiological_threshold=0.4)
    assert [(r.found, r.reason) for r in records] == [(False, NOT_SEARCHED_PHYSIOLOGICAL)]


def test_a_candidate_is_confirmed_only_where_the_model_sees_the_lesion_again() -> None:
    """Uptake at the adjacent time point confirms a candidate only with the model's evidence there: physiological
    uptake (an adrenal) is there on every scan, and the model's probability is what tells it from a lesion."""
    from test_segmentation_prior_guided import _probability

    from LesionResponseLib.workflow.prior_search import NOT_CONFIRMED_WITHOUT_MODEL, search_tracks

    pets, spheres, empty, identity, centre = _two_scans(seed=30)
    candidates = np.zeros(spheres[0].shape, np.uint16)
    candidates[centre] = 1
    unseen = {0: _probability(spheres[0], 0.6), 1: np.full(spheres[1].shape, 0.01, np.float32)}
    arrays, records = search_tracks([], [], empty, pets, identity, PARAMS, probabilities=unseen,
                                    candidates={0: candidates})
    assert len(records) == 1 and not records[0].found and records[0].roi_id is None
    assert records[0].reason.startswith(NOT_CONFIRMED_WITHOUT_MODEL) and records[0].model_probability < 0.02
    assert not arrays[0].any() and not arrays[1].any()
    seen = {0: unseen[0], 1: _probability(spheres[1], 0.3)}  # under the model's 0.5 threshold, over 0.2
    arrays, records = search_tracks([], [], empty, pets, identity, PARAMS, probabilities=seen,
                                    candidates={0: candidates})
    assert records[0].found and records[0].evidence == "uptake" and records[0].model_probability >= 0.2
    assert (arrays[1][spheres[1]] > 0).mean() >= 0.5 and (arrays[0][spheres[0]] > 0).any()


class _ScriptedSearcher:
    """Stands in for the pipeline's searcher: finds the lesion at the time points in ``visible`` only, and
    records which ROI each search started from."""

    def __init__(self, visible: set[int]) -> None:
        self.visible, self.calls = visible, []

    def search(self, prior_ids, prior_tp, tp, direction):
        self.calls.append((direction, prior_tp, tp, tuple(prior_ids)))
        return f"tp{tp}-found" if tp in self.visible else None


def test_backward_search_goes_on_past_a_time_point_where_nothing_is_found() -> None:
    """A lesion first seen at tp 4, below the limit at tp 3 but plain at tp 2 and 0: every earlier scan is
    searched, each from the earliest ROI after it (a find included), as the forward search treats a gap."""
    from LesionResponseLib.workflow.prior_search import _extend

    searcher = _ScriptedSearcher(visible={0, 2, 5})
    present = {4: ["tp4-L0001"]}
    _extend(searcher, present, 7)
    assert sorted(present) == [0, 2, 4, 5]
    assert [c for c in searcher.calls if c[0] == "backward"] == [
        ("backward", 4, 3, ("tp4-L0001",)), ("backward", 4, 2, ("tp4-L0001",)),
        ("backward", 2, 1, ("tp2-found",)), ("backward", 2, 0, ("tp2-found",))]
    assert [c for c in searcher.calls if c[0] == "forward"] == [
        ("forward", 4, 5, ("tp4-L0001",)), ("forward", 5, 6, ("tp5-found",))]
