"""DICOM SEG + SR export: validated by dciodvfy/dsrdump, masks read back, SR values equal to the CSV."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from conftest import require_tool
from test_report_factory import build_output

from LesionResponseLib.report import export_dicom, track_uid


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    out = build_output(root)
    return out, export_dicom(out, root / "dicom_out")


def test_one_seg_and_one_sr_per_timepoint(export):
    _, paths = export
    assert sorted(p.name for p in paths) == [f"TP{k}_{kind}.dcm" for k in range(3) for kind in ("SEG", "SR")]


def test_dciodvfy_reports_no_error(export):
    dciodvfy = require_tool("dciodvfy")
    for path in export[1]:
        result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
        assert not errors, (path.name, errors)


def test_dsrdump_shows_the_tree(export):
    dsrdump = require_tool("dsrdump")
    text = subprocess.run([dsrdump, str(export[1][3])], capture_output=True, text=True, check=True).stdout
    for item in ("Imaging Measurement Report", "Tracking Unique Identifier", "Subject Time Point Identifier",
                 "Referenced Segment", "{SUVbw}g/ml", "Peak Value Within ROI"):
        assert item in text, item


def test_seg_reads_back_to_the_label_masks(export):
    import highdicom as hd

    out, paths = export
    rois = pd.read_csv(out / "rois.csv")
    for k in range(3):
        seg = hd.seg.segread(paths[2 * k])
        labels = sitk.ReadImage(str(out / "labels" / f"tp{k}.nii.gz"))
        truth = sitk.GetArrayFromImage(labels)
        expected = rois[rois.timepoint == k].sort_values("label")
        assert seg.number_of_segments == len(expected)
        sources = {str(ds.ReferencedSOPInstanceUID) for ds in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
        pet = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): f
               for f in (out.parent / "dicom" / f"tp{k}").glob("*.dcm")}
        assert sources == set(pet)  # every source PET instance of that time point is referenced
        uids = sorted(pet)
        pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True, relabel=False)
        for uid, frame in zip(uids, pixels, strict=True):
            ds = pydicom.dcmread(pet[uid], stop_before_pixels=True)
            z = labels.TransformPhysicalPointToIndex([float(v) for v in ds.ImagePositionPatient])[2]
            remapped = np.zeros_like(truth[z])
            for number, label in enumerate(expected.label, start=1):
                remapped[truth[z] == label] = number
            np.testing.assert_array_equal(frame, remapped)
        for number, row in enumerate(expected.itertuples(), start=1):
            description = seg.get_segment_description(number)
            assert f"track {row.track_id}" in description.segment_label
            assert description.tracking_uid == track_uid("RPT001", row.track_id)


def _groups(sr: pydicom.Dataset, lesions_only: bool = True) -> list[dict]:
    """Per measurement group: tracking UID (and identifier), time point id, {(concept, derivation, unit): value},
    category, finding and finding sites. ``lesions_only``: the lesion groups (finding "Lesion"), not the
    patient-level burden and reference-region groups."""
    groups = []
    for container in sr.ContentSequence:
        if container.ConceptNameCodeSequence[0].CodeMeaning != "Imaging Measurements":
            continue
        for group in container.ContentSequence:
            info: dict = {"values": {}, "sites": []}
            for item in group.ContentSequence:
                name = item.ConceptNameCodeSequence[0].CodeMeaning
                if name == "Tracking Unique Identifier":
                    info["uid"] = item.UID
                elif name == "Tracking Identifier":
                    info["identifier"] = item.TextValue
                elif name == "Finding":
                    info["finding"] = item.ConceptCodeSequence[0].CodeMeaning
                    info["sites"] = [m.ConceptCodeSequence[0].CodeValue for m in item.get("ContentSequence", [])
                                     if m.ConceptNameCodeSequence[0].CodeMeaning == "Finding Site"]
                elif name == "Subject Time Point Identifier":
                    info["tp"] = item.TextValue
                elif item.ValueType == "NUM" and item.RelationshipType == "CONTAINS":
                    children = item.get("ContentSequence", [])
                    mods = [m.ConceptCodeSequence[0].CodeMeaning for m in children if m.ValueType == "CODE"]
                    value = float(item.MeasuredValueSequence[0].NumericValue)
                    unit = item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue
                    key = (name, mods[0] if mods else "", unit)
                    info["values"][key] = value
                    info.setdefault("uncertainty", {})[key] = {  # TID 310 lower / upper measurement uncertainty
                        m.ConceptNameCodeSequence[0].CodeMeaning: float(m.MeasuredValueSequence[0].NumericValue)
                        for m in children if m.ValueType == "NUM"}
                elif name == "Lesion-ROI response category":
                    info["category"] = item.ConceptCodeSequence[0].CodeMeaning
                elif name == "Response category confidence":
                    info["confidence"] = item.ConceptCodeSequence[0].CodeMeaning
                elif name == "Finding Site":
                    info["sites"].append(item.ConceptCodeSequence[0].CodeValue)
                elif name == "Krenning-like grade":
                    info["grade"] = item.ConceptCodeSequence[0].CodeMeaning
            if not lesions_only or info.get("finding") == "Lesion":
                groups.append(info)
    return groups


def test_sr_measurements_equal_the_csv(export):
    out, paths = export
    rois = pd.read_csv(out / "rois.csv")
    tracks = pd.read_csv(out / "tracks.csv")
    uid_to_track = {track_uid("RPT001", t): t for t in tracks.track_id}
    for k in range(3):
        groups = _groups(pydicom.dcmread(paths[2 * k + 1]))
        measured = [g for g in groups if g["values"]]
        assert len(measured) == (rois.timepoint == k).sum()
        for g in measured:
            assert g["tp"] == str(k)
            row = rois[(rois.timepoint == k) & (rois.track_id == uid_to_track[g["uid"]])].iloc[0]
            v = g["values"]
            assert v[("SUVbw", "Maximum", "{SUVbw}g/ml")] == pytest.approx(row.suv_max, rel=1e-6, abs=1e-4)
            assert v[("SUVbw", "Mean", "{SUVbw}g/ml")] == pytest.approx(row.suv_mean, rel=1e-6, abs=1e-4)
            assert v[("SUVbw", "Peak Value Within ROI", "{SUVbw}g/ml")] == pytest.approx(row.suv_peak, rel=1e-6, abs=1e-4)
            assert v[("Volume", "", "ml")] == pytest.approx(row.volume_ml, rel=1e-6, abs=1e-4)
            assert v[("SUVbw", "Total", "{SUVbw}g/ml.ml")] == pytest.approx(row.suv_total, rel=1e-6, abs=1e-4)
            track = tracks[tracks.track_id == uid_to_track[g["uid"]]].iloc[0]
            delta = [value for (name, _, unit), value in v.items() if name.startswith("Change of") and unit == "%"]
            if k and not np.isnan(track[f"delta_suv_total_pct_t{k}"]):  # coded by the measure that drove it
                assert ("Change of SUVtotal from reference", "", "%") in v  # the factory's: suv_total
                assert delta == [pytest.approx(track[f"delta_suv_total_pct_t{k}"], abs=0.01)]
            assert g["category"] == row.category
        gone = [g for g in groups if not g["values"]]
        expected_gone = tracks.track_id[tracks[f"category_t{k}"] == "disappearing"] if k else []
        assert sorted(uid_to_track[g["uid"]] for g in gone) == sorted(expected_gone)


def test_sr_carries_the_uncertainty_of_each_measure_and_call(export):
    """SUVtotal ± its SD, the change's interval as lower/upper measurement uncertainty (TID 310), the probability of
    the category and whether the call is indeterminate (analysis.json is the source)."""
    from LesionResponseLib.analysis import load_analysis

    out, paths = export
    analysis = load_analysis(out)
    responses = {r.track_id: r for r in analysis.responses}
    owner = {rid: t.track_id for t in analysis.tracks for ids in t.rois.values() for rid in ids}
    uid_to_track = {track_uid("RPT001", t): t for t in responses}
    seen = set()
    for k in range(1, 3):
        for g in (g for g in _groups(pydicom.dcmread(paths[2 * k + 1])) if g["values"]):
            track = uid_to_track[g["uid"]]
            roi = next(r for r in analysis.rois if r.timepoint == k and owner[r.roi_id] == track)
            response = responses[track]
            spread = g["uncertainty"][("SUVbw", "Total", "{SUVbw}g/ml.ml")]
            assert spread["+, range of upper measurement uncertainty"] == pytest.approx(roi.suv_total_sd, rel=1e-6)
            assert spread["-, range of lower measurement uncertainty"] == pytest.approx(roi.suv_total_sd, rel=1e-6)
            interval = response.delta_interval_pct.get(k)
            if interval is None:
                assert "confidence" not in g  # a new lesion: no change, no interval
                continue
            delta = response.delta_suv_total_pct[k]
            spread = g["uncertainty"][("Change of SUVtotal from reference", "", "%")]
            assert spread["-, range of lower measurement uncertainty"] == pytest.approx(delta - interval[0], rel=1e-6)
            assert spread["+, range of upper measurement uncertainty"] == pytest.approx(interval[1] - delta, rel=1e-6)
            assert g["values"][("Probability that the true change lies in the category", "", "%")] == \
                pytest.approx(100 * response.category_confidence[k], rel=1e-6)
            assert g["confidence"] == ("indeterminate" if response.indeterminate[k] else "confident")
            seen.add(g["confidence"])
    assert seen == {"indeterminate", "confident"}  # the factory's track 2 is noisy (25 %), track 1 not (5 %)


def test_sr_has_sites_ratios_and_grades_of_each_lesion(export):
    """Each lesion's Finding Site is its site's SNOMED CT code; its ratios and Krenning-like grade are those of the
    factory's reference regions (test_report_factory.REFERENCES)."""
    from test_report_factory import REFERENCES, SITES

    from LesionResponseLib.report.dicom_export import site_codes

    out, paths = export
    rois = pd.read_csv(out / "rois.csv")
    tracks = pd.read_csv(out / "tracks.csv")
    uid_to_track = {track_uid("RPT001", t): t for t in tracks.track_id}
    for k in range(3):
        for g in _groups(pydicom.dcmread(paths[2 * k + 1])):
            if not g["values"]:
                continue  # a disappeared track's group
            track = uid_to_track[g["uid"]]
            assert g["sites"] == [site_codes()[SITES[track]].value]
            row = rois[(rois.timepoint == k) & (rois.track_id == track)].iloc[0]
            ratio = g["values"][("SUVmax to liver reference SUVmean ratio", "", "1")]
            assert ratio == pytest.approx(row.suv_max / REFERENCES[(k, "liver")], rel=1e-6)
            spleen = REFERENCES.get((k, "spleen"))
            assert (("SUVmax to spleen reference SUVmean ratio", "", "1") in g["values"]) == (spleen is not None)
            expected = "4" if spleen and row.suv_max > spleen else ("3" if spleen else ">=3")
            assert g["grade"] == f"Krenning-like grade {expected}"


