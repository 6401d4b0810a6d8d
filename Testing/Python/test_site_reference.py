"""A site's reference contours: RTSTRUCT and SEG made from known masks round-trip onto the PET grid, time points are
matched by UID with clear errors, an import is one undoable audited edit, and ``evaluate`` on a phantom gives the
figures of its truth comparison."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from reference_factory import box_contours, sphere_contours, write_rtstruct, write_seg
from typer.testing import CliRunner

from LesionResponseLib.analysis import load_analysis
from LesionResponseLib.analysis.truth import detection_figures, lesion_pair_agreement, truth_agreement
from LesionResponseLib.cli import app
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.dicomio.contours import (
    ContourError,
    rasterise_planar_contours,
    read_reference,
    resample_mask,
)
from LesionResponseLib.review import ReviewSession

SLAB = {"axial_extent_mm": 160}
ONE_ML_RADIUS_MM = (3 * 1000 / (4 * np.pi)) ** (1 / 3)  # 6.20 mm


def _grid(spacing=(4.0, 4.0, 4.0), size=(20, 20, 20), origin=(-40.0, -40.0, -40.0)) -> sitk.Image:
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing(spacing)
    grid.SetOrigin(origin)
    return grid


def _true_sphere(grid: sitk.Image, centre, radius: float, n: int = 16) -> np.ndarray:
    """PET voxels at least half inside the sphere, by n^3 points per voxel (independent of the code under test)."""
    spacing, origin = np.asarray(grid.GetSpacing()), np.asarray(grid.GetOrigin())
    offsets = ((np.arange(n) + 0.5) / n - 0.5)
    sub = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij"), -1).reshape(-1, 3) * spacing
    out = np.zeros(grid.GetSize()[::-1], bool)
    index = np.argwhere(np.ones(out.shape, bool))[:, ::-1]  # x, y, z
    points = origin + index * spacing  # identity direction
    near = np.linalg.norm(points - centre, axis=1) <= radius + spacing.max()
    for (x, y, z), point in zip(index[near], points[near], strict=True):
        out[z, y, x] = (np.linalg.norm(point + sub - centre, axis=1) <= radius).mean() >= 0.5
    return out


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def _through_rtstruct(tmp_path: Path, contours: list[np.ndarray], grid: sitk.Image) -> np.ndarray:
    """``contours`` written as an RTSTRUCT file and read back onto ``grid`` (the reader's whole path)."""
    path = write_rtstruct(tmp_path / f"rt{len(list(tmp_path.iterdir()))}.dcm", {"lesion": contours},
                          frame_uid="1.2.3.1", series_uid="1.2.3.2", study_uid="1.2.3.3")
    found = read_reference([path], [], lambda k: grid, timepoint=0)
    assert [s.name for s in found.structures] == ["lesion"]
    return sitk.GetArrayFromImage(found.structures[0].mask) > 0


def test_rtstruct_sphere_and_box_round_trip_onto_the_pet_grid(tmp_path):
    grid = _grid()
    centre = np.asarray(grid.TransformIndexToPhysicalPoint((10, 10, 10)), float)  # on a PET voxel centre
    planes = np.arange(-40.0, 40.0, 2.0) + 1.0  # contours drawn on 2 mm CT slices
    truth = _true_sphere(grid, centre, ONE_ML_RADIUS_MM)
    assert _dice(_through_rtstruct(tmp_path, sphere_contours(centre, ONE_ML_RADIUS_MM, planes), grid), truth) >= 0.95
    # anywhere on the grid a planar-contour sphere stays close: voxels covered ~1/2 may flip either way
    rng = np.random.default_rng(3)
    dices = []
    for _ in range(10):
        moved = centre + rng.uniform(-2.0, 2.0, 3)
        drawn = rasterise_planar_contours(sphere_contours(moved, ONE_ML_RADIUS_MM, planes + rng.uniform(0, 2)), grid)
        dices.append(_dice(sitk.GetArrayFromImage(drawn) > 0, _true_sphere(grid, moved, ONE_ML_RADIUS_MM)))
    assert np.median(dices) >= 0.95 and min(dices) >= 0.85, dices
    # a box on voxel boundaries, contoured on every CT slice: exactly its voxels
    box = np.zeros(grid.GetSize()[::-1], bool)
    box[6:9, 4:12, 5:10] = True
    low = np.asarray(grid.TransformIndexToPhysicalPoint((5, 4, 6))) - 2.0
    high = np.asarray(grid.TransformIndexToPhysicalPoint((9, 11, 8))) + 2.0
    assert np.array_equal(_through_rtstruct(tmp_path, box_contours(low, high, planes), grid), box)
    # a hole drawn as an inner contour (even-odd rule) is not part of the structure
    ring = rasterise_planar_contours(box_contours(low, high, planes) + box_contours(low + 4, high - 4, planes), grid)
    inner = sitk.GetArrayFromImage(ring) > 0
    assert inner[7, 5:11, 6:9].sum() == 0 and inner.sum() == box.sum() - 6 * 3  # the hole: one slice, 6 x 3 voxels


def test_a_mask_on_a_finer_grid_round_trips_onto_the_pet_grid():
    grid, fine = _grid(), _grid((1.0, 1.0, 1.0), (80, 80, 80))
    centre = np.asarray(grid.TransformIndexToPhysicalPoint((10, 10, 10)), float)
    points = np.stack(np.meshgrid(*[np.arange(80)] * 3, indexing="ij"), -1)[..., ::-1] - 40.0  # x, y, z mm
    sphere = sitk.GetImageFromArray((np.linalg.norm(points - centre, axis=-1) <= ONE_ML_RADIUS_MM).astype(np.uint8))
    sphere.CopyInformation(fine)
    assert _dice(sitk.GetArrayFromImage(resample_mask(sphere, grid)) > 0,
                 _true_sphere(grid, centre, ONE_ML_RADIUS_MM)) >= 0.95


@pytest.fixture(scope="module")
def truth_analysis(make_phantom, build_once, tmp_path_factory):
    """(phantom, analysis folder): the phantom's true masks as ROIs (identity registration, no search)."""
    from LesionResponseLib.workflow import run_pipeline

    phantom = make_phantom(seed=2, timepoints=2, **SLAB)
    params = AnalysisParameters().updated({"registration.method": "identity", "prior_search.enabled": False})
    built = build_once("site_truth_analysis_s2",
                       lambda folder: run_pipeline(phantom / "dicom", folder / "out", params,
                                                   labels_dir=phantom / "truth"))
    out = tmp_path_factory.mktemp("site") / "out"
    shutil.copytree(built / "out", out)
    return phantom, out


def _pet_files(phantom: Path, k: int) -> list[Path]:
    analysis = json.loads((phantom / "truth.json").read_text())
    uid = analysis["timepoints"][k]["pet_series_instance_uid"]
    return [p for p in (phantom / "dicom").rglob("*") if p.is_file() and
            pydicom.dcmread(p, stop_before_pixels=True).get("SeriesInstanceUID") == uid]


def _suv_of(out: Path):
    return lambda k: sitk.ReadImage(str(out / "suv" / f"tp{k}.nii.gz"))


def test_seg_and_rtstruct_go_to_their_time_point_and_unknown_ones_are_refused(truth_analysis, tmp_path):
    phantom, out = truth_analysis
    analysis = load_analysis(out)
    tp1 = analysis.timepoints[1]
    true = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom / "truth" / "tp1_lesions.nii.gz")))
    lesion = int(np.bincount(true[true > 0]).argmax())  # the largest lesion at tp1
    seg = write_seg(tmp_path / "seg.dcm", _pet_files(phantom, 1), {"met A": true == lesion})
    pet = sitk.ReadImage(str(out / "suv" / "tp1.nii.gz"))
    centre = np.asarray(pet.TransformContinuousIndexToPhysicalPoint(
        tuple(float(c) for c in np.argwhere(true == lesion).mean(0)[::-1])))
    planes = centre[2] + np.arange(-40.0, 40.0, 2.0) + 1.0  # 2 mm CT slices
    rt = write_rtstruct(tmp_path / "rt.dcm", {"met B": sphere_contours(centre, 9.0, planes),
                                              "Body": sphere_contours(centre, 30.0, planes)},
                        frame_uid=tp1.frame_of_reference_uid, series_uid=tp1.ct_series_instance_uid,
                        study_uid=tp1.study_instance_uid, kinds={"Body": "EXTERNAL"})
    found = read_reference([seg, rt], analysis.timepoints, _suv_of(out))
    assert [(s.name, s.timepoint) for s in found.structures] == [("met A", 1), ("met B", 1)]
    assert found.covered == {1}
    assert found.skipped == [{"file": str(rt), "name": "Body", "reason": "RT ROI Interpreted Type EXTERNAL"}]
    # the SEG was made on the PET frames: exactly the true mask
    assert np.array_equal(sitk.GetArrayFromImage(found.structures[0].mask) > 0, true == lesion)
    stranger = write_rtstruct(tmp_path / "other.dcm", {"x": sphere_contours(centre, 9.0, planes)},
                              frame_uid="1.2.3.4", series_uid="1.2.3.5", study_uid="1.2.3.6")
    with pytest.raises(ContourError, match=r"other\.dcm: it references no time point.*1\.2\.3\.5.*--timepoint"):
        read_reference([stranger], analysis.timepoints, _suv_of(out))
    assert read_reference([stranger], analysis.timepoints, _suv_of(out), timepoint=0).structures[0].timepoint == 0
    shutil.copy(phantom / "truth" / "tp0_lesions.nii.gz", tmp_path / "lesions.nii.gz")
    with pytest.raises(ContourError, match=r"lesions\.nii\.gz: a label map carries no UIDs.*--timepoint"):
        read_reference([tmp_path / "lesions.nii.gz"], analysis.timepoints, _suv_of(out))


