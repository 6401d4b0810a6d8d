"""Reference regions, lesion sites, Krenning-like grade and tumour burden (analysis.reference_regions, .sites, .burden)
against the phantom's truth, and the reader's edits of them (review).

Phantoms (issue 33's test seeds, generated once into the test cache): a lesion-free upper-abdomen slab (seed 4495,
``n_lesions=0``) and a slab with lesions (seed 4496, two time points) with its true lesion masks as ROIs (no
segmentation, no registration: seconds).
"""

from __future__ import annotations

import io
import json
import shutil
import statistics

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from LesionResponseLib.analysis.burden import burden_rows, krenning_grade, lesion_ratios
from LesionResponseLib.analysis.reference_regions import (
    focal_uptake,
    measure_sphere,
    place_reference_regions,
    sphere_mask,
)
from LesionResponseLib.analysis.truth import reference_agreement
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.datamodel import Analysis, Link
from LesionResponseLib.phantom.anatomy import ORGAN_LABELS
from LesionResponseLib.segmentation.organs import find_organs

PARAMS = AnalysisParameters()


def _loaded(phantom):
    from LesionResponseLib.dicomio import find_timepoints, load_timepoint

    return [load_timepoint(info) for info in find_timepoints(phantom / "dicom").timepoints]


@pytest.fixture(scope="module")
def lesion_free(make_phantom):
    phantom = make_phantom(seed=4495, timepoints=1, axial_extent_mm=160, n_lesions=0, extras=False)
    tp = _loaded(phantom)[0]
    organs = sitk.ReadImage(str(phantom / "truth" / "tp0_organs.nii.gz"))
    return phantom, tp, sitk.GetArrayFromImage(organs)


def _empty_labels(pet: sitk.Image) -> sitk.Image:
    labels = sitk.Image(pet.GetSize(), sitk.sitkUInt16)
    labels.CopyInformation(pet)
    return labels


def test_lesion_free_timepoint_has_zero_burden_and_valid_reference_regions(lesion_free):
    phantom, tp, _ = lesion_free
    organs = find_organs(tp.pet_suv, tp.ct)  # no model output: kidneys and spleen from the PET's hot organs
    regions = place_reference_regions(tp.pet_suv, _empty_labels(tp.pet_suv), organs, 0, PARAMS)
    analysis = Analysis("P", [tp.info], rois=[], reference_regions=regions)
    checks = reference_agreement(analysis, phantom)
    assert [(c["organ"], c["placed"]) for c in checks] == [("liver", True), ("spleen", True)], checks
    for check in checks:
        assert check["truth_organ_share"] == 1.0, check  # the whole sphere in the true organ
        assert abs(check["error_pct"]) <= 5.0, check  # SUVmean within 5 % of the organ's true uptake
        assert not check["warnings"], check
    (row,) = burden_rows(analysis)
    assert (row["site"], row["n_rois"], row["volume_ml"], row["suv_total"], row["suv_total_pvc"]) == ("all", 0, 0, 0, 0)
    assert row["volume_ml_change_pct"] is None  # no change from a baseline of 0


def _with_missed_lesion(pet: sitk.Image, centre_mm, *, volume_ml: float, contrast: float, fwhm_mm: float = 6.0):
    """``pet`` plus a sphere lesion of ``volume_ml`` at ``centre_mm`` whose uptake is ``contrast`` × the liver's
    (the local median), blurred by a Gaussian PSF of ``fwhm_mm`` as the scanner would."""
    from scipy import ndimage

    values = sitk.GetArrayFromImage(pet).astype(np.float64)
    diameter = 2 * (3 * volume_ml * 1000 / (4 * np.pi)) ** (1 / 3)
    ball = sphere_mask(pet, centre_mm, diameter)
    excess = np.zeros(values.shape)
    excess[ball] = (contrast - 1) * float(np.median(values[sphere_mask(pet, centre_mm, 40.0)]))
    sigma = fwhm_mm / 2.3548 / np.asarray(pet.GetSpacing()[::-1])
    image = sitk.GetImageFromArray((values + ndimage.gaussian_filter(excess, sigma)).astype(np.float32))
    image.CopyInformation(pet)
    return image, ball


