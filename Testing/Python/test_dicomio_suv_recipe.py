"""Every rule of the SUV recipe (Vácha et al. manual / QIBA) on hand-made series: the loaded SUV *image*.

Each series stores a known SUVbw pattern (background 1.0, a hot block 4.0, a cold block 0.2, as in the manual's
reference objects) converted to what the headers claim, by the formula written out here with literal numbers;
the loaded image must give min 0.2, median 1.0 and max 4.0 within 0.5 %.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_factory import HALF_LIFE, write_series

from LesionResponseLib.cli_base import EXIT_INPUT
from LesionResponseLib.datamodel import TimePointInfo
from LesionResponseLib.dicomio import DicomInputError, SuvTagError, find_timepoints, load_timepoint

SCAN = dt.datetime(2025, 3, 1, 11, 0, 0)
INJ = dt.datetime(2025, 3, 1, 10, 0, 0)
W, H, DOSE = 70.0, 1.75, 150e6  # the factory's defaults: kg, m, Bq
LAM = math.log(2) / HALF_LIFE
BQML_PER_SUV = DOSE * 2 ** (-3600 / HALF_LIFE) / (W * 1000)  # Bq/mL at scan start of SUVbw 1


def pattern() -> np.ndarray:
    """SUVbw of 12 slices of 8×8: background 1.0, 12 hot voxels 4.0, 12 cold voxels 0.2 (median 1.0)."""
    suv = np.ones((12, 8, 8))
    suv[2:5, 2:4, 2:4] = 4.0
    suv[7:10, 5:7, 5:7] = 0.2
    return suv


def assert_pattern(info: TimePointInfo) -> np.ndarray:
    suv = sitk.GetArrayFromImage(load_timepoint(info, with_ct=False).pet_suv).astype(np.float64)
    assert (suv.min(), np.median(suv), suv.max()) == pytest.approx((0.2, 1.0, 4.0), rel=5e-3)
    return suv


def one(folder, **kw) -> TimePointInfo:
    return find_timepoints(folder, **kw).timepoints[0]


def has(notes: list[str], text: str) -> bool:
    return any(text in n for n in notes)


# ---------------------------------------------------------------- Units GML / CM2ML and SUVType


@pytest.mark.parametrize("suv_type", [None, "BW"])
def test_gml_bw_or_absent_is_suvbw(tmp_path, suv_type):
    tags = {"SUVType": suv_type} if suv_type else {}
    write_series(tmp_path, units="GML", values=pattern(), slice_tags=lambda k, ds: ds.update(tags))
    info = one(tmp_path)
    assert info.suv_method == "GML"
    assert_pattern(info)
    assert has(info.suv_assumptions, "SUVType (0054,1006) absent") == (suv_type is None)


@pytest.mark.parametrize(("suv_type", "sex", "mass_kg"), [
    ("LBM", "M", 1.10 * 70 - 120 * (70 / 175) ** 2),  # Morgan: 57.8 kg
    ("LBM", "F", 1.07 * 70 - 148 * (70 / 175) ** 2),  # 51.22 kg
    ("LBMJAMES128", "M", 1.10 * 70 - 128 * (70 / 175) ** 2),  # James: 56.52 kg
    ("LBMJAMES128", "F", 1.07 * 70 - 148 * (70 / 175) ** 2),
    ("LBMJANMA", "M", 9270 * 70 / (6680 + 216 * 70 / 1.75**2)),  # Janmahasatian: 55.86 kg
    ("LBMJANMA", "F", 9270 * 70 / (8780 + 244 * 70 / 1.75**2)),  # 45.47 kg
    ("IBW", "M", 48.0 + 1.06 * (175 - 152)),  # 72.38 kg
    ("IBW", "F", 45.5 + 0.91 * (175 - 152)),  # 66.43 kg
    ("IBW", "O", (48.0 + 1.06 * 23 + 45.5 + 0.91 * 23) / 2),  # other: mean of both, 69.405 kg
    ("LBMJAMES128", "O", (1.10 * 70 - 128 * 0.16 + 1.07 * 70 - 148 * 0.16) / 2),
])
def test_gml_suv_type_is_back_computed_to_suvbw(tmp_path, suv_type, sex, mass_kg):
    stored = pattern() * mass_kg / W  # SUV_type = C · mass / D = SUVbw · mass / W
    write_series(tmp_path, units="GML", values=stored, sex=sex, slice_tags=lambda k, ds: setattr(ds, "SUVType",
                                                                                                  suv_type))
    info = one(tmp_path)
    assert info.suv_method == f"GML/{suv_type}" and f"{mass_kg:.2f} kg" in info.suv_normalisation
    assert_pattern(info)
    assert has(info.suv_assumptions, f"PatientSex O: {suv_type} is the mean") == (sex == "O")


def test_cm2ml_is_suvbsa_by_du_bois(tmp_path):
    bsa_m2 = 0.007184 * 175**0.725 * 70**0.425  # 1.8481 m²
    stored = pattern() * bsa_m2 * 1e4 / (W * 1000)  # SUVbsa = C · BSA (cm²) / D
    write_series(tmp_path, units="CM2ML", values=stored, slice_tags=lambda k, ds: setattr(ds, "SUVType", "BSA"))
    info = one(tmp_path)
    assert info.suv_method == "CM2ML/BSA" and f"{bsa_m2:.4f} m²" in info.suv_normalisation
    assert_pattern(info)


@pytest.mark.parametrize(("change", "message"), [
    ({"height": None}, r"PatientSize \(0010,1020\) is None \(missing or not a height in m\): Units GML SUVType "
                       r"LBMJAMES128 needs the patient's height"),
    ({"height": 175.0}, r"PatientSize \(0010,1020\) is '175\.0' \(missing or not a height in m\)"),
    ({"sex": ""}, r"PatientSex \(0010,0040\) is '' \(missing or not M/F/O\): SUVType LBMJAMES128 has sex-specific"),
])
def test_normalisation_without_height_or_sex_names_the_tag(tmp_path, change, message):
    write_series(tmp_path, units="GML", values=pattern(), slice_tags=lambda k, ds: setattr(ds, "SUVType",
                                                                                          "LBMJAMES128"), **change)
    with pytest.raises(SuvTagError, match=r"IM0000\.dcm: " + message):
        find_timepoints(tmp_path)


@pytest.mark.parametrize(("units", "suv_type"), [("GML", "BSA"), ("GML", "XYZ"), ("CM2ML", "LBM")])
def test_suv_type_contradicting_units_is_refused(tmp_path, units, suv_type):
    write_series(tmp_path, units=units, values=pattern(), slice_tags=lambda k, ds: setattr(ds, "SUVType", suv_type))
    with pytest.raises(SuvTagError, match=rf"SUVType \(0054,1006\) '{suv_type}' contradicts Units \(0054,1001\) "
                                          rf"{units}"):
        find_timepoints(tmp_path)


# ---------------------------------------------------------------- Units CNTS (Philips)


def test_cnts_suv_scale_factor_without_private_creator(tmp_path):
    scale = 2.5e-3  # SUVbw per count
    write_series(tmp_path, units="CNTS", values=pattern() / scale, private={(0x7053, None): {0x00: ("DS", "0.0025")}})
    info = one(tmp_path)
    assert info.suv_method == "CNTS/Philips"
    assert_pattern(info)
    assert has(info.suv_assumptions, "(7053,1000) found without its private creator (7053,0010)")


@pytest.mark.parametrize("creator", ["Philips PET Private Group", None])
def test_cnts_activity_concentration_factor_then_bqml(tmp_path, creator):
    activity = 3.7  # Bq/mL per count
    write_series(tmp_path, units="CNTS", values=pattern() * BQML_PER_SUV / activity,
                 private={(0x7053, creator): {0x09: ("DS", "3.7")}})
    info = one(tmp_path)
    assert info.suv_method == "CNTS/Philips-activity"
    assert_pattern(info)
    assert has(info.suv_assumptions, "(7053,1009) found without its private creator") == (creator is None)


def test_cnts_factor_in_a_block_claimed_by_another_creator_is_not_taken(tmp_path):
    def other_creator(k, ds):
        ds.add_new(0x70530010, "LO", "OTHER VENDOR")
        ds.add_new(0x70531000, "DS", "0.0025")
    write_series(tmp_path, units="CNTS", values=pattern() / 2.5e-3, slice_tags=other_creator)
    with pytest.raises(SuvTagError, match=r"CNTS without the Philips private SUV Scale Factor \(7053,1000\) nor the "
                                          r"Activity Concentration Scale Factor \(7053,1009\)"):
        find_timepoints(tmp_path)


# ---------------------------------------------------------------- dose, weight, half-life, intercept


def test_dose_in_mbq_is_converted_and_recorded(tmp_path):
    write_series(tmp_path, values=pattern() * BQML_PER_SUV, dose_bq=150.0)
    info = one(tmp_path)
    assert info.injected_activity_bq == pytest.approx(150e6)
    assert_pattern(info)
    assert has(info.suv_assumptions, "RadionuclideTotalDose (0018,1074) 150 is far below any plausible dose in Bq: "
                                     "read as MBq")


def test_weight_in_grams_is_converted_and_recorded(tmp_path):
    write_series(tmp_path, values=pattern() * BQML_PER_SUV, weight=70000.0)
    info = one(tmp_path)
    assert info.weight_kg == pytest.approx(70.0)
    assert_pattern(info)
    assert has(info.suv_assumptions, "PatientWeight (0010,1030) 70000 > 1000 cannot be kg: read as grams, 70 kg")


def test_missing_weight_is_an_error_unless_given(tmp_path):
    write_series(tmp_path, values=pattern() * BQML_PER_SUV, weight=None)
    with pytest.raises(SuvTagError, match=r"missing or zero PatientWeight \(0010,1030\).*--weight-kg KG"):
        find_timepoints(tmp_path)
    info = one(tmp_path, weight_kg=70.0)
    assert_pattern(info)
    assert has(info.suv_assumptions, "weight 70 kg given by the user (--weight-kg)")


@pytest.mark.parametrize(("code", "scheme", "meaning", "half_life_s"), [
    ("35337001", "SCT", "^68^Gallium", 67.71 * 60),
    ("C-131A3", "SRT", "^68^Gallium", 67.71 * 60),  # legacy SNOMED RT code of the same concept
    ("77004003", "SCT", "^18^Fluorine", 109.77 * 60),
    ("C-111A1", "SRT", "^18^Fluorine", 109.77 * 60),
    ("3932008", "SCT", "^64^Copper", 12.701 * 3600),
    ("447553000", "SCT", "^177^Lutetium", 6.647 * 86400),
    ("63360001", "SCT", "^89^Zirconium", 78.41 * 3600),
])
def test_missing_half_life_comes_from_the_nuclide_code(tmp_path, code, scheme, meaning, half_life_s):
    bqml_per_suv = DOSE * 2 ** (-3600 / half_life_s) / (W * 1000)
    write_series(tmp_path, values=pattern() * bqml_per_suv, half_life=None, radionuclide_code=code,
                 code_scheme=scheme, code_meaning=meaning)
    info = one(tmp_path)
    assert info.half_life_s == pytest.approx(half_life_s, rel=1e-9)
    assert_pattern(info)
    assert has(info.suv_assumptions, f"RadionuclideHalfLife (0018,1075) missing: used {half_life_s:.1f} s")


def test_nuclide_code_contradicting_its_meaning_is_refused(tmp_path):
    # C-131A1 is ^66^Gallium in PS3.16 CID 4020; a header labelling it ^68^Gallium is ambiguous
    write_series(tmp_path, values=pattern(), half_life=None, radionuclide_code="C-131A1", code_scheme="SRT")
    with pytest.raises(SuvTagError, match=r"missing RadionuclideHalfLife \(0018,1075\) and no known "
                                          r"RadionuclideCodeSequence \(0054,0300\) code"):
        find_timepoints(tmp_path)
    write_series(tmp_path / "b", patient_id="P2", values=pattern(), half_life=None, radionuclide_code="C-111A1",
                 code_scheme="SRT", code_meaning="^68^Gallium")
    with pytest.raises(SuvTagError, match=r"code C-111A1 \(F-18\) contradicts its CodeMeaning '\^68\^Gallium'"):
        find_timepoints(tmp_path / "b")


def test_nonzero_rescale_intercept_is_applied_and_reported(tmp_path):
    write_series(tmp_path, values=pattern() * BQML_PER_SUV, intercept=-250.0)
    info = one(tmp_path)
    assert_pattern(info)
    assert has(info.suv_assumptions, "RescaleIntercept (0028,1052) nonzero (-250…-250")


# ---------------------------------------------------------------- reference time and injection time


def _frames(start_offsets_s: list[float], duration_s: float, reference: dt.datetime):
    """Per-file acquisition start and FrameReferenceTime consistent with ``reference`` (T_ave convention)."""
    t_ave = math.log(LAM * duration_s / -math.expm1(-LAM * duration_s)) / LAM

    def tags(k, ds):
        acquired = reference + dt.timedelta(seconds=start_offsets_s[k])
        ds.AcquisitionTime = acquired.strftime("%H%M%S.%f")
        ds.ActualFrameDuration = int(duration_s * 1000)
        ds.FrameReferenceTime = f"{(start_offsets_s[k] + t_ave) * 1000:.1f}"
    return tags


def test_late_series_time_back_computes_the_reference_from_frame_times(tmp_path):
    # beds start 150 s after the true reference (cropped series): the earliest acquisition would be 150 s late,
    # 2.6 % off in SUV; AcquisitionTime + T_ave − FrameReferenceTime gives the reference of every file
    offsets = [150.0] * 4 + [450.0] * 4 + [750.0] * 4
    write_series(tmp_path, values=pattern() * BQML_PER_SUV, series_time=SCAN + dt.timedelta(minutes=30),
                 slice_tags=_frames(offsets, 300.0, SCAN))
    info = one(tmp_path)
    assert info.suv_reference_time_source.startswith("back-computed from AcquisitionTime")
    assert info.uptake_time_s == pytest.approx(3600, abs=0.01)
    assert_pattern(info)


def test_late_series_time_without_frame_times_keeps_the_earliest_acquisition(tmp_path):
    write_series(tmp_path, values=pattern() * BQML_PER_SUV, series_time=SCAN + dt.timedelta(minutes=30))
    info = one(tmp_path)  # the factory writes ActualFrameDuration but no FrameReferenceTime
    assert info.suv_reference_time_source == "earliest AcquisitionDate/AcquisitionTime"
    assert_pattern(info)


@pytest.mark.parametrize(("kw", "assumed"), [
    ({"injection_datetime_only": True}, None),
    ({"injection_time_only": True}, "taken as the scan date"),
    ({"injection_time_only": True, "scan": dt.datetime(2025, 3, 2, 0, 30), "injection": dt.datetime(2025, 3, 1, 23, 30)},
     "taken as the day before the scan (injected before midnight"),
])
def test_injection_time_variants(tmp_path, kw, assumed):
    write_series(tmp_path, values=pattern() * BQML_PER_SUV, **kw)
    info = one(tmp_path)
    assert info.uptake_time_s == pytest.approx(3600)
    assert_pattern(info)
    assert has(info.suv_assumptions, "injection date not in the headers") == (assumed is not None)
    assert assumed is None or has(info.suv_assumptions, assumed)


def test_decay_correction_none_corrects_each_frame_to_the_injection(tmp_path):
    offsets = [0.0] * 4 + [240.0] * 4 + [480.0] * 4  # three beds of 240 s after SCAN, not decay-corrected
    duration = 240.0
    stored = pattern() * DOSE / (W * 1000)  # Bq/mL at injection for SUVbw 1 (ADMIN-like) ...
    for k, offset in enumerate(offsets):  # ... decayed to the frame and averaged over it
        since_injection = 3600 + offset
        stored[k] *= math.exp(-LAM * since_injection) * -math.expm1(-LAM * duration) / (LAM * duration)
    write_series(tmp_path, values=stored, decay="NONE", corrected=("ATTN",),
                 slice_tags=lambda k, ds: (setattr(ds, "AcquisitionTime", (SCAN + dt.timedelta(seconds=offsets[k]))
                                                   .strftime("%H%M%S")), setattr(ds, "ActualFrameDuration", 240000)))
    info = one(tmp_path)
    assert info.suv_method == "BQML/NONE-corrected"
    assert_pattern(info)


def test_start_without_decy_is_ignored_as_contradictory(tmp_path):
    write_series(tmp_path, values=pattern() * BQML_PER_SUV, corrected=("ATTN",))
    with pytest.raises(DicomInputError, match="CorrectedImage lacks DECY but DecayCorrection \\(0054,1102\\) is "
                                              "START: contradictory"):
        find_timepoints(tmp_path)


# ---------------------------------------------------------------- provenance


def test_provenance_in_inspect_json_and_old_analysis_json(tmp_path):
    from typer.testing import CliRunner

    from LesionResponseLib.cli import app

    write_series(tmp_path, values=pattern() * BQML_PER_SUV, dose_bq=150.0, weight=None)
    result = CliRunner().invoke(app, ["inspect", str(tmp_path), "--json", "--weight-kg", "70"])
    assert result.exit_code == 0, result.output
    tp = json.loads(result.stdout)["timepoints"][0]
    assert tp["suv_reference_time_source"] == "SeriesDate/SeriesTime"
    assert tp["suv_normalisation"].startswith("SUVbw = Bq/mL × 70 kg × 1000 / (150 MBq decayed 60.0 min")
    assert any("read as MBq" in a for a in tp["suv_assumptions"])
    assert any("--weight-kg" in a for a in tp["suv_assumptions"])
    table = CliRunner().invoke(app, ["inspect", str(tmp_path), "--weight-kg", "70"])
    assert table.exit_code == 0 and "SUV reference time" in table.output and "assumption" in table.output
    old = {k: v for k, v in tp.items() if not k.startswith("suv_") or k in ("suv_factor", "suv_method")}
    restored = TimePointInfo.from_dict(old)  # analysis.json written before the provenance fields
    assert restored.suv_assumptions == [] and restored.suv_normalisation is None
    assert_pattern(restored)


def test_analyze_needs_and_takes_weight_kg_and_the_report_shows_provenance(tmp_path):
    from typer.testing import CliRunner

    from LesionResponseLib.cli import app

    write_series(tmp_path / "in" / "a", values=pattern() * BQML_PER_SUV, weight=None)
    write_series(tmp_path / "in" / "b", values=pattern() * BQML_PER_SUV, weight=None, scan=SCAN + dt.timedelta(days=90),
                 injection=INJ + dt.timedelta(days=90))
    command = ["analyze", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--segmentation", "threshold",
               "--registration", "identity"]
    refused = CliRunner().invoke(app, command)
    assert refused.exit_code == EXIT_INPUT and "--weight-kg" in refused.output
    result = CliRunner().invoke(app, [*command, "--weight-kg", "70"])
    assert result.exit_code == 0, result.output
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["parameters"]["input"]["weight_kg"] == 70.0
    assert [t["weight_kg"] for t in analysis["timepoints"]] == [70.0, 70.0]
    assert all("weight 70 kg given by the user (--weight-kg)" in t["suv_assumptions"] for t in analysis["timepoints"])
    report = CliRunner().invoke(app, ["report", str(tmp_path / "out"), "--no-pdf"])
    assert report.exit_code == 0, report.output
    html = (tmp_path / "out" / "report" / "report.html").read_text()
    assert all(f"TP{k} SUVbw = Bq/mL × 70 kg × 1000 / (150 MBq decayed 60.0 min" in html for k in (0, 1))
    assert "SUV assumption, TP1: weight 70 kg given by the user (--weight-kg)" in html


def test_disagreeing_frame_reference_times_are_warned_and_the_median_used(tmp_path):
    tags = _frames([150.0] * 12, 300.0, SCAN)

    def shifted(k, ds):  # the last two files claim a reference 120 s later: λ·120 s = 2 % ≫ 0.5 %
        tags(k, ds)
        if k >= 10:
            ds.FrameReferenceTime = f"{float(ds.FrameReferenceTime) - 120000:.1f}"
    write_series(tmp_path, values=pattern() * BQML_PER_SUV, series_time=SCAN + dt.timedelta(minutes=30),
                 slice_tags=shifted)
    info = one(tmp_path)
    assert info.uptake_time_s == pytest.approx(3600, abs=0.01)
    assert has(info.warnings, "reference times back-computed per file spread over 120 s: the median is used")


def test_decay_correction_none_without_frame_duration_names_the_tag(tmp_path):
    write_series(tmp_path, values=pattern(), decay="NONE", corrected=("ATTN",),
                 slice_tags=lambda k, ds: delattr(ds, "ActualFrameDuration"))
    with pytest.raises(SuvTagError, match=r"DecayCorrection NONE needs each file's acquisition start and frame "
                                          r"duration; ActualFrameDuration \(0018,1242\) is missing or zero"):
        find_timepoints(tmp_path)
