"""The synthetic patient as real DICOM: dciodvfy validity, vendor flavours, read-back geometry and SUV."""

from __future__ import annotations

import subprocess

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import require_tool

from LesionResponseLib.phantom import VENDORS, load_truth, simulate_patient

SLAB = {"axial_extent_mm": 160}


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


@pytest.mark.slow
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


@pytest.mark.parametrize("vendor", VENDORS)
def test_vendor_flavour_tags(make_phantom, vendor):
    folder = make_phantom(seed=2, timepoints=2, vendor=vendor, **SLAB)
    truth = load_truth(folder)
    files = [sorted((folder / tp["folder"] / "PET_AC").iterdir())[0] for tp in truth["timepoints"]]
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    for ds, tp in zip(datasets, truth["timepoints"], strict=True):
        units = {"philips": "CNTS", "gml": "GML"}.get(vendor, "BQML")
        assert ds.Units == units
        assert ds.DecayCorrection == ("ADMIN" if vendor == "siemens-admin" else "START")
        assert "ATTN" in ds.CorrectedImage and "DECY" in ds.CorrectedImage
        isotope = ds.RadiopharmaceuticalInformationSequence[0]
        assert float(isotope.RadionuclideTotalDose) == pytest.approx(tp["injected_activity_bq"], rel=1e-5)
        assert float(isotope.RadionuclideHalfLife) == pytest.approx(4062.6)
        assert isotope.RadionuclideCodeSequence[0].CodeMeaning == "^68^Gallium"
        series = pydicom.valuerep.DT(ds.SeriesDate + ds.SeriesTime)
        acquired = pydicom.valuerep.DT(ds.AcquisitionDate + ds.AcquisitionTime)
        if vendor == "philips":
            block = ds.private_block(0x7053, "Philips PET Private Group")
            assert float(block[0x00].value) / float(block[0x09].value) == pytest.approx(tp["suv_factor"], rel=1e-6)
        if vendor == "ge":
            assert series > acquired  # reprocessed series: SeriesTime is not the scan start
            scan = ds.private_block(0x0009, "GEMS_PETD_01")[0x0D].value
            assert scan.startswith(tp["scan_datetime"].replace("-", "").replace("T", "").replace(":", "")[:14])
        else:
            assert series <= acquired
    # patient module consistent across studies; one study and frame of reference per time point
    assert len({(ds.PatientID, str(ds.PatientName), ds.PatientBirthDate, ds.PatientSex) for ds in datasets}) == 1
    assert len({ds.StudyInstanceUID for ds in datasets}) == len({ds.FrameOfReferenceUID for ds in datasets}) == 2