def test_reference_sphere_keeps_off_a_small_lesion_the_segmentation_missed(lesion_free):
    """A 0.6 mL lesion of 2.6 × the liver's uptake, missed by the segmentation, where the sphere would sit: its
    blurred uptake stays in the liver's uptake band (not a hole), so only the focal-uptake rule keeps it out."""
    phantom, tp, _ = lesion_free
    organs = find_organs(tp.pet_suv, tp.ct)
    no_rois = _empty_labels(tp.pet_suv)
    before = place_reference_regions(tp.pet_suv, no_rois, organs, 0, PARAMS)[0]
    pet, lesion = _with_missed_lesion(tp.pet_suv, before.centre_mm, volume_ml=0.6, contrast=2.6)
    at_old_place = measure_sphere(pet, no_rois, organs, 0, "liver", before.centre_mm, before.diameter_mm, PARAMS)
    assert at_old_place.suv_mean > 1.03 * before.suv_mean  # the case matters: > 3 % of the 5 % budget where it stood
    assert not (focal_uptake(tp.pet_suv, organs.mask("liver")) & lesion).any()
    assert focal_uptake(pet, organs.mask("liver"))[lesion].any()
    moved = place_reference_regions(pet, no_rois, organs, 0, PARAMS)[0]
    gap = np.min(np.linalg.norm(np.argwhere(lesion) * 4.0 - np.argwhere(
        sphere_mask(pet, moved.centre_mm, moved.diameter_mm))[:, None] * 4.0, axis=-1))
    assert moved.placed and gap >= 2 * PARAMS.quantification.psf_fwhm_mm, gap
    (check,) = [c for c in reference_agreement(Analysis("P", [tp.info], reference_regions=[moved]), phantom)]
    assert abs(check["error_pct"]) <= 5.0, check


def _liver_full_of_lesions(tp, true_organs: np.ndarray, spacing_mm: float = 24.0, radius_mm: float = 8.0):
    """The time point's PET with hot spheres (SUV 25) every ``spacing_mm`` through the true liver, and their
    label map: no 30 mm sphere of normal liver is left between them."""
    pet = sitk.GetArrayFromImage(tp.pet_suv)
    labels = np.zeros(pet.shape, np.uint16)
    liver = np.argwhere(true_organs == ORGAN_LABELS["liver"])
    step = int(round(spacing_mm / tp.pet_suv.GetSpacing()[0]))
    centres = [c for c in liver if all(int(v) % step == 0 for v in c)]
    for label, centre in enumerate(centres, start=1):
        point = tp.pet_suv.TransformIndexToPhysicalPoint([int(v) for v in centre[::-1]])
        ball = sphere_mask(tp.pet_suv, point, 2 * radius_mm)
        pet[ball], labels[ball] = 25.0, label
    images = [sitk.GetImageFromArray(a) for a in (pet, labels)]
    for image in images:
        image.CopyInformation(tp.pet_suv)
    return images[0], images[1], len(centres)


def test_liver_full_of_lesions_gives_a_warning_not_a_reference_on_tumour(lesion_free):
    _, tp, true_organs = lesion_free
    pet, labels, n = _liver_full_of_lesions(tp, true_organs)
    assert n >= 20
    organs = find_organs(pet, tp.ct)
    liver, spleen = place_reference_regions(pet, labels, organs, 0, PARAMS)
    assert not liver.placed and liver.suv_mean is None
    assert "not placed" in liver.warnings[0] and "liver full of lesions" in liver.warnings[0]
    assert spleen.placed  # the spleen is still the spleen
    # the same when the segmentation missed every lesion: the liver's uptake band leaves them out
    missed = place_reference_regions(pet, _empty_labels(pet), organs, 0, PARAMS)[0]
    lesions = sitk.GetArrayViewFromImage(labels) > 0
    assert not missed.placed or not (sphere_mask(pet, missed.centre_mm, missed.diameter_mm) & lesions).any()
    from LesionResponseLib.analysis import measure_rois

    rois = measure_rois(labels, pet, 0)
    ratios = lesion_ratios(Analysis("P", [tp.info], rois=rois, reference_regions=[liver, spleen]))
    assert len(ratios) == n and all(r["suv_max_to_liver"] is None for r in ratios.values())  # no ratio to tumour
    for roi in rois:  # only the spleen's ratio, and a grade only where the lesion is above the spleen
        assert ratios[roi.roi_id]["suv_max_to_spleen"] == pytest.approx(roi.suv_max / spleen.suv_mean)
        assert ratios[roi.roi_id]["krenning_grade"] == ("4" if roi.suv_max > spleen.suv_mean else "")


