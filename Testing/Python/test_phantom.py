"""The synthetic patient: truth schema, categories, determinism, real-DICOM validity and read-back."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import require_tool

from LesionResponseLib.phantom import ORGAN_LABELS, VENDORS, load_truth, simulate_patient

SLAB = {"axial_extent_mm": 160}


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


def test_determinism_by_seed(full):
    again = simulate_patient(1, 3)
    stored = load_truth(full)
    assert json.loads(json.dumps(again.truth["lesions"])) == stored["lesions"]


@pytest.mark.parametrize("vendor", VENDORS)
def test_dicom_is_valid_and_reads_back(make_phantom, vendor):
    folder = make_phantom(seed=2, timepoints=2, vendor=vendor, **SLAB)
    truth = load_truth(folder)
    tp = truth["timepoints"][1]
    pet_files = sorted((folder / tp["folder"] / "PET_AC").iterdir())
    ct_files = sorted((folder / tp["folder"] / "CT").iterdir())
    dciodvfy = require_tool("dciodvfy")
    for path in (pet_files[3], ct_files[3]):
        out = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
        errors = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        assert not errors, errors
    ds = pydicom.dcmread(pet_files[0])
    assert ds.StudyInstanceUID == tp["study_instance_uid"] and ds.SeriesInstanceUID == tp["pet_series_instance_uid"]
    assert ds.FrameOfReferenceUID == pydicom.dcmread(ct_files[0]).FrameOfReferenceUID
    slopes = {float(pydicom.dcmread(p, stop_before_pixels=True).RescaleSlope) for p in pet_files[:20]}
    assert len(slopes) > 1  # per-slice rescale
    # SimpleITK reads the same geometry as the truth masks
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(pet_files[0].parent)))  # GDCM's own slice sort
    itk_pet = reader.Execute()
    mask = sitk.ReadImage(str(folder / tp["lesion_labels"]))
    assert itk_pet.GetSize() == mask.GetSize()
    assert np.allclose(itk_pet.GetOrigin(), mask.GetOrigin(), atol=1e-3)
    assert np.allclose(itk_pet.GetDirection(), mask.GetDirection())


@pytest.mark.parametrize("vendor", VENDORS)
def test_loader_suv_equals_simulated_suv(make_phantom, vendor):
    from LesionResponseLib.dicomio import find_timepoints, load_timepoint

    folder = make_phantom(seed=2, timepoints=2, vendor=vendor, **SLAB)
    truth = load_truth(folder)
    inventory = find_timepoints(folder)
    assert len(inventory.timepoints) == 2
    assert {i.reason for i in inventory.ignored} == {"not attenuation-corrected (CorrectedImage lacks ATTN)",
                                                     "localizer (topogram)"}
    simulated = simulate_patient(2, 2, **SLAB)
    for info, tp, sim in zip(inventory.timepoints, truth["timepoints"], simulated.timepoints, strict=True):
        if vendor != "gml":
            assert info.suv_factor == pytest.approx(tp["suv_factor"], rel=1e-3)
        loaded = load_timepoint(info)
        expected = sitk.GetArrayFromImage(sim.pet_suv)
        got = sitk.GetArrayFromImage(loaded.pet_suv)
        assert np.abs(got - expected).max() <= 1e-4 * expected.max() + 1e-3
        assert np.array_equal(sitk.GetArrayFromImage(loaded.ct), sitk.GetArrayFromImage(sim.ct))


def test_cli_phantom_and_mip(tmp_path):
    from typer.testing import CliRunner

    from LesionResponseLib.cli import app

    out = tmp_path / "p"
    result = CliRunner().invoke(app, ["phantom", "--out", str(out), "--seed", "4", "--timepoints", "2",
                                      "--lesions", "12"])
    assert result.exit_code == 0, result.output
    assert "heterogeneous response" in result.output
    for name in ("tp0.png", "tp1.png", "all.png"):
        assert (out / "mip" / name).stat().st_size > 5000
    result = CliRunner().invoke(app, ["mip", str(out), "--out", str(tmp_path / "mips")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mips" / "all.png").exists()