def test_sr_has_the_tumour_burden_and_reference_regions(export):
    """Patient-level groups: whole body and per site, equal to analysis.burden; one group per placed reference."""
    from test_report_factory import REFERENCES

    from LesionResponseLib.analysis import load_analysis
    from LesionResponseLib.analysis.burden import burden_rows
    from LesionResponseLib.report.dicom_export import site_codes

    out, paths = export
    rows = burden_rows(load_analysis(out))
    for k in range(3):
        groups = _groups(pydicom.dcmread(paths[2 * k + 1]), lesions_only=False)
        burden = {g["identifier"].split(": ")[1]: g for g in groups if g.get("finding") == "Neoplasm"}
        expected = {("whole body" if r["site"] == "all" else r["site"]): r for r in rows if r["timepoint"] == k}
        assert set(burden) == set(expected)
        for name, g in burden.items():
            r, v = expected[name], g["values"]
            assert g["sites"] == ["38266002" if name == "whole body" else site_codes()[name].value]
            assert v[("Number of lesions (observable entity)", "", "{lesions}")] == r["n_rois"]
            assert v[("Volume", "", "ml")] == pytest.approx(r["volume_ml"], rel=1e-9)
            assert v[("SUVbw", "Total", "{SUVbw}g/ml.ml")] == pytest.approx(r["suv_total"], rel=1e-9)
            change = v.get(("Change of tumour volume from baseline", "", "%"))
            assert change == (None if not k or r["volume_ml_change_pct"] is None
                              else pytest.approx(r["volume_ml_change_pct"]))  # none where the baseline is 0
        references = {g["sites"][0]: g["values"] for g in groups if g.get("finding") == "Reference region of normal uptake"}
        placed = {organ: mean for (tp, organ), mean in REFERENCES.items() if tp == k}
        assert set(references) == {site_codes()[organ].value for organ in placed}
        for organ, mean in placed.items():
            assert references[site_codes()[organ].value][("SUVbw", "Mean", "{SUVbw}g/ml")] == pytest.approx(mean)


def test_tracking_uid_is_shared_across_timepoints(export):
    _, paths = export
    per_tp = [{g["uid"] for g in _groups(pydicom.dcmread(paths[2 * k + 1]))} for k in range(3)]
    stable = track_uid("RPT001", 2)  # track 2 is present at every time point
    assert all(stable in uids for uids in per_tp)
    assert track_uid("RPT001", 2) != track_uid("RPT002", 2)


def test_export_refuses_missing_pet_and_misplaced_labels(tmp_path):
    from LesionResponseLib.report import ReportInputError

    out = build_output(tmp_path)
    labels = sitk.ReadImage(str(out / "labels" / "tp0.nii.gz"))
    labels.SetOrigin((0.0, 0.0, 500.0))  # 50 cm away from the PET slices
    sitk.WriteImage(labels, str(out / "labels" / "tp0.nii.gz"))
    with pytest.raises(ReportInputError, match="not on the label map grid"):
        export_dicom(out, tmp_path / "a")
    first = sorted((tmp_path / "dicom" / "tp0").glob("*.dcm"))[0]
    first.unlink()
    with pytest.raises(ReportInputError, match=f"{first}.*source PET file"):
        export_dicom(out, tmp_path / "b")