def test_krenning_like_grade_mapping():
    assert [krenning_grade(v, 5.0, 20.0) for v in (4.0, 5.0, 6.0, 20.0, 21.0)] == ["≤2", "≤2", "3", "3", "4"]
    assert [krenning_grade(v, 5.0, None) for v in (5.0, 6.0)] == ["≤2", "≥3"]  # no spleen reference
    assert [krenning_grade(v, None, 20.0) for v in (6.0, 21.0)] == ["", "4"]  # no liver reference


# ---------------------------------------------------------------------------------------- with lesions
@pytest.fixture(scope="module")
def reviewed_output(make_phantom, tmp_path_factory):
    """The seed-4496 slab's analysis folder from its true lesion masks, with organs, reference regions and sites."""
    from test_report_factory import phantom_output

    from LesionResponseLib.analysis import assess_response, load_analysis, write_outputs
    from LesionResponseLib.workflow.pipeline import RunReport, reference_stage

    phantom = make_phantom(seed=4496, timepoints=2, axial_extent_mm=160, extras=False)
    out = phantom_output(phantom, tmp_path_factory.mktemp("burden") / "out")
    analysis = load_analysis(out)
    analysis.links = [Link(track.rois[0][0], roi_id) for track in analysis.tracks if track.rois.get(0)
                      for roi_id in track.rois.get(1, [])]  # the true tracks, so the review keeps them
    analysis.responses, analysis.heterogeneous = assess_response(analysis.tracks, analysis.rois, 2,
                                                                 analysis.parameters)  # as the review recomputes
    loaded = _loaded(phantom)
    labels = {tp.info.index: sitk.ReadImage(str(out / "labels" / f"tp{tp.info.index}.nii.gz")) for tp in loaded}
    analysis.reference_regions = reference_stage(loaded, labels, analysis.rois, evidence={},
                                                 params=analysis.parameters, out=out, report=RunReport())
    write_outputs(analysis, out)
    return phantom, out


def test_sites_and_reference_regions_of_the_phantom_slab(reviewed_output):
    from LesionResponseLib.analysis import load_analysis
    from LesionResponseLib.analysis.truth import site_agreement

    phantom, out = reviewed_output
    analysis = load_analysis(out)
    for check in reference_agreement(analysis, phantom):
        assert check["placed"] and check["truth_organ_share"] == 1.0 and abs(check["error_pct"]) <= 5.0, check
    sites = site_agreement(analysis, out, phantom)
    assert sites["n"] >= 10 and sites["share"] >= 0.9, sites
    rows = pd.read_csv(out / "burden.csv")
    for tp, group in rows.groupby("timepoint"):
        total = group[group.site == "all"].iloc[0]
        parts = group[group.site != "all"]
        assert total.n_rois == parts.n_rois.sum() == sum(r.timepoint == tp for r in analysis.rois)
        assert total.volume_ml == pytest.approx(parts.volume_ml.sum(), abs=1e-3)


