"""The synthetic patient's ground truth: schema, categories, masks, organ uptake, motion, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from LesionResponseLib.phantom import ORGAN_LABELS, load_truth, simulate_patient
from LesionResponseLib.phantom.motion import random_motion


@pytest.fixture(scope="module")
def full(make_phantom):
    return make_phantom(seed=1, timepoints=3)


def test_truth_schema_and_every_category(full):
    truth = load_truth(full)
    assert truth["n_timepoints"] == 3 and len(truth["timepoints"]) == 3
    for tp in truth["timepoints"]:
        for key in ("study_instance_uid", "pet_series_instance_uid", "ct_series_instance_uid", "suv_factor",
                    "lesion_labels", "organ_labels", "weight_kg", "injected_activity_bq", "uptake_time_s"):
            assert tp[key], key
        assert 50 * 60 <= tp["uptake_time_s"] <= 75 * 60
    assert 10 <= len(truth["lesions"]) <= 60
    categories = {c for le in truth["lesions"] for c in le["categories"].values()}
    assert {"new", "increasing", "stable", "decreasing", "disappearing", "absent"} <= categories
    kinds = {le["kind"] for le in truth["lesions"]}
    assert {"split", "merge", "non-monotonic", "new-then-resolved", "disappeared-then-returned"} <= kinds
    merged = [le for le in truth["lesions"] if le["kind"] == "merge"]
    assert len(merged) == 2 and merged[0]["track_id"] == merged[1]["track_id"]
    last = str(truth["n_timepoints"] - 1)
    assert merged[0]["timepoints"][last]["labels"] == merged[1]["timepoints"][last]["labels"]
    split = next(le for le in truth["lesions"] if le["kind"] == "split")
    assert len(split["timepoints"]["0"]["labels"]) == 1 and len(split["timepoints"]["1"]["labels"]) == 2
    assert set(truth["heterogeneous"]) == {"1", "2"}


def test_truth_masks_match_truth_json(full):
    truth = load_truth(full)
    for tp in truth["timepoints"]:
        labels = sitk.ReadImage(str(full / tp["lesion_labels"]))
        array = sitk.GetArrayViewFromImage(labels)
        voxel_ml = np.prod(labels.GetSpacing()) / 1000
        for le in truth["lesions"]:
            entry = le["timepoints"][str(tp["index"])]
            if not entry["present"]:
                continue
            mask = np.isin(array, entry["labels"])
            assert mask.any()
            if le["kind"] not in ("split", "merge") and entry["volume_ml"] >= 1.0:  # convex, own mask
                index = labels.TransformPhysicalPointToIndex(entry["centroid_mm"])
                assert array[index[2], index[1], index[0]] in entry["labels"]
                assert mask.sum() * voxel_ml == pytest.approx(entry["volume_ml"], rel=0.35)


def test_organs_have_dotatate_uptake(full):
    from LesionResponseLib.dicomio import find_timepoints, load_timepoint

    truth = load_truth(full)
    info = find_timepoints(full).timepoints[0]
    suv = sitk.GetArrayFromImage(load_timepoint(info, with_ct=False).pet_suv)
    organs = sitk.GetArrayFromImage(sitk.ReadImage(str(full / truth["timepoints"][0]["organ_labels"])))
    lesions = sitk.GetArrayFromImage(sitk.ReadImage(str(full / truth["timepoints"][0]["lesion_labels"])))
    mean = {name: float(np.median(suv[(organs == label) & (lesions == 0)])) for name, label in ORGAN_LABELS.items()
            if ((organs == label) & (lesions == 0)).sum() > 50}
    assert mean["spleen"] > mean["kidney"] > mean["liver"] > mean["blood"] > mean["muscle"] > mean["lung"]
    assert 10 <= mean["spleen"] <= 30 and 2.3 <= mean["liver"] <= 12.4 and mean["lung"] < 0.8


@pytest.mark.slow
def test_determinism_by_seed(full):
    again = simulate_patient(1, 3)
    stored = load_truth(full)
    assert json.loads(json.dumps(again.truth["lesions"])) == stored["lesions"]




def test_different_seeds_give_different_patients():
    a = simulate_patient(11, 1, with_ct=False, n_lesions=10, axial_extent_mm=120)
    b = simulate_patient(12, 1, with_ct=False, n_lesions=10, axial_extent_mm=120)
    assert a.truth["timepoints"][0]["suv_factor"] != b.truth["timepoints"][0]["suv_factor"]
    assert [le["timepoints"]["0"]["centroid_mm"] for le in a.truth["lesions"]] != \
        [le["timepoints"]["0"]["centroid_mm"] for le in b.truth["lesions"]]


def test_motion_inverse_and_grid_interpolation_are_accurate():
    motion = random_motion(np.random.default_rng(5))
    x = np.arange(-250, 250, 10.0, dtype=np.float32)
    z = -np.arange(200, 1000, 10.0, dtype=np.float32)
    exact = motion.to_anatomical(x[None, None, :], x[None, :, None], z[:, None, None])
    fast = motion.to_anatomical_grid(x, x, z)
    for e, f in zip(exact, fast, strict=True):
        assert np.abs(np.broadcast_to(e, f.shape) - f).max() < 0.1  # mm
    points = np.stack([np.broadcast_to(c, fast[0].shape).ravel() for c in exact], axis=1)[::97]
    back = motion.to_scanner(points)
    grid = np.stack(np.meshgrid(x, x, z, indexing="xy"), axis=-1)  # (y, x, z, 3)
    grid = np.moveaxis(grid, 2, 0).reshape(-1, 3)[::97]
    assert np.abs(back - grid).max() < 0.05  # mm: forward(inverse(p)) = p


def test_split_neighbours_place_a_stable_lesion_at_each_distance_clear_of_the_split():
    """The split_neighbours option (issue 32's benchmark patients): per distance one more splitting liver lesion
    and a neighbour present at every scan, its centre that far from the splitting lesion's, at least one PSF FWHM
    from it and its pieces; without the option a seed draws the lesions it always did."""
    from LesionResponseLib.phantom.anatomy import BodyParameters
    from LesionResponseLib.phantom.lesions import SPLIT_NEIGHBOUR_MIN_GAP_MM, LesionOptions, make_lesions

    body = BodyParameters(height_m=1.75, weight_kg=75.0)
    plain = make_lesions(4450, 4, body)
    assert [le.center for le in plain] == [le.center for le in make_lesions(4450, 4, body, options=LesionOptions())]
    lesions = make_lesions(4450, 4, body, options=LesionOptions(split_neighbours=(30.0, 40.0)))
    by_id = {le.lesion_id: le for le in lesions}
    pairs = [(by_id[le.neighbour_of], le) for le in lesions if le.neighbour_of is not None]
    assert [round(float(np.linalg.norm(np.subtract(n.center, s.center))), 6) for s, n in pairs] == [30.0, 40.0]
    for split, neighbour in pairs:
        assert split.kind == "split" and split.split_from == 1 and neighbour.kind == "stable"
        assert all(v > 0 for v in neighbour.relative)  # present at every scan
        for k in range(1, 4):
            for piece in split.blobs(k):
                gap = np.linalg.norm(np.subtract(neighbour.center, piece.center)) - max(piece.radii) \
                    - max(neighbour.radii) * max(neighbour.relative) ** 0.2
                assert gap >= SPLIT_NEIGHBOUR_MIN_GAP_MM - 1e-6
