"""SUV and selection on hand-made DICOM edge cases: analytic SUV factors and the exact error messages."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_factory import HALF_LIFE, expected_suv_factor, write_series

from LesionResponseLib.dicomio import (
    CorruptFileError,
    DicomInputError,
    GeometryError,
    find_timepoints,
    index_folder,
    load_timepoint,
)

SCAN = dt.datetime(2025, 3, 1, 11, 0, 0)
INJ = dt.datetime(2025, 3, 1, 10, 0, 0)


def _factor(folder, **kw):
    return find_timepoints(folder, **kw).timepoints[0]


def test_bqml_start_suv_factor_is_analytic(tmp_path):
    write_series(tmp_path / "pet", weight=82.5, dose_bq=171e6)
    info = _factor(tmp_path)
    assert info.suv_method == "BQML/START"
    assert info.suv_factor == pytest.approx(expected_suv_factor(82.5, 171e6, 3600), rel=1e-3)
    assert info.uptake_time_s == pytest.approx(3600)


def test_per_slice_rescale_gives_the_stored_activity(tmp_path):
    values = np.fromfunction(lambda z, y, x: 50.0 * (z + 1) ** 2 + x, (12, 8, 8))  # slope differs per slice
    write_series(tmp_path / "pet", values=values)
    info = _factor(tmp_path)
    pet = load_timepoint(info).pet_suv
    loaded = sitk.GetArrayFromImage(pet)  # z ascending: file k is at z = -4k, so reverse
    assert np.allclose(loaded[::-1] / info.suv_factor, values, rtol=2e-4, atol=0.05)
    assert pet.GetSpacing() == (4.0, 4.0, 4.0)
    assert pet.GetOrigin()[2] == pytest.approx(-44.0)


def test_injection_before_midnight_scan_after(tmp_path):
    scan = dt.datetime(2025, 3, 2, 0, 20, 0)
    write_series(tmp_path / "pet", scan=scan, injection=dt.datetime(2025, 3, 1, 23, 30, 0), injection_time_only=True)
    info = _factor(tmp_path)
    assert info.uptake_time_s == pytest.approx(50 * 60)
    assert info.suv_factor == pytest.approx(expected_suv_factor(70, 150e6, 3000), rel=1e-3)


def test_admin_decay_correction_uses_undecayed_dose_on_voxels(tmp_path):
    write_series(tmp_path / "pet", decay="ADMIN")
    info = _factor(tmp_path)
    assert info.suv_method == "BQML/ADMIN"
    # the reported factor is per Bq/mL at scan start; voxels (corrected to injection) use weight/dose
    assert info.suv_factor == pytest.approx(expected_suv_factor(70, 150e6, 3600), rel=1e-3)
    suv = sitk.GetArrayFromImage(load_timepoint(info).pet_suv)
    assert suv.max() == pytest.approx(1000.0 * (12 + 0.7 + 0.07) * 70e3 / 150e6, rel=1e-3)


def test_ge_reprocessed_series_uses_private_scan_datetime(tmp_path):
    private = {(0x0009, "GEMS_PETD_01"): {0x0D: ("DT", "20250301110000.00")}}
    write_series(tmp_path / "pet", series_time=SCAN + dt.timedelta(hours=3), private=private)
    info = _factor(tmp_path)
    assert info.suv_method == "BQML/GE-reprocessed"
    assert info.suv_factor == pytest.approx(expected_suv_factor(70, 150e6, 3600), rel=1e-3)


def test_late_series_time_without_private_falls_back_to_acquisition_time(tmp_path):
    write_series(tmp_path / "pet", series_time=SCAN + dt.timedelta(hours=3))
    info = _factor(tmp_path)
    assert info.uptake_time_s == pytest.approx(3600)
    assert any("used the earliest AcquisitionDate/AcquisitionTime as scan start" in w for w in info.warnings)


def test_philips_cnts_uses_private_scale_factors(tmp_path):
    sf, acs = 2.5e-3, 3.7
    private = {(0x7053, "Philips PET Private Group"): {0x00: ("DS", f"{sf}"), 0x09: ("DS", f"{acs}")}}
    write_series(tmp_path / "pet", units="CNTS", private=private)
    info = _factor(tmp_path)
    assert info.suv_method == "CNTS/Philips"
    assert info.suv_factor == pytest.approx(sf / acs, rel=1e-6)
    suv = sitk.GetArrayFromImage(load_timepoint(info).pet_suv)
    assert suv.max() == pytest.approx(1000.0 * 12.77 * sf, rel=1e-3)


def test_cnts_without_private_tags_is_refused(tmp_path):
    write_series(tmp_path / "pet", units="CNTS")
    with pytest.raises(DicomInputError, match=r"IM0000\.dcm: PET Units \(0054,1001\) CNTS without the Philips "
                                              r"private SUV Scale Factor \(7053,1000\)"):
        find_timepoints(tmp_path)


def test_gml_is_already_suv(tmp_path):
    write_series(tmp_path / "pet", units="GML")
    info = _factor(tmp_path)
    assert info.suv_method == "GML"
    assert sitk.GetArrayFromImage(load_timepoint(info).pet_suv).max() == pytest.approx(12770.0, rel=1e-3)


def test_missing_weight_names_file_and_tag(tmp_path):
    write_series(tmp_path / "pet", weight=None)
    with pytest.raises(DicomInputError, match=r"IM0000\.dcm: missing or zero PatientWeight \(0010,1030\).*dcmodify"):
        find_timepoints(tmp_path)


def test_missing_half_life_uses_nuclide_code_as_an_assumption(tmp_path):
    write_series(tmp_path / "pet", half_life=None)
    info = _factor(tmp_path)
    assert info.suv_factor == pytest.approx(expected_suv_factor(70, 150e6, 3600, HALF_LIFE), rel=1e-3)
    assert any(a.startswith("RadionuclideHalfLife (0018,1075) missing: used 4062.6 s") for a in info.suv_assumptions)


def test_missing_half_life_and_code_is_refused(tmp_path):
    write_series(tmp_path / "pet", half_life=None, radionuclide_code=None)
    with pytest.raises(DicomInputError, match=r"missing RadionuclideHalfLife \(0018,1075\)"):
        find_timepoints(tmp_path)


def test_dose_neither_bq_nor_mbq_is_refused(tmp_path):
    write_series(tmp_path / "pet", dose_bq=50000.0)  # 50 kBq or 50 GBq: neither is a diagnostic dose
    with pytest.raises(DicomInputError, match=r"IM0000\.dcm: RadionuclideTotalDose \(0018,1074\) 50000 is "
                                              r"implausible both in Bq .* and in MBq"):
        find_timepoints(tmp_path)


def test_no_decay_correction_is_corrected_over_the_frame_without_opt_in(tmp_path):
    write_series(tmp_path / "pet", decay="NONE", corrected=("ATTN",))
    info = find_timepoints(tmp_path, strict=True).timepoints[0]
    assert info.suv_method == "BQML/NONE-corrected"
    # all slices start at SCAN with 180 s frames: mean over the frame → start, λT / (1 − e^(−λT))
    lam = np.log(2) / HALF_LIFE
    suv = sitk.GetArrayFromImage(load_timepoint(info).pet_suv)
    assert suv.max() == pytest.approx(12770.0 * info.suv_factor * lam * 180 / -np.expm1(-lam * 180), rel=1e-4)
    assert any(a.startswith("DecayCorrection NONE: each file decay-corrected") for a in info.suv_assumptions)


def test_decay_correction_none_contradicting_corrected_image_is_refused(tmp_path):
    write_series(tmp_path / "pet", decay="NONE")  # CorrectedImage claims DECY but DecayCorrection says NONE
    with pytest.raises(DicomInputError, match=r"IM0000\.dcm: DecayCorrection \(0054,1102\) is NONE but "
                                              r"CorrectedImage \(0028,0051\) lists DECY"):
        find_timepoints(tmp_path)


def test_two_patients_listed_and_choosable(tmp_path):
    write_series(tmp_path / "a", patient_id="ALPHA")
    write_series(tmp_path / "b", patient_id="BRAVO")
    with pytest.raises(DicomInputError, match=r"2 patients in one folder: ALPHA .*; BRAVO .*--patient"):
        find_timepoints(tmp_path)
    assert find_timepoints(tmp_path, patient="BRAVO").patient_id == "BRAVO"


def test_same_id_different_birth_dates_is_refused(tmp_path):
    write_series(tmp_path / "a", patient_id="SAME", birth="19500101")
    write_series(tmp_path / "b", patient_id="SAME", birth="19700101", scan=SCAN + dt.timedelta(days=60),
                 injection=INJ + dt.timedelta(days=60))
    with pytest.raises(DicomInputError, match="files of different patients share an ID"):
        find_timepoints(tmp_path)


@pytest.mark.parametrize("keep_bytes", [200, 1000])  # truncated in the file meta / after SeriesInstanceUID
def test_corrupt_file_is_listed_and_its_series_refused_naming_it(tmp_path, keep_bytes):
    paths = write_series(tmp_path / "pet")
    paths[5].write_bytes(paths[5].read_bytes()[:keep_bytes])
    (tmp_path / "notes.txt").write_text("report")
    index = index_folder(tmp_path)
    assert [p for p, _ in index.unreadable] == [str(paths[5])]
    assert index.non_dicom == [str(tmp_path / "notes.txt")]
    with pytest.raises(CorruptFileError, match=r"IM0005\.dcm: 1 unreadable file\(s\) belong to PT 'PT test'"):
        find_timepoints(index)
    inventory = find_timepoints(index, strict=False)
    assert inventory.timepoints == [] and "IM0005.dcm" in inventory.ignored[0].reason


def test_truncated_pixel_data_fails_the_load_naming_the_file(tmp_path):
    paths = write_series(tmp_path / "pet")
    paths[7].write_bytes(paths[7].read_bytes()[:-40])  # header intact, pixel data cut short
    info = find_timepoints(tmp_path).timepoints[0]
    with pytest.raises(CorruptFileError, match=r"IM0007\.dcm: cannot read pixel data.*re-export the series"):
        load_timepoint(info)


def test_missing_slice_file_is_a_gap_naming_the_neighbours(tmp_path):
    paths = write_series(tmp_path / "pet")
    paths[5].unlink()
    with pytest.raises(GeometryError, match=r"non-uniform slice spacing \(4\.00–8\.00 mm, typical 4\.00 mm\): "
                                            r"8\.00 mm between IM0006\.dcm and IM0004\.dcm"):
        find_timepoints(tmp_path)


def test_drift_beyond_any_gantry_tilt_is_refused(tmp_path):
    write_series(tmp_path / "ct", modality="CT", tilt_mm_per_slice=4.0, values=np.zeros((12, 8, 8)))  # 45°
    from LesionResponseLib.dicomio import load_series

    with pytest.raises(DicomInputError, match="drift 45° off the normal .* more than any gantry tilt"):
        load_series([str(p) for p in sorted((tmp_path / "ct").iterdir())])


def test_ignored_series_have_reasons_and_ct_is_paired_by_frame_of_reference(tmp_path):
    study, frame = "1.2.3.4.5", "1.2.3.4.6"
    write_series(tmp_path / "pet", study_uid=study, for_uid=frame)
    write_series(tmp_path / "nac", study_uid=study, for_uid=frame, corrected=("DECY",))
    write_series(tmp_path / "ct", modality="CT", study_uid=study, for_uid=frame, values=np.zeros((12, 8, 8)))
    write_series(tmp_path / "ct_other", modality="CT", study_uid=study, values=np.zeros((12, 8, 8)))
    write_series(tmp_path / "topo", modality="CT", study_uid=study, for_uid=frame, n_slices=1,
                 values=np.zeros((1, 8, 8)), image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    inventory = find_timepoints(tmp_path)
    info = inventory.timepoints[0]
    assert info.ct_files and all("/ct/" in f for f in info.ct_files)
    reasons = {i.folder.rsplit("/", 1)[-1]: i.reason for i in inventory.ignored}
    assert reasons == {"nac": "not attenuation-corrected (CorrectedImage lacks ATTN)",
                       "ct_other": "CT of a FrameOfReferenceUID that no chosen PET shares", "topo": "localizer (topogram)"}


def test_timepoints_ordered_by_scan_date_and_empty_folder_error(tmp_path):
    write_series(tmp_path / "late", scan=SCAN + dt.timedelta(days=90), injection=INJ + dt.timedelta(days=90))
    write_series(tmp_path / "early")
    dates = [t.study_date for t in find_timepoints(tmp_path).timepoints]
    assert dates == ["20250301", "20250530"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DicomInputError, match="empty: no DICOM images found"):
        find_timepoints(tmp_path / "empty")


def test_sul_uses_janmahasatian_lean_body_mass(tmp_path):
    write_series(tmp_path / "pet", weight=80.0, height=1.80, sex="F")
    info = _factor(tmp_path)
    bmi = 80 / 1.8**2
    lbm = 9270 * 80 / (8780 + 244 * bmi)
    assert info.sul_factor == pytest.approx(info.suv_factor * lbm / 80, rel=1e-6)


def test_a_relative_input_records_absolute_files_that_load_from_another_directory(tmp_path, monkeypatch):
    """analysis.json keeps ``pet_files``; the export re-reads them, maybe from another working directory."""
    write_series(tmp_path / "patient" / "pet", weight=82.5, dose_bq=171e6)
    monkeypatch.chdir(tmp_path)
    info = _factor("patient")
    assert info.pet_files and all(Path(p).is_absolute() for p in info.pet_files), info.pet_files[:2]
    monkeypatch.chdir(tmp_path / "patient")
    assert load_timepoint(info).pet_suv.GetSize()[2] == len(info.pet_files)