def test_moving_a_reference_region_is_undoable_and_recomputes_the_ratios(reviewed_output, tmp_path):
    from LesionResponseLib.review import ReviewSession

    _, source = reviewed_output
    out = tmp_path / "out"
    shutil.copytree(source, out)
    before = (out / "rois.csv").read_bytes()
    spleen = json.loads((out / "analysis.json").read_text())["reference_regions"][1]
    assert spleen["organ"] == "spleen" and spleen["timepoint"] == 0
    with ReviewSession.open(out, user="reader") as session:
        record = session.move_reference(0, "liver", spleen["centre_mm"])  # the liver's sphere put on the spleen
        moved = session.state.analysis.reference(0, "liver")
        assert moved.source == "reader" and moved.suv_mean == pytest.approx(spleen["suv_mean"], rel=0.05)
        assert "lies outside the liver" in moved.warnings[0]  # the check against the organs found on PET/CT
        assert record["references_after"]["tp0 liver"]["source"] == "reader"
        rois = pd.read_csv(out / "rois.csv")
        at0 = rois[rois.timepoint == 0]
        assert np.allclose(at0.suv_max_to_liver, (at0.suv_max / moved.suv_mean).round(3), atol=1e-3)
        unchanged = pd.read_csv(io.BytesIO(before))
        changed = rois[rois.timepoint == 1].compare(unchanged[unchanged.timepoint == 1])
        assert changed.empty, changed  # the other time point's ratios did not move
        session.undo()
        assert (out / "rois.csv").read_bytes() == before
        session.redo()
        assert session.state.analysis.reference(0, "liver").source == "reader"
    with ReviewSession.open(out, user="reader") as session:  # replayed from session.json
        assert session.state.analysis.reference(0, "liver").suv_mean == pytest.approx(moved.suv_mean)
    audit = [json.loads(line) for line in (out / "review" / "audit.jsonl").read_text().splitlines()]
    assert [a["action"] for a in audit] == ["apply", "undo", "redo"] and audit[0]["type"] == "move_reference"


def test_reader_sets_a_site_and_the_burden_by_site_follows(reviewed_output, tmp_path):
    from LesionResponseLib.review import ReviewError, ReviewSession

    _, source = reviewed_output
    out = tmp_path / "out"
    shutil.copytree(source, out)
    roi = pd.read_csv(out / "rois.csv").iloc[0]
    assert roi.site != "lung"  # the slab's lesions lie in the abdomen
    burden_before = (out / "burden.csv").read_bytes()
    with ReviewSession.open(out, user="reader") as session:
        with pytest.raises(ReviewError, match="unknown site 'brain'"):
            session.set_site(roi.roi_id, "brain")
        session.set_site(roi.roi_id, "lung")
        rows = pd.read_csv(out / "burden.csv")
        lung = rows[(rows.timepoint == roi.timepoint) & (rows.site == "lung")].iloc[0]
        assert lung.n_rois == 1 and lung.volume_ml == pytest.approx(roi.volume_ml, abs=1e-3)
        assert pd.read_csv(out / "rois.csv").set_index("roi_id").loc[roi.roi_id, "site_source"] == "reader"
        session.undo()
        assert (out / "burden.csv").read_bytes() == burden_before


def test_burden_error_parts_add_up_and_put_a_rejected_lesion_into_missed(reviewed_output):
    from LesionResponseLib.analysis import load_analysis
    from LesionResponseLib.analysis.truth import Reference, burden_agreement, burden_error_parts

    phantom, out = reviewed_output
    analysis = load_analysis(out)
    truth = Reference.from_phantom(phantom).truth
    # the true masks as ROIs: a ROI of one whole lesion, rejected, is that lesion's truth missed
    single = {int(le["timepoints"]["0"]["labels"][0]): le for le in truth["lesions"]
              if len(le["timepoints"]["0"]["labels"]) == 1 and le["timepoints"]["0"]["present"]}
    shared = [label for le in truth["lesions"] for label in le["timepoints"]["0"]["labels"]]
    roi = next(r for r in analysis.rois if r.timepoint == 0 and r.label in single and shared.count(r.label) == 1)
    roi.status = "rejected"
    totals = {row["timepoint"]: row for row in burden_agreement(analysis, phantom)}
    parts = burden_error_parts(analysis, out, phantom)
    assert [p["timepoint"] for p in parts] == [0, 1]
    for part in parts:
        total = totals[part["timepoint"]]
        for name, key in (("volume", "volume_error_pct"), ("suv_total", "suv_total_error_pct"),
                          ("suv_total_pvc", "suv_total_pvc_error_pct")):
            assert part[f"{name}_matched_pct"] + part[f"{name}_false_positive_pct"] - part[f"{name}_missed_pct"] \
                == pytest.approx(total[key], abs=1e-6), (name, part)
        assert part["n_false_positive_rois"] == 0  # every ROI is a true mask
    missed = 100.0 * float(single[roi.label]["timepoints"]["0"]["suv_total"]) / totals[0]["true_suv_total"]
    assert parts[0]["suv_total_missed_pct"] == pytest.approx(missed, rel=1e-6)
    assert parts[1]["suv_total_missed_pct"] == pytest.approx(0.0, abs=1e-9)  # nothing rejected at time point 1


