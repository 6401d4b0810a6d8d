"""Series selection, header contradictions, injection timing, overrides, geometry and the inspect command."""

from __future__ import annotations

import datetime as dt
import json
import random

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import expected_suv_factor, write_series
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from LesionResponseLib.cli_base import EXIT_INPUT
from LesionResponseLib.dicomio import (
    GeometryError,
    PatientSelectionError,
    SuvTagError,
    compute_suv_factor,
    find_timepoints,
    index_folder,
    load_timepoint,
)

SCAN = dt.datetime(2025, 3, 1, 11, 0, 0)


def _edit(path, **tags) -> None:
    ds = pydicom.dcmread(path)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path)


def test_contradictory_weight_within_a_series_names_both_files(tmp_path):
    paths = write_series(tmp_path / "pet")
    _edit(paths[4], PatientWeight="71")
    with pytest.raises(SuvTagError, match=r"IM0004\.dcm: PatientWeight \(0010,1030\) is '71' here but '70\.0' in "
                                          r".*IM0000\.dcm \(same PET series\)"):
        find_timepoints(tmp_path)


def test_contradictory_dose_within_a_series_is_refused(tmp_path):
    paths = write_series(tmp_path / "pet")
    ds = pydicom.dcmread(paths[2])
    ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose = "160000000"
    ds.save_as(paths[2])
    with pytest.raises(SuvTagError, match=r"IM0002\.dcm: RadionuclideTotalDose \(0018,1074\) is '160000000'"):
        find_timepoints(tmp_path)


def test_injection_after_scan_start_is_refused(tmp_path):
    write_series(tmp_path / "pet", injection=SCAN + dt.timedelta(minutes=20))
    with pytest.raises(SuvTagError, match=r"IM0000\.dcm: injection \(RadiopharmaceuticalStartDateTime \(0018,1078\)"
                                          r" → 2025-03-01 11:20:00\) is 20\.0 min after the scan start"):
        find_timepoints(tmp_path)


def test_injection_time_only_after_scan_time_is_not_taken_for_yesterday(tmp_path):
    # 11:30 injection, 11:00 scan: the day before would mean 23.5 h uptake, so it is an error, not midnight
    write_series(tmp_path / "pet", injection=SCAN + dt.timedelta(minutes=30), injection_time_only=True)
    with pytest.raises(SuvTagError, match=r"RadiopharmaceuticalStartTime \(0018,1072\) → 2025-03-01 11:30:00\) is "
                                          r"30\.0 min after the scan start"):
        find_timepoints(tmp_path)


def test_utc_offset_in_injection_datetime_is_ignored_consistently(tmp_path):
    paths = write_series(tmp_path / "pet")
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime = "20250301100000.000000+0100"
        ds.save_as(path)
    assert find_timepoints(tmp_path).timepoints[0].uptake_time_s == pytest.approx(3600)


def test_weight_override_replaces_a_missing_weight_and_loads(tmp_path):
    write_series(tmp_path / "pet", weight=None)
    info = find_timepoints(tmp_path, weight_kg=64.0).timepoints[0]
    assert info.suv_factor == pytest.approx(expected_suv_factor(64.0, 150e6, 3600), rel=1e-6)
    assert load_timepoint(info).pet_suv.GetSize() == (8, 8, 12)


def test_compute_suv_factor_from_plain_datasets_and_sul_warning(tmp_path):
    paths = write_series(tmp_path / "pet", height=None, dose_bq=200e6, weight=90.0)
    result = compute_suv_factor([pydicom.dcmread(p, stop_before_pixels=True) for p in paths])
    assert result.suv_factor == pytest.approx(expected_suv_factor(90.0, 200e6, 3600), rel=1e-9)
    assert result.decayed_activity_bq == pytest.approx(200e6 * 2 ** (-3600 / 4062.6), rel=1e-9)
    assert result.stored_values == "Bq/mL decay-corrected to the scan start" and result.sul_factor is None
    assert "SUL (lean body mass) not computed: PatientSize (0010,1020) missing" in result.warnings


def test_gml_without_dose_keeps_voxels_and_reports_unknown_factor(tmp_path):
    write_series(tmp_path / "pet", units="GML", dose_bq=None)
    info = find_timepoints(tmp_path).timepoints[0]
    assert info.suv_method == "GML" and np.isnan(info.suv_factor)
    assert any("suv_factor per Bq/mL unknown" in w and "RadionuclideTotalDose (0018,1074)" in w for w in info.warnings)
    assert sitk.GetArrayFromImage(load_timepoint(info).pet_suv).max() == pytest.approx(12770.0, rel=1e-3)


