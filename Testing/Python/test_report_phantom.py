"""Report and DICOM export on phantom patients: real vendor DICOM flavours (GE, Philips CNTS) and grids."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pydicom
import pytest
from conftest import require_tool
from test_report_dicom import _groups
from test_report_factory import phantom_output, pipeline_output

from LesionResponseLib.report import export_dicom, track_uid, write_patient_report


@pytest.mark.parametrize("vendor", ["philips", "ge"])
def test_export_on_vendor_phantom(make_phantom, tmp_path, vendor):
    import highdicom as hd

    dciodvfy = require_tool("dciodvfy")
    out = phantom_output(make_phantom(seed=2, timepoints=2, vendor=vendor, axial_extent_mm=160), tmp_path / "out")
    paths = export_dicom(out, tmp_path / "dicom")
    analysis = json.loads((out / "analysis.json").read_text())
    rois = pd.read_csv(out / "rois.csv")
    for path in paths:
        report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
        assert not [x for x in (report.stdout + report.stderr).splitlines() if x.startswith("Error")], path.name
    for k in range(2):
        seg = hd.seg.segread(tmp_path / "dicom" / f"TP{k}_SEG.dcm")
        source_uids = [str(ds.ReferencedSOPInstanceUID)
                       for ds in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
        accepted = sorted((r for r in analysis["rois"] if r["timepoint"] == k and r["status"] == "accepted"),
                          key=lambda r: r["label"])
        for number, roi in enumerate(accepted, start=1):
            mask = seg.get_pixels_by_source_instance(source_uids, segment_numbers=[number], combine_segments=True)
            assert int((mask > 0).sum()) == roi["n_voxels"], roi["roi_id"]
        sr = _groups(pydicom.dcmread(tmp_path / "dicom" / f"TP{k}_SR.dcm"))
        totals = sorted(g["values"][("SUVbw", "Total", "{SUVbw}g/ml.ml")] for g in sr if g["values"])
        assert totals == pytest.approx(sorted(rois[rois.timepoint == k].suv_total), rel=1e-6, abs=1e-4)
        corrected = sorted(g["values"][("SUVbw", "Partial-volume-corrected total", "{SUVbw}g/ml.ml")]
                           for g in sr if g["values"])
        assert corrected == pytest.approx(sorted(r["suv_total_pvc"] for r in accepted), rel=1e-6, abs=1e-4)
        csv_uids = {track_uid(analysis["patient_id"], t) for t in rois[rois.timepoint == k].track_id}
        assert {g["uid"] for g in sr if g["values"]} == csv_uids


@pytest.mark.slow
def test_report_and_export_after_the_analysis_pipeline(make_phantom, build_once, tmp_path):
    """The whole chain: analyze (truth labels) -> report (HTML) -> export -> dciodvfy."""
    dciodvfy = require_tool("dciodvfy")
    out = pipeline_output(make_phantom(seed=2, timepoints=2, vendor="siemens", axial_extent_mm=160),
                          tmp_path / "out", build_once)
    html = write_patient_report(out, formats=("html",))["html"].read_text()
    n_tracks = len(pd.read_csv(out / "tracks.csv"))
    assert f"{n_tracks} lesion-ROI tracks" in html and html.count('alt="MIP TP') == 2
    # the default measure drove the categories, and the report says so where it shows the values
    assert "SUVtotal (PV-corrected) per track over time" in html and "SUVtotal (PV-corrected) TP0" in html
    paths = export_dicom(out, tmp_path / "dicom")
    assert len(paths) == 4
    for path in paths:
        report = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
        assert not [x for x in (report.stdout + report.stderr).splitlines() if x.startswith("Error")], path.name


@pytest.mark.slow
def test_patient_report_on_three_timepoint_phantom(make_phantom, tmp_path):
    require_tool("chromium")
    out = phantom_output(make_phantom(seed=1, timepoints=3, vendor="siemens"), tmp_path / "out")
    paths = write_patient_report(out)
    html = paths["html"].read_text()
    assert html.count('alt="MIP TP') == 3
    truth = json.loads((out / "analysis.json").read_text())["heterogeneous"]
    for k, flag in truth.items():
        assert f"TP{k}: {'heterogeneous response' if flag else 'no response heterogeneity'}" in html
    assert paths["pdf"].stat().st_size > 50_000
    _assert_track_table_fits_its_page(paths["pdf"])


def _assert_track_table_fits_its_page(pdf) -> None:
    """The track table (2 + 3 columns per time point + notes) is printed on a landscape page that holds its last
    column: on portrait A4 the columns right of the second follow-up were cut off at the page edge."""
    pdftotext = require_tool("pdftotext")
    pages = subprocess.run([pdftotext, "-layout", str(pdf), "-"], capture_output=True, text=True,
                           check=True).stdout.split("\f")
    [k] = [i for i, text in enumerate(pages, start=1) if "Track table" in text]
    assert "ROI source / search" in pages[k - 1]  # pdftotext keeps only what lies on the page
    info = subprocess.run([require_tool("pdfinfo"), "-f", str(k), "-l", str(k), str(pdf)], capture_output=True,
                          text=True, check=True).stdout
    width, height = (float(v) for v in info.split(f"Page {k:4d} size:")[1].split("pts")[0].split(" x "))
    assert width > height  # landscape
