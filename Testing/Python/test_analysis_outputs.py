"""The output folder contract (docs/DOMAIN.md §8): exact columns, values, round trip, atomic writes; cohort figures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LesionResponseLib.analysis import cohort_summary, load_analysis, write_outputs
from LesionResponseLib.analysis.outputs import OutputFolderError
from LesionResponseLib.analysis.response import assess_response
from LesionResponseLib.cli_base import EXIT_INPUT
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.datamodel import SCHEMA_VERSION, Analysis, LesionROI, TimePointInfo, Track


def _tp(k: int) -> TimePointInfo:
    return TimePointInfo(index=k, patient_id="P1", study_date=f"2025010{k + 1}", scan_datetime="",
                         study_instance_uid=f"1.2.{k}", pet_series_instance_uid=f"1.3.{k}",
                         ct_series_instance_uid=None if k == 2 else f"1.4.{k}", frame_of_reference_uid=None,
                         suv_factor=1.25e-4, suv_method="BQML/START")


def _roi(tp: int, label: int, total: float, status: str = "accepted", sd: float | None = None) -> LesionROI:
    return LesionROI(roi_id=f"tp{tp}-L{label:04d}", timepoint=tp, label=label, centroid_mm=(1.5, -2.25, 300.0),
                     volume_ml=2.0, suv_max=9.0, suv_mean=total / 2, suv_peak=8.0, suv_total=total,
                     status=status, suv_total_sd=sd, suv_total_pvc_sd=sd)  # type: ignore[arg-type]


def _analysis(n_tp: int = 3) -> Analysis:
    rois = [_roi(0, 1, 100.0, sd=10.0), _roi(1, 1, 40.0, sd=4.0), _roi(2, 1, 90.0, sd=18.0), _roi(1, 2, 10.0),
            _roi(2, 2, 12.0), _roi(2, 3, 5.0, "rejected")][: 6 if n_tp == 3 else 1]
    tracks = [Track(1, {0: ["tp0-L0001"], 1: ["tp1-L0001"], 2: ["tp2-L0001"]}),
              Track(2, {1: ["tp1-L0002"], 2: ["tp2-L0002"]}), Track(3, {2: ["tp2-L0003"]})][: 3 if n_tp == 3 else 1]
    if n_tp == 1:
        tracks = [Track(1, {0: ["tp0-L0001"]})]
    params = AnalysisParameters()
    responses, hetero = assess_response(tracks, rois, n_tp, params)
    return Analysis(patient_id="P1", timepoints=[_tp(k) for k in range(n_tp)], rois=rois, tracks=tracks,
                    responses=responses, heterogeneous=hetero, parameters=params)


def _read(path):
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def test_csv_columns_and_values_follow_the_contract(tmp_path) -> None:
    labels = {k: sitk.Image(4, 4, 4, sitk.sitkUInt16) for k in range(3)}
    write_outputs(_analysis(), tmp_path, labels)
    header, tps = _read(tmp_path / "timepoints.csv")
    assert header == ["timepoint", "study_date", "study_instance_uid", "pet_series_instance_uid",
                      "ct_series_instance_uid", "suv_factor", "n_rois", "liver_ref_suv_mean", "liver_ref_suv_sd",
                      "liver_ref_volume_ml", "spleen_ref_suv_mean", "spleen_ref_suv_sd",
                      "spleen_ref_volume_ml"]  # extras last (analysis.reference_regions: none placed here)
    assert all(r["liver_ref_suv_mean"] == "" for r in tps)
    assert [r["n_rois"] for r in tps] == ["1", "2", "2"]  # the rejected ROI is not counted
    assert tps[2]["ct_series_instance_uid"] == "" and float(tps[0]["suv_factor"]) == 1.25e-4
    header, rois = _read(tmp_path / "rois.csv")
    assert header == ["roi_id", "timepoint", "label", "track_id", "x_mm", "y_mm", "z_mm", "volume_ml", "suv_max",
                      "suv_mean", "suv_peak", "suv_total", "category", "status", "suv_total_pvc",
                      "source", "suv_total_sd", "suv_total_pvc_sd", "site", "site_source", "suv_max_to_liver",
                      "suv_max_to_spleen", "krenning_grade"]  # extras last
    by_id = {r["roi_id"]: r for r in rois}
    assert by_id["tp0-L0001"]["category"] == "baseline"
    assert by_id["tp1-L0001"]["category"] == "decreasing" and by_id["tp2-L0001"]["category"] == "stable"
    assert by_id["tp1-L0002"]["category"] == "new" and by_id["tp2-L0002"]["track_id"] == "2"
    assert by_id["tp2-L0003"]["status"] == "rejected" and by_id["tp2-L0003"]["category"] == ""
    assert float(by_id["tp0-L0001"]["y_mm"]) == -2.25 and float(by_id["tp1-L0001"]["suv_total"]) == 40.0
    header, tracks = _read(tmp_path / "tracks.csv")
    assert header == ["track_id", "first_timepoint", "last_timepoint", "pattern", "category_t1",
                      "delta_suv_total_pct_t1", "category_t2", "delta_suv_total_pct_t2",
                      "delta_low_pct_t1", "delta_high_pct_t1", "category_confidence_t1", "indeterminate_t1",
                      "delta_low_pct_t2", "delta_high_pct_t2", "category_confidence_t2", "indeterminate_t2"]
    assert [t["track_id"] for t in tracks] == ["1", "2"]  # track 3 has only a rejected ROI
    assert tracks[0]["pattern"] == "non-monotonic" and float(tracks[0]["delta_suv_total_pct_t1"]) == -60.0
    assert tracks[1]["first_timepoint"] == "1" and tracks[1]["delta_suv_total_pct_t1"] == ""
    # 40 ± 4 against 100 ± 10: ln 0.4 ± 1.645 × √(0.1² + 0.1²) → −68.30 … −49.52 %, wholly below −30 %
    assert float(tracks[0]["delta_low_pct_t1"]) == -68.3 and float(tracks[0]["delta_high_pct_t1"]) == -49.52
    assert tracks[0]["indeterminate_t1"] == "" and float(tracks[0]["category_confidence_t1"]) > 0.99
    # 90 ± 18: ln 0.9 ± 1.645 × √(0.1² + 0.2²) → −37.3 … +30.4 %, holding both thresholds
    assert tracks[0]["indeterminate_t2"] == "yes" and -38 < float(tracks[0]["delta_low_pct_t2"]) < -37
    assert tracks[1]["delta_low_pct_t1"] == "" and tracks[1]["indeterminate_t1"] == ""  # new: no change, no interval
    data = json.loads((tmp_path / "analysis.json").read_text())
    assert data["heterogeneous"] == {"1": True, "2": False} and data["schema_version"] == SCHEMA_VERSION == 2
    assert data["parameters"]["response"]["reference"] == "baseline" and data["software_version"]
    header, burden = _read(tmp_path / "burden.csv")
    assert header == ["timepoint", "study_date", "site", "n_rois", "volume_ml", "suv_total", "suv_total_pvc",
                      "n_rois_change", "volume_ml_change_pct", "suv_total_change_pct", "suv_total_pvc_change_pct"]
    overall = [r for r in burden if r["site"] == "all"]  # accepted ROIs of 2 mL: SUVtotal 100 | 40 + 10 | 90 + 12
    assert [(r["n_rois"], float(r["volume_ml"]), float(r["suv_total"])) for r in overall] == [
        ("1", 2.0, 100.0), ("2", 4.0, 50.0), ("2", 4.0, 102.0)]
    assert [r["volume_ml_change_pct"] for r in overall] == ["0.0", "100.0", "100.0"]
    assert [r["suv_total_change_pct"] for r in overall] == ["0.0", "-50.0", "2.0"]
    assert {r["site"] for r in burden} == {"all", "undetermined"}  # no CT here: no site
    assert data["burden"]["timepoints"][1]["overall"]["n_rois_change"] == 1
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == ["tp0.nii.gz", "tp1.nii.gz", "tp2.nii.gz"]
    assert not [p for p in tmp_path.rglob(".*")]  # no temporary file left behind
    assert (tmp_path / "rois.csv").stat().st_mode & 0o777 == 0o644


def test_round_trip(tmp_path) -> None:
    analysis = _analysis()
    write_outputs(analysis, tmp_path)
    back = load_analysis(tmp_path)
    assert back.to_dict() == analysis.to_dict()


def test_single_timepoint_has_no_follow_up_columns(tmp_path) -> None:
    write_outputs(_analysis(1), tmp_path)
    header, tracks = _read(tmp_path / "tracks.csv")
    assert header == ["track_id", "first_timepoint", "last_timepoint", "pattern"]
    assert tracks[0]["pattern"] == "baseline-only"


def test_missing_or_broken_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(OutputFolderError, match="analyze"):
        load_analysis(tmp_path)
    (tmp_path / "analysis.json").write_text("{not json")
    with pytest.raises(OutputFolderError, match="unreadable"):
        load_analysis(tmp_path)


def test_cohort_figures_from_known_patients() -> None:
    a = _analysis()  # 3 scans: heterogeneous at 1, track 2 new at 1 and still present at 2
    b = _analysis(1)
    summary = cohort_summary([a, b])
    assert summary["patients"] == 2 and summary["scans"] == 4
    assert summary["rois_per_image"] == {"median": 1.5, "min": 1, "max": 2}  # images: 1, 2, 2 | 1
    assert summary["tracks_per_patient"] == {"median": 1.5, "min": 1, "max": 2}
    assert summary["heterogeneous_per_follow_up"]["1"] == {"patients": 1, "heterogeneous": 1, "pct": 100.0}
    assert summary["patients_more_than_one_follow_up"] == 1 and summary["non_monotonic_among_them"] == 1
    assert summary["new_at_first_follow_up"] == 1 and summary["new_resolved_at_last"] == 0
    assert summary["disappeared_at_first_follow_up"] == 0 and summary["disappeared_returned_at_last_pct"] is None
    assert np.isfinite(summary["median_rois_per_image"])
    # tumour burden, baseline -> last: a 2 -> 4 mL (+100 %), SUVtotal 100 -> 102 (+2 %); b one scan (0 %)
    assert summary["burden_change_pct"]["volume_ml_change_pct"] == {"median": 50.0, "min": 0.0, "max": 100.0}
    assert summary["burden_change_pct"]["suv_total_change_pct"] == {"median": 1.0, "min": 0.0, "max": 2.0}


def test_cohort_cli_writes_json_and_csv(tmp_path) -> None:
    from typer.testing import CliRunner

    from LesionResponseLib.cli import app

    write_outputs(_analysis(), tmp_path / "p1")
    write_outputs(_analysis(1), tmp_path / "p2")
    result = CliRunner().invoke(app, ["cohort", str(tmp_path / "p1"), str(tmp_path / "p2"), "-o", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "c" / "cohort.json").read_text())
    assert summary["patients"] == 2 and summary["tracks"] == 3
    header, rows = _read(tmp_path / "c" / "cohort.csv")
    assert header[0] == "patient_id" and len(rows) == 2
    missing = CliRunner().invoke(app, ["cohort", str(tmp_path / "nowhere"), "-o", str(tmp_path / "c")])
    assert missing.exit_code == EXIT_INPUT and "analysis.json" in missing.output


def test_analysis_json_without_roi_source_or_searches_still_loads(tmp_path) -> None:
    """analysis.json written before prior-guided ROIs: no ``source`` (or the former ``"auto"``), no
    ``prior_searches``; both load, the ROIs as ``model``, and ``rois.csv`` gets its ``source`` column."""
    data = _analysis().to_dict()
    data.pop("prior_searches")
    for n, roi in enumerate(data["rois"]):
        roi.pop("source") if n % 2 else roi.update(source="auto")
    data["rois"][-1]["source"] = "reader"
    (tmp_path / "analysis.json").write_text(json.dumps(data))
    loaded = load_analysis(tmp_path)
    assert [r.source for r in loaded.rois] == ["model"] * (len(loaded.rois) - 1) + ["reader"]
    assert loaded.prior_searches == []
    write_outputs(loaded, tmp_path)
    _, rows = _read(tmp_path / "rois.csv")
    assert {r["source"] for r in rows} == {"model", "reader"}


def test_orphaned_temporaries_are_removed_and_nothing_else(tmp_path) -> None:
    """A writer killed between mkstemp and os.replace leaves ``.NAME.XXXXXXXX.tmp`` (or ``.nii.gz``) behind."""
    import tempfile

    from LesionResponseLib.analysis.outputs import remove_orphaned_temporaries

    (tmp_path / "labels").mkdir()
    (tmp_path / "review").mkdir()
    orphans = [tempfile.mkstemp(dir=tmp_path, prefix=".tracks.csv.", suffix=".tmp")[1],
               tempfile.mkstemp(dir=tmp_path / "labels", prefix=".tp1.nii.gz.", suffix=".nii.gz")[1]]
    kept = [tmp_path / "tracks.csv", tmp_path / ".cohort.lock", tmp_path / "labels" / "tp1.nii.gz",
            tmp_path / ".tracks.csv.tmp",  # not a name this module writes
            Path(tempfile.mkstemp(dir=tmp_path / "review", prefix=".edits.json.", suffix=".tmp")[1])]
    for path in kept:
        path.touch()
    removed = remove_orphaned_temporaries(tmp_path)
    assert sorted(removed) == sorted(Path(p) for p in orphans)
    assert not any(Path(p).exists() for p in orphans) and all(p.exists() for p in kept)