def test_philips_private_block_anywhere_and_missing_activity_scale(tmp_path):
    study = generate_uid()
    private = {(0x7053, "Philips PET Private Group"): {0x00: ("DS", "0.0021")}}
    paths = write_series(tmp_path / "pet", units="CNTS", private=private, study_uid=study)
    for path in paths:  # move the block from (7053,10xx) to (7053,12xx) behind another creator
        ds = pydicom.dcmread(path)
        del ds[0x70530010], ds[0x70531000]
        ds.add_new(0x70530010, "LO", "OTHER CREATOR")
        ds.add_new(0x70530012, "LO", "Philips PET Private Group")
        ds.add_new(0x70531200, "DS", "0.0021")
        ds.save_as(path)
    info = find_timepoints(tmp_path).timepoints[0]
    assert info.suv_method == "CNTS/Philips"
    assert info.suv_factor == pytest.approx(expected_suv_factor(70, 150e6, 3600), rel=1e-6)
    assert any("(7053,1009) missing" in w for w in info.warnings)
    assert sitk.GetArrayFromImage(load_timepoint(info).pet_suv).max() == pytest.approx(12770.0 * 0.0021, rel=1e-3)


def test_several_corrected_pet_choose_most_slices_and_pair_ct_of_another_study(tmp_path):
    study, frame = generate_uid(), generate_uid()
    write_series(tmp_path / "short", study_uid=study, for_uid=frame, n_slices=10)
    write_series(tmp_path / "long", study_uid=study, for_uid=frame, n_slices=14)
    write_series(tmp_path / "ct", modality="CT", for_uid=frame, values=np.zeros((14, 8, 8)))  # own study
    inventory = find_timepoints(tmp_path)
    info = inventory.timepoints[0]
    assert len(info.pet_files) == 14 and all("/long/" in f for f in info.pet_files)
    assert info.ct_files and any("CT taken from another study" in w for w in info.warnings)
    [ignored] = inventory.ignored
    assert ignored.folder.endswith("short") and ignored.reason.startswith("another corrected PET was chosen")
    assert "most slices" in ignored.reason and ignored.n_files == 10


def test_pet_without_ct_and_other_modalities_are_reported(tmp_path):
    study = generate_uid()
    write_series(tmp_path / "pet", study_uid=study)
    sr = Dataset()
    sr.SOPClassUID, sr.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.33", generate_uid()
    sr.Modality, sr.PatientID, sr.PatientName, sr.StudyInstanceUID = "SR", "P1", "Test^P1", study
    sr.SeriesInstanceUID, sr.SeriesDescription = generate_uid(), "Dose report"
    sr.save_as(tmp_path / "sr.dcm", implicit_vr=True, little_endian=True)
    inventory = find_timepoints(tmp_path)
    info = inventory.timepoints[0]
    assert info.ct_series_instance_uid is None and info.ct_files == []
    assert "no usable CT shares the PET's FrameOfReferenceUID (0020,0052): PET only" in info.warnings
    assert [(i.modality, i.description, i.reason) for i in inventory.ignored] == [
        ("SR", "Dose report", "modality SR is neither PET nor CT")]


def test_unknown_patient_lists_the_present_ones(tmp_path):
    write_series(tmp_path / "a", patient_id="ALPHA")
    with pytest.raises(PatientSelectionError, match=r"patient 'ZULU' not found; present: ALPHA 'Test\^ALPHA' "
                                                    r"\(1 studies, 12 files\)"):
        find_timepoints(tmp_path, patient="ZULU")


def test_unsorted_shuffled_files_load_in_patient_order(tmp_path):
    values = np.fromfunction(lambda z, y, x: 100.0 * (z + 1) + x + 10 * y, (12, 8, 8))
    paths = write_series(tmp_path / "pet", values=values)
    order = list(range(12))
    random.Random(3).shuffle(order)
    for k, path in zip(order, paths, strict=True):
        _edit(path, InstanceNumber=k + 1)
        path.rename(path.with_name(f"x{k:02d}_{path.name}"))
    info = find_timepoints(tmp_path).timepoints[0]
    pet = load_timepoint(info).pet_suv
    suv = sitk.GetArrayFromImage(pet) / info.suv_factor
    assert np.allclose(suv, values[::-1], rtol=2e-4)  # file k is at z = −4k: increasing z = reversed values
    assert pet.GetOrigin() == pytest.approx((0.0, 0.0, -44.0)) and pet.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    # a physical point maps to the slice written at that z
    index = pet.TransformPhysicalPointToIndex((4.0, 8.0, -20.0))
    assert suv[index[2], index[1], index[0]] == pytest.approx(values[5, 2, 1], rel=2e-4)


def test_ct_is_int16_hounsfield_with_its_own_geometry(tmp_path):
    frame = generate_uid()
    hu = np.fromfunction(lambda z, y, x: -1000.0 + 100 * z + x, (12, 8, 8))
    write_series(tmp_path / "pet", for_uid=frame)
    write_series(tmp_path / "ct", modality="CT", for_uid=frame, values=hu, spacing_z=2.0)
    ct = load_timepoint(find_timepoints(tmp_path).timepoints[0]).ct
    assert ct.GetPixelID() == sitk.sitkInt16 and ct.GetSpacing() == (4.0, 4.0, 2.0)
    assert np.array_equal(sitk.GetArrayFromImage(ct), hu[::-1].astype(np.int16))