def _snapshot(out: Path) -> dict[str, bytes]:
    names = ["analysis.json", "rois.csv", "tracks.csv"] + [f"labels/{p.name}" for p in sorted((out / "labels").glob("*"))]
    return {name: (out / name).read_bytes() for name in names}


def test_import_is_one_undoable_audited_edit(truth_analysis, tmp_path):
    phantom, base = truth_analysis
    out = tmp_path / "out"
    shutil.copytree(base, out)
    before = _snapshot(out)
    analysis = load_analysis(out)
    pet = sitk.ReadImage(str(out / "suv" / "tp0.nii.gz"))
    true = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom / "truth" / "tp0_lesions.nii.gz")))
    kept = int(np.bincount(true[true > 0]).argmax())
    # tp0: the reference redraws one lesion (its true mask) and marks a place no ROI covers; tp1: the same name
    (tmp_path / "ref").mkdir()
    labels = np.where(true == kept, 1, 0).astype(np.uint16)
    free = np.argwhere(np.all([sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labels" / f"tp{k}.nii.gz"))) == 0
                               for k in (0, 1)], axis=0))
    z, y, x = free[len(free) // 2]
    labels[z - 1:z + 1, y - 1:y + 1, x - 1:x + 1] = 2
    for k in (0, 1):
        image = sitk.GetImageFromArray(labels)
        image.CopyInformation(pet)
        sitk.WriteImage(image, str(tmp_path / "ref" / f"tp{k}_reference.nii.gz"))
    result = CliRunner().invoke(app, ["review", str(out), "import-rois", str(tmp_path / "ref"), "--user", "erin"])
    assert result.exit_code == 0, result.output
    assert "imported 'label 1' at time point 0" in result.output
    after = load_analysis(out)
    replaced = next(r for r in after.rois if r.timepoint == 0 and r.label == kept)
    assert replaced.source == "reader" and replaced.roi_id == f"tp0-L{kept:04d}"  # the ROI it overlapped, redrawn
    new = [r for r in after.rois if r.roi_id not in {x.roi_id for x in analysis.rois}]
    assert [(r.timepoint, r.source, r.n_voxels) for r in new] == [(0, "reader", 8), (1, "reader", 8)]
    assert after.track(next(t.track_id for t in after.tracks if new[0].roi_id in t.rois.get(0, []))).rois[1] == \
        [new[1].roi_id]  # one name at two time points: one track
    history = [json.loads(line) for line in (out / "review" / "audit.jsonl").read_text().splitlines()]
    assert [h["action"] for h in history] == ["apply"] and history[0]["type"] == "import_rois"
    assert history[0]["user"] == "erin" and len(history[0]["edit"]["rois"]) == 4
    undo = CliRunner().invoke(app, ["review", str(out), "undo"])
    assert undo.exit_code == 0, undo.output
    assert _snapshot(out) == before


def test_evaluate_on_a_phantom_gives_its_truth_figures(truth_analysis, tmp_path):
    phantom, base = truth_analysis
    out = tmp_path / "out"
    shutil.copytree(base, out)
    truth = json.loads((phantom / "truth.json").read_text())
    single = next(le["timepoints"]["1"]["labels"][0] for le in truth["lesions"]
                  if le["kind"] not in ("split", "merge") and le["timepoints"]["1"]["volume_ml"] > 1)
    with ReviewSession.open(out, "frank") as session:  # a false positive and a miss, so the figures are not trivial
        session.reject(f"tp1-L{single:04d}")
        grown = sitk.GetImageFromArray(np.zeros(sitk.GetArrayViewFromImage(session.state.labels[0]).shape, np.uint8))
        grown.CopyInformation(session.state.labels[0])
        free = np.argwhere(session.state.label_array(0) == 0)[5000]
        grown[tuple(int(c) for c in free[::-1])] = 1
        session.add_roi(0, grown)
    result = CliRunner().invoke(app, ["evaluate", str(out), "--reference", str(phantom), "--no-pdf"])
    assert result.exit_code == 0, result.output
    figures = json.loads((out / "evaluation" / "evaluation.json").read_text())
    analysis = load_analysis(out)
    tracks, pairs = truth_agreement(analysis, out, phantom), lesion_pair_agreement(analysis, out, phantom)
    expected = json.loads(json.dumps({k: v for k, v in tracks.items() if k != "heterogeneous_truth"}))
    assert figures["truth_agreement"] == expected
    for key in ("agreement_all", "agreement_large", "decreasing_recall", "detection_follow_up", "detection_first",
                "false_positives", "false_positive_rois"):
        assert figures["lesion_pair_agreement"][key] == pairs[key]
    d = figures["detection"]
    assert d["n_reference"] == pairs["n_first"] + pairs["n_follow_up"]  # two code paths, one count
    assert d["n_detected"] == round(pairs["detection_first"] * pairs["n_first"]
                                    + pairs["detection_follow_up"] * pairs["n_follow_up"])
    assert d["n_rois"] - d["n_true_positive_rois"] == len(pairs["false_positive_rois"]) == 1
    assert [(r["kind"], r["timepoint"]) for r in figures["disagreements"]] == [("missed", 1), ("false positive", 0)]
    assert (out / "evaluation" / "evaluation.html").stat().st_size > 10_000
    # the truth masks as a site's label-map reference: the same detection, measured on the PET instead of true SUVs
    labels = tmp_path / "labels"
    labels.mkdir()
    for k in (0, 1):
        shutil.copy(phantom / "truth" / f"tp{k}_lesions.nii.gz", labels / f"tp{k}_lesions.nii.gz")
    again = CliRunner().invoke(app, ["evaluate", str(out), "--reference", str(labels), "--no-pdf",
                                     "-o", str(tmp_path / "contours")])
    assert again.exit_code == 0, again.output
    site = json.loads((tmp_path / "contours" / "evaluation.json").read_text())
    assert site["reference"]["kind"] == "reference contours"
    for key in ("n_reference", "n_detected", "n_rois", "n_true_positive_rois", "f1"):
        assert site["detection"][key] == d[key]
    assert site["categories"]["available"] and site["contours"]["dice_median"] == 1.0


def test_detection_figures_of_the_truth_masks_are_perfect(truth_analysis):
    phantom, out = truth_analysis
    d = detection_figures(load_analysis(out), out, phantom)
    assert d["sensitivity"] == 1.0 and d["precision"] == 1.0 and d["false_positives_per_scan"] == 0.0
    assert all(m["dice"] == 1.0 for m in d["matched"])