def test_changes_are_printed_with_their_sign_and_never_as_minus_zero(monkeypatch):
    from LesionResponseLib.terminal import signed_percent

    assert [signed_percent(v) for v in (-0.3, 0.4, 31.6, -12.4, -100.0)] == ["±0 %", "±0 %", "+32 %", "-12 %", "-100 %"]
    from LesionResponseLib.analysis import burden
    from LesionResponseLib.report import patient

    rows = [{"timepoint": k, "site": "all", "n_rois": 3, "n_rois_change": 0, "volume_ml": 10.0, "suv_total": 50.0,
             "suv_total_pvc": 70.0, "volume_ml_change_pct": -0.2 * k, "suv_total_change_pct": 31.6,
             "suv_total_pvc_change_pct": -12.4} for k in (0, 1)]
    monkeypatch.setattr(burden, "burden_rows", lambda analysis: rows)  # the report's table formats these
    formatted = patient._burden_rows(type("Data", (), {"analysis": None})())
    assert [(r["volume"], r["total"], r["total_pvc"]) for r in formatted] == [
        ("10.0", "50.0", "70.0"), ("10.0 (±0 %)", "50.0 (+32 %)", "70.0 (-12 %)")]


def test_single_lesion_errors_leave_out_merged_lesions_and_show_the_true_masks_blur_loss(reviewed_output):
    from LesionResponseLib.analysis import load_analysis
    from LesionResponseLib.analysis.truth import Reference, single_lesion_errors

    phantom, out = reviewed_output
    analysis = load_analysis(out)
    truth = Reference.from_phantom(phantom).truth
    rows = single_lesion_errors(analysis, out, phantom, min_volume_ml=2.0)
    assert rows, "the slab has lesions of 2 mL and more"
    for row in rows:
        entry = next(le for le in truth["lesions"] if le["lesion_id"] == row["lesion_id"])["timepoints"][
            str(row["timepoint"])]
        shared = [le for le in truth["lesions"] if le["timepoints"][str(row["timepoint"])]["present"]
                  and set(le["timepoints"][str(row["timepoint"])]["labels"]) & set(entry["labels"])]
        assert len(shared) == 1, "a lesion sharing its ROI with another (merged) is left out"
        assert row["true_volume_ml"] == pytest.approx(entry["volume_ml"]) and row["true_volume_ml"] >= 2.0
        rois = [r for r in analysis.rois if r.timepoint == row["timepoint"] and r.label in entry["labels"]]
        assert row["suv_total_pvc_error_pct"] == pytest.approx(
            100.0 * (sum(r.suv_total_pvc for r in rois) / entry["suv_total"] - 1.0))
        assert row["volume_error_pct"] == pytest.approx(100.0 * (sum(r.volume_ml for r in rois) / entry["volume_ml"] - 1.0))
    # the true masks as ROIs: SUVmean x volume loses the blur's spill-out (every lesion), the correction gives it back
    assert max(r["suv_total_error_pct"] for r in rows) < -10.0
    assert statistics.median(abs(r["suv_total_pvc_error_pct"]) for r in rows) < 0.25 * statistics.median(
        abs(r["suv_total_error_pct"]) for r in rows)