def test_inspect_cli_tables_and_errors(tmp_path):
    from typer.testing import CliRunner

    from LesionResponseLib.cli import app

    write_series(tmp_path / "a", patient_id="ALPHA")
    write_series(tmp_path / "b", patient_id="BRAVO", weight=None)
    runner = CliRunner()
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == EXIT_INPUT and "2 patients in one folder" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["inspect", str(tmp_path), "--patient", "BRAVO"])
    assert result.exit_code == 0, result.output
    assert "Ignored series" in result.output and "only BRAVO was analysed" in result.output
    result = runner.invoke(app, ["inspect", str(tmp_path), "--patient", "BRAVO", "--json"])
    [ignored] = json.loads(result.stdout)["ignored"]  # listed with the reason, not a crash
    assert ignored["reason"].startswith("SUV cannot be computed: ") and "PatientWeight (0010,1030)" in ignored["reason"]
    result = runner.invoke(app, ["inspect", str(tmp_path), "--patient", "BRAVO", "--weight-kg", "80", "--json"])
    data = json.loads(result.stdout)
    assert data["timepoints"][0]["suv_factor"] == pytest.approx(expected_suv_factor(80, 150e6, 3600), rel=1e-6)
    assert [p["patient_id"] for p in data["patients"]] == ["ALPHA", "BRAVO"] and data["n_files"] == 24


def test_index_reads_headers_only_and_skips_non_dicom(tmp_path):
    write_series(tmp_path / "pet")
    (tmp_path / "README").write_text("exported by PACS")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n")
    index = index_folder(tmp_path)
    [patient] = index.patients.values()
    [study] = patient.studies.values()
    [series] = study.series.values()
    assert len(series.instances) == 12 and "PixelData" not in series.first.header
    assert sorted(p.rsplit("/", 1)[-1] for p in index.non_dicom) == ["README", "image.png"]
    assert index.unreadable == []


def test_corrupt_file_of_unknown_series_in_a_flat_folder_blames_no_series(tmp_path):
    frame = generate_uid()
    flat = tmp_path / "flat"
    flat.mkdir()
    for name, kw in (("pet", {}), ("ct", {"modality": "CT", "values": np.zeros((12, 8, 8))})):
        for path in write_series(tmp_path / name, for_uid=frame, **kw):
            path.rename(flat / f"{name}_{path.name}")
    damaged = flat / "pet_IM0003.dcm"
    damaged.write_bytes(damaged.read_bytes()[:200])  # SeriesInstanceUID lost: PET or CT?
    with pytest.raises(GeometryError, match=r"8\.00 mm between pet_IM0004\.dcm and pet_IM0002\.dcm"):
        find_timepoints(flat)  # the gap is caught from the headers, naming its neighbours
    inventory = find_timepoints(flat, strict=False)
    assert inventory.unreadable[0][0] == str(damaged)
    assert inventory.warnings[0].startswith(f"1 unreadable DICOM file(s), e.g. {damaged}")
    assert inventory.timepoints == [] and inventory.ignored[0].reason.startswith("irregular geometry: ")


def test_tilted_ct_is_paired_and_its_tilt_recorded(tmp_path):
    frame, study = generate_uid(), generate_uid()
    write_series(tmp_path / "pet", for_uid=frame, study_uid=study)
    write_series(tmp_path / "ct", modality="CT", for_uid=frame, study_uid=study, values=np.zeros((12, 8, 8)),
                 tilt_mm_per_slice=0.7)  # atan(0.7 / 4) ≈ 9.9°
    inventory = find_timepoints(tmp_path)
    info = inventory.timepoints[0]
    assert len(info.ct_files) == 12 and inventory.ignored == []
    assert info.ct_tilt_deg == pytest.approx(9.93, abs=0.01) and info.pet_slice_deviation_mm == 0
    assert info.geometry_notes == ["CT: gantry tilt 9.9° (7.7 mm in-plane drift): resampled to the true slice "
                                   "positions on an untilted regular grid"]


def test_uncalibratable_second_pet_is_reported_not_fatal(tmp_path):
    study, frame = generate_uid(), generate_uid()
    write_series(tmp_path / "good", study_uid=study, for_uid=frame)
    write_series(tmp_path / "nodose", study_uid=study, for_uid=frame, dose_bq=None, n_slices=14)
    inventory = find_timepoints(tmp_path)
    assert all("/good/" in f for f in inventory.timepoints[0].pet_files)
    [ignored] = inventory.ignored
    assert ignored.folder.endswith("nodose")
    assert ignored.reason.startswith("SUV cannot be computed: ") and "RadionuclideTotalDose (0018,1074)" in ignored.reason
