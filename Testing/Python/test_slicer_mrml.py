"""The review's shared MRML layer (``LesionResponseReview.mrml``, used by the Slicer module and the web app) on a headless Slicer (``slicer-core``), checked against phantom truth.

The analysis folder is built from the phantom's ground truth (true lesion label maps as lesion-ROIs, true
tracks and categories), so every expected value here comes from the phantom, not from the code under test.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("slicer", reason="slicer-core not installed (pip install slicer-core vtk)")


import slicer_bootstrap  # noqa: E402

SEED, TIMEPOINTS = 1, 3

# one pytest-xdist worker (--dist loadgroup): the module's scenes (`loaded`, `pipeline_nodes`: an analyze run) are
# built, and Slicer imported, once, not per worker
pytestmark = pytest.mark.xdist_group("slicer_mrml")


def _truth_rois(truth: dict, phantom: Path) -> tuple[list, dict[int, dict[int, list[str]]]]:
    """Lesion-ROIs measured on the true label maps, and track id -> tp -> ROI ids."""
    import SimpleITK as sitk

    from LesionResponseLib.datamodel import LesionROI, roi_id_for

    rois, tracks = [], {}
    for tp in range(truth["n_timepoints"]):
        labels = sitk.ReadImage(str(phantom / "truth" / f"tp{tp}_lesions.nii.gz"))
        stats = sitk.LabelShapeStatisticsImageFilter()
        stats.Execute(labels)
        for lesion in truth["lesions"]:
            state = lesion["timepoints"].get(str(tp), {})
            for label in state.get("labels", []) if state.get("present") else []:
                if not stats.HasLabel(label):
                    continue
                roi = LesionROI(roi_id=roi_id_for(tp, label), timepoint=tp, label=label,
                                centroid_mm=tuple(stats.GetCentroid(label)),
                                volume_ml=stats.GetPhysicalSize(label) / 1000.0, suv_max=0.0, suv_mean=0.0,
                                suv_peak=0.0, suv_total=0.0, n_voxels=stats.GetNumberOfPixels(label))
                rois.append(roi)
                tracks.setdefault(lesion["track_id"], {}).setdefault(tp, []).append(roi.roi_id)
    return rois, tracks


def build_truth_analysis(phantom: Path, out: Path) -> dict:
    """An analysis output folder (analysis.json, rois.csv, tracks.csv, labels/) from phantom truth."""
    from LesionResponseLib.datamodel import Analysis, Link, Track, TrackResponse
    from LesionResponseLib.dicomio import find_timepoints

    truth = json.loads((phantom / "truth.json").read_text())
    rois, track_rois = _truth_rois(truth, phantom)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for tp in range(truth["n_timepoints"]):
        (out / "labels" / f"tp{tp}.nii.gz").write_bytes((phantom / "truth" / f"tp{tp}_lesions.nii.gz").read_bytes())
    track_of = {rid: t for t, tps in track_rois.items() for ids in tps.values() for rid in ids}
    categories = {les["track_id"]: {int(k): v for k, v in les.get("categories", {}).items()}
                  for les in truth["lesions"]}
    links = [Link(roi_a=a, roi_b=b, kind="one-to-one" if len(tps[i]) == len(tps[j]) == 1 else "split")
             for tps in track_rois.values() for i, j in zip(sorted(tps), sorted(tps)[1:], strict=False)
             for a in tps[i] for b in tps[j]]
    analysis = Analysis(
        patient_id=truth["patient_id"], timepoints=find_timepoints(phantom / "dicom").timepoints, rois=rois,
        links=links, tracks=[Track(track_id=t, rois=tps) for t, tps in sorted(track_rois.items())],
        responses=[TrackResponse(track_id=t, suv_total={}, categories=categories.get(t, {}),
                                 delta_suv_total_pct={}, pattern="monotonic") for t in sorted(track_rois)])
    (out / "analysis.json").write_text(json.dumps(analysis.to_dict()))

    def roi_category(roi) -> str:
        return "baseline" if roi.timepoint == 0 else categories[track_of[roi.roi_id]].get(roi.timepoint, "new")

    with (out / "rois.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["roi_id", "timepoint", "label", "track_id", "category", "status"])
        writer.writerows([r.roi_id, r.timepoint, r.label, track_of[r.roi_id], roi_category(r), r.status]
                         for r in rois)
    with (out / "tracks.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["track_id", "pattern"] + [f"category_t{k}" for k in range(1, truth["n_timepoints"])])
        writer.writerows([t, "monotonic"] + [categories[t].get(k, "") for k in range(1, truth["n_timepoints"])]
                         for t in sorted(track_rois))
    return truth


@pytest.fixture(scope="module")
def loaded(make_phantom, tmp_path_factory):
    """(truth, nodes, headless slicer): the truth analysis loaded into a fresh scene with its layout."""
    from LesionResponseReview import mrml as lrm

    phantom = make_phantom(seed=SEED, timepoints=TIMEPOINTS)
    out = tmp_path_factory.mktemp("analysis")
    truth = build_truth_analysis(phantom, out)
    headless = slicer_bootstrap.new_scene()
    nodes = lrm.load_analysis_into_scene(headless.scene, out)
    lrm.setup_timepoint_layout(nodes, headless.logics["layout"].GetLayoutNode())
    _save_suv(nodes, headless.scene)
    return truth, nodes, headless


def _save_suv(nodes, scene) -> None:
    """Write the loaded SUV volumes as ``suv/tp{k}.nii.gz`` (the review re-measures ROIs from them)."""
    (nodes.out_dir / "suv").mkdir(exist_ok=True)
    for tp, pet in nodes.pet.items():
        storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        storage.SetFileName(str(nodes.out_dir / "suv" / f"tp{tp}.nii.gz"))
        assert storage.WriteData(pet), f"could not write SUV of time point {tp}"
        scene.RemoveNode(storage)


def _single_label_lesions(truth: dict, tp: int) -> list[dict]:
    return [les for les in truth["lesions"]
            if les["timepoints"].get(str(tp), {}).get("present") and len(les["timepoints"][str(tp)]["labels"]) == 1
            and sum(1 for other in truth["lesions"] if other["track_id"] == les["track_id"]) == 1]


def test_lps_to_ras_flips_x_and_y_only():
    from LesionResponseReview import mrml as lrm

    assert lrm.lps_to_ras((10.0, -20.0, 30.0)) == (-10.0, 20.0, 30.0)
    assert lrm.ras_to_lps(lrm.lps_to_ras((1.5, 2.5, -3.5))) == (1.5, 2.5, -3.5)


def test_one_segment_per_truth_lesion_label_named_and_coloured(loaded):
    from LesionResponseReview import mrml as lrm

    truth, nodes, _ = loaded
    for tp in range(TIMEPOINTS):
        expected = {lab for les in truth["lesions"] if les["timepoints"].get(str(tp), {}).get("present")
                    for lab in les["timepoints"][str(tp)]["labels"]}
        labels = set(np.unique(nodes.label_arrays[tp]).tolist()) - {0}
        assert labels == expected, f"time point {tp}"
    lesion = _single_label_lesions(truth, 1)[0]
    label = lesion["timepoints"]["1"]["labels"][0]
    name, colour, alpha = lrm.roi_display(nodes, f"tp1-L{label:04d}")
    category = lesion["categories"]["1"]
    assert name == f"T{lesion['track_id']:03d} tp1 {category}"
    assert np.allclose(colour, lrm.CATEGORY_COLORS[category]) and alpha == 1.0


def test_track_table_has_one_row_per_truth_track(loaded):
    truth, nodes, _ = loaded
    table = nodes.table.GetTable()
    ids = [table.GetColumnByName("track_id").GetValue(i) for i in range(table.GetNumberOfRows())]
    assert sorted(ids) == sorted({les["track_id"] for les in truth["lesions"]})
    assert table.GetColumnByName("category_t1") is not None and table.GetColumnByName("rois") is not None


def test_volumes_are_loaded_in_suv_and_hu(loaded):
    import slicer

    truth, nodes, _ = loaded
    pet = slicer.util.arrayFromVolume(nodes.pet[0])
    ct = slicer.util.arrayFromVolume(nodes.ct[0])
    lesion = _single_label_lesions(truth, 0)[0]["timepoints"]["0"]
    assert 0.3 * lesion["suv_max"] < pet.max() < 3 * max(les["timepoints"]["0"]["suv_max"] for les in truth["lesions"]
                                                          if les["timepoints"].get("0", {}).get("present"))
    assert ct.min() < -500 and ct.max() > 100  # air and soft tissue/bone in HU


def test_layout_has_one_view_per_timepoint_with_fused_pet(loaded):
    import slicer
    from LesionResponseReview import mrml as lrm

    _, nodes, headless = loaded
    assert sorted(nodes.slice_nodes) == list(range(TIMEPOINTS))
    assert [nodes.slice_nodes[k].GetViewGroup() for k in range(TIMEPOINTS)] == list(range(TIMEPOINTS))
    composites = {c.GetLayoutName(): c for c in slicer.util.getNodesByClass("vtkMRMLSliceCompositeNode")}
    for tp, slice_node in nodes.slice_nodes.items():
        composite = composites[slice_node.GetLayoutName()]
        assert composite.GetBackgroundVolumeID() == nodes.ct[tp].GetID()
        assert composite.GetForegroundVolumeID() == nodes.pet[tp].GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(lrm.PET_OPACITY)
        assert composite.GetLabelVolumeID() == nodes.labels[tp].GetID()  # its own ROIs only, as outlines
        assert slice_node.GetUseLabelOutline()
        assert nodes.labels[tp].GetDisplayNode().GetColorNodeID() == nodes.colors[tp].GetID()


def _slice_centre(slice_node) -> np.ndarray:
    matrix = slice_node.GetSliceToRAS()
    return np.array([matrix.GetElement(i, 3) for i in range(3)])


def test_jump_to_track_centres_each_view_on_the_truth_centroid(loaded):
    from LesionResponseReview import mrml as lrm

    truth, nodes, _ = loaded
    checked = 0
    for lesion in _single_label_lesions(truth, 0)[:5]:
        lrm.jump_to_track(nodes, lesion["track_id"])
        for tp in range(TIMEPOINTS):
            state = lesion["timepoints"].get(str(tp), {})
            if state.get("present") and len(state["labels"]) == 1:
                expected = np.array(lrm.lps_to_ras(state["centroid_mm"]))
                # truth centroid is of the continuous lesion; the ROI centroid of its voxelised mask (2 mm PET
                # voxels) agrees within a voxel
                assert np.linalg.norm(_slice_centre(nodes.slice_nodes[tp]) - expected) < 2.0, (lesion, tp)
                checked += 1
    assert checked >= 5


def test_absent_timepoint_is_centred_through_the_registration(loaded, tmp_path):
    import SimpleITK as sitk
    from LesionResponseReview import mrml as lrm

    _, nodes, headless = loaded
    shift_lps = (12.0, -7.0, 5.0)  # tp0 point p corresponds to p + shift in tp2 (ITK fixed -> moving)
    path = tmp_path / "tp0_to_tp2.tfm"
    sitk.WriteTransform(sitk.TranslationTransform(3, shift_lps), str(path))
    storage = headless.scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    storage.SetFileName(str(path))
    transform = headless.scene.AddNewNodeByClass("vtkMRMLTransformNode")
    assert storage.ReadData(transform)
    saved = dict(nodes.transforms)
    nodes.transforms = {(0, 2): transform}
    try:
        point, registered = lrm.map_point_between_timepoints(nodes, (1.0, 2.0, 3.0), 0, 2)
        assert registered
        assert np.allclose(point, (1.0 - 12.0, 2.0 + 7.0, 3.0 + 5.0), atol=1e-6)  # shift in RAS = (-12, 7, 5)
        back, _ = lrm.map_point_between_timepoints(nodes, point, 2, 0)
        assert np.allclose(back, (1.0, 2.0, 3.0), atol=1e-6)
        # a track that disappeared at tp2: its tp2 view is centred on the registered tp0 centre
        gone = next(t for t in nodes.analysis.tracks if 0 in t.rois and 2 not in t.rois)
        centres = lrm.jump_to_track(nodes, gone.track_id)
        expected, _ = lrm.map_point_between_timepoints(nodes, centres[0], 0, 2)
        assert np.allclose(_slice_centre(nodes.slice_nodes[2]), expected, atol=1e-3)
    finally:
        nodes.transforms = saved


def test_view_linker_moves_the_other_views_to_the_registered_point(loaded, tmp_path):
    """Moving one view (scroll, pan: its centre changes) moves every other view to the registered image of that
    centre; ``quietly`` and ``enabled = False`` stop the following."""
    import SimpleITK as sitk
    from LesionResponseReview import mrml as lrm

    _, nodes, headless = loaded
    path = tmp_path / "tp0_to_tp1.tfm"
    sitk.WriteTransform(sitk.TranslationTransform(3, (10.0, -4.0, 6.0)), str(path))  # LPS shift
    storage = headless.scene.AddNewNodeByClass("vtkMRMLTransformStorageNode")
    storage.SetFileName(str(path))
    transform = headless.scene.AddNewNodeByClass("vtkMRMLTransformNode")
    assert storage.ReadData(transform)
    saved, nodes.transforms = dict(nodes.transforms), {(0, 1): transform}
    linker = lrm.ViewLinker(nodes)
    try:
        nodes.slice_nodes[0].JumpSliceByCentering(20.0, 30.0, 40.0)
        assert np.allclose(_slice_centre(nodes.slice_nodes[1]), (10.0, 34.0, 46.0), atol=1e-3)  # RAS = (-10, 4, 6)
        assert np.allclose(_slice_centre(nodes.slice_nodes[2]), (20.0, 30.0, 40.0), atol=1e-3)  # no registration
        linker.quietly(lambda: nodes.slice_nodes[0].JumpSliceByCentering(0.0, 0.0, 0.0))
        assert np.allclose(_slice_centre(nodes.slice_nodes[1]), (10.0, 34.0, 46.0), atol=1e-3)
        linker.enabled = False
        nodes.slice_nodes[0].JumpSliceByCentering(5.0, 5.0, 5.0)
        assert np.allclose(_slice_centre(nodes.slice_nodes[1]), (10.0, 34.0, 46.0), atol=1e-3)
    finally:
        linker.close()
        nodes.transforms = saved


@pytest.fixture()
def fresh_nodes(loaded, tmp_path):
    """The truth analysis (copied) loaded without volumes into a clean scene, for edits."""
    import shutil

    from LesionResponseReview import mrml as lrm

    truth, nodes, _ = loaded
    out = tmp_path / "analysis"
    shutil.copytree(nodes.out_dir, out)
    headless = slicer_bootstrap.new_scene()
    return truth, lrm.load_analysis_into_scene(headless.scene, out, load_volumes=False)


class _Drawn:
    """How a ROI is drawn in the label layer (name and colour from its time point's colour table)."""

    def __init__(self, nodes, roi_id: str) -> None:
        from LesionResponseReview import mrml as lrm

        self.name, self.colour, self.alpha = lrm.roi_display(nodes, roi_id)

    def GetName(self) -> str:  # noqa: N802 (reads like the segment API it replaced)
        return self.name

    def GetColor(self) -> tuple:  # noqa: N802
        return self.colour


def _segment(nodes, roi_id: str) -> _Drawn:
    return _Drawn(nodes, roi_id)


def _labels(nodes, tp: int) -> set[int]:
    return set(np.unique(nodes.label_arrays[tp]).tolist()) - {0}


def test_edit_refresh_renames_recolours_and_updates_table(fresh_nodes):
    from LesionResponseReview import mrml as lrm

    truth, nodes = fresh_nodes
    analysis = nodes.analysis
    # reader rejects one ROI and links track 8 into track 7 (what ReviewSession's reject/link produce)
    analysis.roi("tp1-L0006").status = "rejected"
    seven, eight = analysis.track(7), analysis.track(8)
    for tp, ids in eight.rois.items():
        seven.rois.setdefault(tp, []).extend(ids)
    analysis.tracks.remove(eight)
    lrm.refresh_after_edit(nodes)
    assert _segment(nodes, "tp1-L0006").GetName() == "T006 tp1 rejected"
    assert np.allclose(_segment(nodes, "tp1-L0006").GetColor(), lrm.CATEGORY_COLORS["rejected"])
    assert _segment(nodes, "tp2-L0008").GetName().startswith("T007 tp2 ")
    table = nodes.table.GetTable()
    ids = [table.GetColumnByName("track_id").GetValue(i) for i in range(table.GetNumberOfRows())]
    assert 8 not in ids and len(ids) == len({les["track_id"] for les in truth["lesions"]}) - 1
    row = ids.index(7)
    assert "tp2-L0008" in table.GetColumnByName("rois").GetValue(row)
    nodes.color_by = "track"
    lrm.refresh_after_edit(nodes)
    assert np.allclose(_segment(nodes, "tp2-L0008").GetColor(), lrm.track_color(7))


def test_table_names_the_timepoints_whose_roi_the_model_did_not_find(fresh_nodes):
    """A ROI of the prior-guided search (or the reader) is flagged in the track table the views share."""
    from LesionResponseReview import mrml as lrm

    _truth, nodes = fresh_nodes
    track = next(t for t in sorted(nodes.analysis.tracks, key=lambda t: t.track_id)
                 if sum(len(ids) == 1 for tp, ids in t.rois.items() if tp > 0) >= 2)
    later = sorted(tp for tp, ids in track.rois.items() if tp > 0 and len(ids) == 1)[:2]
    nodes.analysis.roi(track.rois[later[0]][0]).source = "prior-guided"
    nodes.analysis.roi(track.rois[later[1]][0]).source = "reader"
    lrm.refresh_after_edit(nodes)
    table = nodes.table.GetTable()
    ids = [table.GetColumnByName("track_id").GetValue(i) for i in range(table.GetNumberOfRows())]
    flagged = {ids[i]: table.GetColumnByName("not_model").GetValue(i) for i in range(len(ids))}
    assert flagged[track.track_id] == f"T{later[0]} T{later[1]}"
    assert all(value == "" for tid, value in flagged.items() if tid != track.track_id)
    assert lrm.roi_sources(nodes.analysis, track)[later[0]] == "prior-guided"
    from LesionResponseLib.datamodel import SearchRecord

    nodes.analysis.prior_searches.append(SearchRecord("forward", later[0], 0, [], track.rois[later[0]][0],
                                                      found=True,
                                                      evidence="model"))
    assert lrm.roi_sources(nodes.analysis, track)[later[0]] == "prior-guided (model evidence)"
    assert lrm.checked_timepoints(nodes.analysis, track) == f"T{later[0]} T{later[1]}"


def test_label_edit_is_reloaded_into_the_segmentation(fresh_nodes):
    import SimpleITK as sitk
    from LesionResponseReview import mrml as lrm

    _, nodes = fresh_nodes
    path = nodes.out_dir / "labels" / "tp1.nii.gz"
    image = sitk.ReadImage(str(path))
    before = len(_labels(nodes, 1))
    sitk.WriteImage(sitk.ChangeLabel(image, {6: 0}), str(path))  # reader erased ROI label 6 at tp1
    nodes.analysis.rois = [r for r in nodes.analysis.rois if r.roi_id != "tp1-L0006"]
    for track in nodes.analysis.tracks:
        track.rois = {tp: [i for i in ids if i != "tp1-L0006"] for tp, ids in track.rois.items()}
    lrm.refresh_after_edit(nodes, reload_labels=True)
    assert len(_labels(nodes, 1)) == before - 1 and 6 not in _labels(nodes, 1) and 7 in _labels(nodes, 1)
    import slicer

    assert 6 not in np.unique(slicer.util.arrayFromVolume(nodes.labels[1]))  # the node shown was refilled


def _track_ids(nodes) -> list[int]:
    table = nodes.table.GetTable()
    return [table.GetColumnByName("track_id").GetValue(i) for i in range(table.GetNumberOfRows())]


def test_review_session_round_trip(fresh_nodes):
    """Edits through the real ReviewSession: reject, merge, add a drawn ROI, undo/redo; the nodes follow."""
    import SimpleITK as sitk
    from LesionResponseReview import mrml as lrm

    from LesionResponseLib.review import ReviewSession
    from LesionResponseLib.review.edits import AddRoi, MergeTracks, RejectRoi

    _, nodes = fresh_nodes
    n_tracks = len(_track_ids(nodes))
    session = ReviewSession.open(nodes.out_dir, user="test")
    try:
        lrm.apply_review_edit(nodes, session, RejectRoi("tp1-L0006"))
        assert _segment(nodes, "tp1-L0006").GetName() == "T006 tp1 rejected"
        assert np.allclose(_segment(nodes, "tp1-L0006").GetColor(), lrm.CATEGORY_COLORS["rejected"])
        lrm.undo_review_edit(nodes, session)
        assert _segment(nodes, "tp1-L0006").GetName() == "T006 tp1 increasing"  # truth category

        lrm.apply_review_edit(nodes, session, MergeTracks(7, 8))
        assert len(_track_ids(nodes)) == n_tracks - 1
        survivor = next(t.track_id for t in nodes.analysis.tracks if "tp2-L0008" in sum(t.rois.values(), []))
        assert _segment(nodes, "tp2-L0007").GetName().startswith(f"T{survivor:03d} ")
        assert _segment(nodes, "tp2-L0008").GetName().startswith(f"T{survivor:03d} ")

        # a reader-drawn ROI (a 6 mm sphere at the image centre, minus existing ROIs) becomes a new segment
        labels = sitk.ReadImage(str(nodes.out_dir / "labels" / "tp1.nii.gz"))
        existing = sitk.GetArrayFromImage(labels)
        grid = np.stack(np.indices(existing.shape), -1) - np.array(existing.shape) // 2
        inside = ((grid * np.array(labels.GetSpacing()[::-1])) ** 2).sum(-1) <= 6.0**2
        mask = sitk.GetImageFromArray((inside & (existing == 0)).astype(np.uint8))
        mask.CopyInformation(labels)
        assert sitk.GetArrayViewFromImage(mask).sum() > 10
        before = len(_labels(nodes, 1))
        record = lrm.apply_review_edit(nodes, session, AddRoi(1, mask))
        assert len(_labels(nodes, 1)) == before + 1
        created = nodes.analysis.roi(record["created_roi"])
        assert created.label in _labels(nodes, 1) and _segment(nodes, created.roi_id).GetName().startswith("T")
        lrm.undo_review_edit(nodes, session)
        assert len(_labels(nodes, 1)) == before
        lrm.redo_review_edit(nodes, session)
        assert len(_labels(nodes, 1)) == before + 1
    finally:
        session.close()


def test_split_track_is_centred_on_the_volume_weighted_centre_of_its_parts(loaded):
    from LesionResponseReview import mrml as lrm

    truth, nodes, _ = loaded
    split = next(les for les in truth["lesions"] if les["kind"] == "split")
    tp, state = next((int(k), v) for k, v in split["timepoints"].items() if len(v.get("labels", [])) > 1)
    lrm.jump_to_track(nodes, split["track_id"])
    expected = np.array(lrm.lps_to_ras(state["centroid_mm"]))
    assert np.linalg.norm(_slice_centre(nodes.slice_nodes[tp]) - expected) < 2.0


@pytest.fixture(scope="module")
def pipeline_nodes(make_phantom, build_once, tmp_path_factory):
    """The real ``analyze`` pipeline (truth label maps as segmentation, real registration) loaded headless."""
    from LesionResponseReview import mrml as lrm
    from test_report_factory import pipeline_output

    phantom = make_phantom(seed=2, timepoints=2, axial_extent_mm=160)
    out = pipeline_output(phantom, tmp_path_factory.mktemp("pipeline") / "out", build_once)  # shared with test_report_phantom
    headless = slicer_bootstrap.new_scene()
    nodes = lrm.load_analysis_into_scene(headless.scene, out, load_volumes=False)
    lrm.setup_timepoint_layout(nodes, headless.logics["layout"].GetLayoutNode())
    return json.loads((phantom / "truth.json").read_text()), nodes


def test_pipeline_output_views_jump_to_truth_centroids(pipeline_nodes):
    from LesionResponseReview import mrml as lrm

    truth, nodes = pipeline_nodes
    assert (0, 1) in nodes.transforms  # the registration transform became a node
    by_roi = {r.roi_id: r for r in nodes.analysis.rois}
    checked = 0
    for lesion in _single_label_lesions(truth, 0):
        label = lesion["timepoints"]["0"]["labels"][0]
        roi_id = f"tp0-L{label:04d}"
        track = next(t for t in nodes.analysis.tracks if roi_id in t.rois.get(0, []))
        lrm.jump_to_track(nodes, track.track_id)
        expected = np.array(lrm.lps_to_ras(lesion["timepoints"]["0"]["centroid_mm"]))
        assert np.linalg.norm(_slice_centre(nodes.slice_nodes[0]) - expected) < 2.0, (roi_id, by_roi[roi_id])
        checked += 1
    assert checked >= 3


def test_pipeline_registration_maps_points_like_simpleitk(pipeline_nodes):
    """Crosshair following goes through the registration exactly as SimpleITK applies the ITK file (fixed LPS ->
    moving LPS), and brings each lesion's tp0 truth centre closer to its tp1 truth centre than no mapping."""
    import SimpleITK as sitk
    from LesionResponseReview import mrml as lrm

    truth, nodes = pipeline_nodes
    reg = next(r for r in nodes.analysis.registrations if (r.fixed_timepoint, r.moving_timepoint) == (0, 1))
    itk = sitk.ReadTransform(str(nodes.out_dir / reg.transform_path))
    gains = []
    for lesion in truth["lesions"]:
        states = lesion["timepoints"]
        if not all(states.get(k, {}).get("present") for k in ("0", "1")):
            continue
        start_lps, end_lps = np.array(states["0"]["centroid_mm"]), np.array(states["1"]["centroid_mm"])
        mapped, registered = lrm.map_point_between_timepoints(nodes, lrm.lps_to_ras(start_lps), 0, 1)
        assert registered
        # 0.05 mm: an elastix result is a displacement field, which VTK's grid transform and ITK interpolate
        # slightly differently (measured 0.012 mm); 1 % of a 4 mm PET voxel.
        assert np.allclose(lrm.ras_to_lps(mapped), itk.TransformPoint(tuple(start_lps)), atol=0.05)
        back, _ = lrm.map_point_between_timepoints(nodes, mapped, 1, 0)
        assert np.allclose(back, lrm.lps_to_ras(start_lps), atol=0.1)  # inverse of a B-spline: iterative
        gains.append(np.linalg.norm(start_lps - end_lps) - np.linalg.norm(np.array(lrm.ras_to_lps(mapped)) - end_lps))
        moved = lrm.follow_crosshair(nodes, lrm.lps_to_ras(start_lps), src=0)
        assert np.allclose(_slice_centre(nodes.slice_nodes[1]), moved[1])
    assert len(gains) >= 5 and np.median(gains) > 10.0, gains  # phantom motion between scans is ~30 mm


def test_panel_fields_parse_to_typed_edit_arguments(monkeypatch):
    """The ids typed in a face's panel become the typed edits' arguments; the desktop buttons build those edits."""
    from LesionResponseReview import mrml as lrm

    from LesionResponseLib.review.edits import MergeTracks, RejectRoi, SplitTrack

    assert lrm.number_from_text("T007") == 7 and lrm.number_from_text(" 8") == 8
    assert lrm.roi_id_from_text("tp1-L0006 ") == "tp1-L0006"
    with pytest.raises(lrm.SlicerLoadError, match="needs a track id, got 'x'.*Type a number"):
        lrm.number_from_text("x")
    with pytest.raises(lrm.SlicerLoadError, match="needs a ROI id.*Click a lesion-ROI"):
        lrm.roi_id_from_text("  ")
    buttons = slicer_bootstrap.import_desktop_module(monkeypatch).REVIEW_BUTTONS
    assert buttons["merge"]("T007", " 8", None) == MergeTracks(7, 8)
    assert buttons["split"]("12", "2", None) == SplitTrack(12, 2)
    assert buttons["reject"]("tp1-L0006 ", "", None) == RejectRoi("tp1-L0006")


def test_export_writes_report_and_dicom_seg_sr(pipeline_nodes, tmp_path):
    import pydicom
    from LesionResponseReview import mrml as lrm

    truth, nodes = pipeline_nodes
    paths = lrm.export_results(nodes.out_dir, tmp_path / "export", formats=("html",))
    assert any(p.suffix == ".html" and p.stat().st_size > 1000 for p in paths)
    modalities = sorted(pydicom.dcmread(p).Modality for p in paths if p.suffix == ".dcm")
    assert modalities.count("SEG") == truth["n_timepoints"] and modalities.count("SR") == truth["n_timepoints"]
    assert all(p.parent == tmp_path / "export" / "dicom" for p in paths if p.suffix == ".dcm")


@pytest.fixture()
def module_logic(pipeline_nodes, tmp_path, monkeypatch):
    """``LesionResponse.py``'s Logic, imported with stand-ins for the Qt-only parts slicer-core lacks."""
    import shutil

    module = slicer_bootstrap.import_desktop_module(monkeypatch)
    out = tmp_path / "analysis"
    shutil.copytree(pipeline_nodes[1].out_dir, out)
    logic = module.LesionResponseLogic()
    yield logic, out
    logic.closeSession()


def test_module_logic_load_step_edit_export(module_logic, tmp_path):
    """The desktop Logic end to end on the pipeline output: load, N/P stepping (in the review queue's order),
    reject + undo, export."""
    from LesionResponseLib.analysis.queue import review_queue
    from LesionResponseLib.review import ReviewSession
    from LesionResponseLib.review.edits import RejectRoi

    logic, out = module_logic
    nodes = logic.loadResults(out)
    ids = [item.track_id for item in review_queue(nodes.analysis)]
    assert [logic.stepTrack(1) for _ in range(3)] == ids[:3] and logic.stepTrack(-1) == ids[1]
    assert logic.stepTrack(-1) == ids[0] and logic.stepTrack(-1) == ids[-1]  # wraps around
    roi = next(r for r in nodes.analysis.rois if r.timepoint == 1)
    logic.edit(RejectRoi(roi.roi_id))
    assert logic.nodes.analysis.roi(roi.roi_id).status == "rejected"
    logic.undo()
    assert logic.nodes.analysis.roi(roi.roi_id).status == "accepted"
    paths = logic.export(tmp_path / "export", addToDatabase=False)
    assert {p.suffix for p in paths} >= {".html", ".dcm"}
    logic.closeSession()
    ReviewSession.open(out, user="other").close()  # the lock was released


def test_track_table_opens_in_queue_order_and_steps_to_the_next_unreviewed_track(fresh_nodes):
    """Both faces read the queue from here: the table's rows follow it, marking a track reviewed (a review edit)
    moves it to the end and takes it off what is left, the next unreviewed track follows the queue."""
    from LesionResponseReview import mrml as lrm

    from LesionResponseLib.review import ReviewSession
    from LesionResponseLib.review.edits import MarkReviewed

    _, nodes = fresh_nodes
    order = lrm.queue_order(nodes.analysis)
    table = nodes.table.GetTable()
    assert _track_ids(nodes) == order and len(order) > 3
    assert [table.GetColumnByName("queue_rank").GetValue(i) for i in range(len(order))] == list(range(1, len(order) + 1))
    assert lrm.next_unreviewed(nodes.analysis, None) == order[0]
    assert lrm.next_unreviewed(nodes.analysis, order[0]) == order[1]
    session = ReviewSession.open(nodes.out_dir, user="test", autosave=False)
    try:
        lrm.apply_review_edit(nodes, session, MarkReviewed(lrm.number_from_text(f"T{order[0]:03d}")))
        assert _track_ids(nodes) == order[1:] + order[:1]
        reviewed = nodes.table.GetTable().GetColumnByName("reviewed")
        assert reviewed.GetValue(len(order) - 1) == "yes" and reviewed.GetValue(0) == ""
        assert lrm.next_unreviewed(nodes.analysis, order[0]) == order[1]  # from the reviewed one: the next left
        assert lrm.queue_summary(nodes.analysis) == f"{len(order) - 1} of {len(order)} tracks left to review"
        for track_id in order[1:]:
            lrm.apply_review_edit(nodes, session, MarkReviewed(track_id))
        assert lrm.next_unreviewed(nodes.analysis, order[0]) is None
        assert lrm.queue_summary(nodes.analysis) == f"all {len(order)} tracks reviewed"
        lrm.undo_review_edit(nodes, session)
        assert lrm.next_unreviewed(nodes.analysis, None) == order[-1]
    finally:
        session.close()


def test_reference_spheres_are_outlined_in_their_own_view_and_follow_a_move(loaded):
    """A placed reference region is a sphere model cut by its time point's view only (magenta, as on the report's
    MIPs); a region not placed has none; redrawn after a move (refresh_after_edit calls show_reference_regions; the
    shared scene's label maps are left as other tests made them, so the spheres are redrawn directly), the one
    sphere is at the new centre."""
    from LesionResponseReview import mrml as lrm

    from LesionResponseLib.datamodel import ReferenceRegion

    _, nodes, _ = loaded
    saved = list(nodes.analysis.reference_regions)

    def bounds_centre_and_size(model) -> tuple[np.ndarray, np.ndarray]:
        b = np.array(model.GetPolyData().GetBounds()).reshape(3, 2)
        return b.mean(axis=1), b[:, 1] - b[:, 0]

    drawn = []
    try:
        for centre in ((-80.0, -10.0, -560.0), (-60.0, 5.0, -540.0)):
            nodes.analysis.reference_regions = [
                ReferenceRegion(0, "liver", True, 30.0, centre, 6.0, 1.0, 14.0, 1.0),
                ReferenceRegion(0, "spleen", False, 20.0, warnings=["no spleen found"])]
            lrm.show_reference_regions(nodes)
            assert list(nodes.reference_models) == [(0, "liver")]
            model = nodes.reference_models[(0, "liver")]
            drawn.append(model)
            middle, size = bounds_centre_and_size(model)
            assert np.allclose(middle, lrm.lps_to_ras(centre), atol=0.5) and np.allclose(size, 30.0, atol=0.5)
            display = model.GetDisplayNode()
            assert display.GetVisibility2D() and display.GetColor() == lrm.REFERENCE_COLOUR
            assert [display.GetNthViewNodeID(i) for i in range(display.GetNumberOfViewNodeIDs())] == \
                [nodes.slice_nodes[0].GetID()]
        assert not nodes.scene.IsNodePresent(drawn[0]) and nodes.scene.IsNodePresent(drawn[1])  # moved, not added
    finally:
        nodes.analysis.reference_regions = saved
        lrm.show_reference_regions(nodes)
