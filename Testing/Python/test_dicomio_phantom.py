"""Every phantom vendor flavour read back against truth.json, pydicom's decoding and SimpleITK's series reader."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from LesionResponseLib.dicomio import find_timepoints, load_timepoint
from LesionResponseLib.phantom import VENDORS, load_truth
from LesionResponseLib.phantom.dicom_writer import PHILIPS_ACTIVITY_SCALE

SLAB = {"axial_extent_mm": 160}  # small axial slab: 41 slices per series, shared with test_phantom's cache
METHOD = {"siemens": "BQML/START", "siemens-admin": "BQML/ADMIN", "philips": "CNTS/Philips",
          "ge": "BQML/GE-reprocessed", "gml": "GML"}
IGNORED = {"not attenuation-corrected (CorrectedImage lacks ATTN)", "localizer (topogram)"}


def _itk_series(files: list[str]) -> sitk.Image:
    """The series as SimpleITK/GDCM reads it (GDCM's own slice sort, per-file rescale)."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(reader.GetGDCMSeriesFileNames(str(files[0]).rsplit("/", 1)[0])))
    return reader.Execute()


def _pydicom_values(files: list[str]) -> np.ndarray:
    """Rescaled stored values decoded by pydicom, slices in increasing position along the normal."""
    slices = [pydicom.dcmread(f) for f in files]
    normal = np.cross(*np.reshape(np.array(slices[0].ImageOrientationPatient, float), (2, 3)))
    slices.sort(key=lambda ds: float(np.dot(np.array(ds.ImagePositionPatient, float), normal)))
    return np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in slices])


def _same_geometry(a: sitk.Image, b: sitk.Image) -> None:
    assert a.GetSize() == b.GetSize()
    assert np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3)
    assert np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-4)
    assert np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)


@pytest.mark.parametrize("vendor", VENDORS)
def test_timepoints_and_suv_factor_match_truth(make_phantom, vendor):
    folder = make_phantom(seed=2, timepoints=2, vendor=vendor, **SLAB)
    truth = load_truth(folder)
    inventory = find_timepoints(folder)
    assert {i.reason for i in inventory.ignored} == IGNORED and len(inventory.ignored) == 4
    assert [p.patient_id for p in inventory.patients] == [truth["patient_id"]]
    assert len(inventory.timepoints) == truth["n_timepoints"]
    for info, tp in zip(inventory.timepoints, truth["timepoints"], strict=True):
        assert info.suv_method == METHOD[vendor]
        assert info.suv_factor == pytest.approx(tp["suv_factor"], rel=1e-3)
        assert info.uptake_time_s == pytest.approx(tp["uptake_time_s"], abs=1)
        assert info.weight_kg == pytest.approx(tp["weight_kg"], rel=1e-3)
        assert info.injected_activity_bq == pytest.approx(tp["injected_activity_bq"], rel=1e-3)
        assert (info.study_instance_uid, info.pet_series_instance_uid, info.ct_series_instance_uid) == \
            (tp["study_instance_uid"], tp["pet_series_instance_uid"], tp["ct_series_instance_uid"])
        assert info.study_date == tp["study_date"] and info.sul_factor < info.suv_factor


@pytest.mark.parametrize("vendor", VENDORS)
def test_loaded_volumes_have_truth_geometry_and_simpleitk_values(make_phantom, vendor):
    folder = make_phantom(seed=2, timepoints=2, vendor=vendor, **SLAB)
    truth = load_truth(folder)
    info = find_timepoints(folder).timepoints[1]
    loaded = load_timepoint(info)
    assert loaded.pet_suv.GetPixelID() == sitk.sitkFloat32
    _same_geometry(loaded.pet_suv, sitk.ReadImage(str(folder / truth["timepoints"][1]["lesion_labels"])))
    itk_ct = _itk_series(info.ct_files)
    _same_geometry(loaded.ct, itk_ct)
    assert np.array_equal(sitk.GetArrayFromImage(loaded.ct), sitk.GetArrayFromImage(itk_ct))
    itk_pet = _pydicom_values(info.pet_files)  # an independent decoder: pydicom, each slice's own rescale
    ours = sitk.GetArrayFromImage(loaded.pet_suv)
    to_suv = {"gml": 1.0, "siemens-admin": info.weight_kg * 1e3 / info.injected_activity_bq,  # ADMIN: no decay
              "philips": info.suv_factor * PHILIPS_ACTIVITY_SCALE}.get(vendor, info.suv_factor)  # counts → Bq/mL
    assert np.abs(ours - itk_pet * to_suv).max() <= 1e-5 * ours.max()
    assert 10 < ours.max() < 200  # lesions and spleen are in the DOTATATE SUV range (DOMAIN.md §5)


def test_inspect_json_reports_truth(make_phantom):
    from typer.testing import CliRunner

    from LesionResponseLib.cli import app

    folder = make_phantom(seed=2, timepoints=2, vendor="ge", **SLAB)
    truth = load_truth(folder)
    result = CliRunner().invoke(app, ["inspect", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [t["suv_factor"] for t in data["timepoints"]] == pytest.approx(
        [t["suv_factor"] for t in truth["timepoints"]], rel=1e-3)
    assert {i["reason"] for i in data["ignored"]} == IGNORED
    pet_uid = truth["timepoints"][0]["pet_series_instance_uid"]
    assert data["series"][pet_uid]["description"] and data["series"][pet_uid]["n_files"] == 41
    table = CliRunner().invoke(app, ["inspect", str(folder)])
    assert table.exit_code == 0 and "BQML/GE-reprocessed" in table.output and "localizer (topogram)" in table.output
