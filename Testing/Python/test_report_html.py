"""Per-patient HTML/PDF report and cohort summary on a hand-built analysis folder with known categories."""

from __future__ import annotations

import io
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import require_tool
from test_report_factory import build_output
from typer.testing import CliRunner

from LesionResponseLib.cli_base import EXIT_INPUT
from LesionResponseLib.report import ReportInputError, write_cohort_report, write_patient_report

SECTIONS = ("summary", "timepoints", "burden", "spaghetti", "waterfall", "category-counts", "mips", "tracks",
            "reader-edits", "methods", "disclaimer")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return build_output(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def paths(out):
    require_tool("chromium")
    return write_patient_report(out)


def test_html_has_every_section_and_is_self_contained(paths):
    html = paths["html"].read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html, section
    assert not re.search(r'(src|href)="(https?:|file:|/)', html)  # nothing outside the file
    assert html.count("data:image/png;base64,") == 4 + 3  # four plots + one MIP per time point


def _table_rows(html: str) -> list[list[str]]:
    """Cell texts of every table row (stdlib parser: no lxml needed)."""
    from html.parser import HTMLParser

    rows: list[list[str]] = []

    class Cells(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "tr":
                rows.append([])
            elif tag in ("td", "th"):
                rows[-1].append("")

        def handle_data(self, data):
            if rows and rows[-1]:
                rows[-1][-1] += data.strip()

    Cells().feed(html)
    return rows


def test_summary_states_truth(paths):
    html = paths["html"].read_text()
    summary = html[html.index('id="summary"'):html.index('id="timepoints"')]
    assert "TP1: heterogeneous response" in summary and "TP2: heterogeneous response" in summary
    rows = {row[0]: row[1:] for row in _table_rows(summary)}
    assert rows["follow-up"] == ["new", "increasing", "stable", "decreasing", "disappearing", "total"]
    assert rows["TP1"] == ["1", "0", "1", "1", "1", "4"]
    assert rows["TP2"] == ["0", "1", "1", "1", "0", "3"]
    assert "reader1" in html and "tp1-L0099" in html  # the reader's edit is listed


def test_pdf_has_every_section_heading(paths):
    pdftotext = require_tool("pdftotext")
    assert paths["pdf"].read_bytes()[:5] == b"%PDF-"
    text = subprocess.run([pdftotext, str(paths["pdf"]), "-"], capture_output=True, text=True, check=True).stdout
    for heading in ("Summary", "Patient and time points", "Tumour burden and reference regions",
                    "SUVtotal per track over time", "Waterfall",
                    "Category counts per follow-up", "Coronal PET MIPs", "Track table", "Reader edits",
                    "Methods, parameters and software", "For research use only"):
        assert heading in text, heading


def test_burden_section_states_the_factory_truth(paths):
    """Lesion counts, volumes and Krenning-like grades of the hand-built lesions (test_report_factory)."""
    from test_report_factory import LESIONS, SITES, VOXEL_ML, _ball

    html = paths["html"].read_text()
    rows = _table_rows(html[html.index('id="burden"'):html.index("Krenning-like grade: the")])
    burden = {(r[0], r[1]): r[2:] for r in rows if len(r) == 6 and r[0].isdigit()}
    for tp in range(3):
        present = {t: spec[tp] for t, spec in LESIONS.items() if tp in spec}
        volume = sum(_ball(c, radius).sum() for c, radius, _ in present.values()) * VOXEL_ML
        assert burden[(str(tp), "all")][0].split(" ")[0] == str(len(present))
        assert burden[(str(tp), "all")][1].split(" ")[0] == f"{volume:.1f}"
        for track in present:
            assert burden[(str(tp), SITES[track])][0].split(" ")[0] == "1"
    grades = {r[0]: r[1:] for r in rows if len(r) == 6 and r[0].isdigit() and r[1].isdigit()}
    # TP0: liver 4, spleen 16 -> SUVmax 20 grade 4, 10 and 15 grade 3; TP1: liver 5, spleen 10 -> 12 and 10.5
    # grade 4, 9 grade 3; TP2: no spleen reference -> every lesion above the liver is "≥3"
    assert grades == {"0": ["0", "2", "1", "0", "0"], "1": ["0", "1", "2", "0", "0"], "2": ["0", "0", "0", "3", "0"]}
    assert "not placed" in html and "no spleen found" in html


def _has_colour(png: bytes, hex_colour: str, tolerance: float = 0.03) -> bool:
    import matplotlib.image as mpimg
    from matplotlib.colors import to_rgb

    rgb = mpimg.imread(io.BytesIO(png), format="png")[..., :3]
    return bool((np.abs(rgb - np.array(to_rgb(hex_colour))).max(axis=-1) < tolerance).any())


def test_mip_colours_rois_by_category(out):
    from LesionResponseLib.report import plots
    from LesionResponseLib.report.data import CATEGORY_COLOURS, load_labels, load_report_data, load_suv

    data = load_report_data(out)
    mips = [plots.mip_figure(data, k, load_labels(out, k), suv=load_suv(data, k)) for k in range(3)]
    assert _has_colour(mips[1], CATEGORY_COLOURS["new"]) and not _has_colour(mips[0], CATEGORY_COLOURS["new"])
    assert _has_colour(mips[0], CATEGORY_COLOURS["baseline"]) and not _has_colour(mips[1], CATEGORY_COLOURS["baseline"])
    assert _has_colour(mips[2], CATEGORY_COLOURS["increasing"])
    assert all(_has_colour(m, plots.REFERENCE_COLOUR) for m in mips)  # the reference spheres are outlined


def test_missing_analysis_names_the_folder(tmp_path):
    with pytest.raises(ReportInputError, match=str(tmp_path)):
        write_patient_report(tmp_path)


def test_cli_report_and_error_exit_code(out, tmp_path):
    from LesionResponseLib.cli import app

    result = CliRunner().invoke(app, ["report", str(out), "--no-pdf", "-o", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.html").exists() and not (tmp_path / "r" / "report.pdf").exists()
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nothing"), "--no-pdf"])
    assert bad.exit_code == EXIT_INPUT and "Traceback" not in bad.output


def test_cohort_report_counts(out, tmp_path):
    paths = write_cohort_report([out, out], tmp_path)
    table = pd.read_csv(paths["csv"])
    assert len(table) == 2
    row = table.iloc[0]
    assert (row["n_scans"], row["n_rois"], row["n_tracks"]) == (3, 9, 4)
    assert bool(row["heterogeneous_t1"]) and bool(row["non_monotonic"]) is False
    assert (row["new_at_first_follow_up"], row["new_resolved_at_last"]) == (1, 0)
    assert (row["disappeared_at_first_follow_up"], row["disappeared_returned_at_last"]) == (1, 0)
    assert [row[f"first_follow_up_{c}"] for c in ("new", "increasing", "stable", "decreasing", "disappearing")] \
        == [1, 0, 1, 1, 1]
    html = paths["html"].read_text()
    assert 'id="figures"' in html and html.count("data:image/png;base64,") == 3  # categories, ROIs, heterogeneity
    assert (row["rois_per_image_median"], row["rois_per_image_min"], row["rois_per_image_max"]) == (3, 3, 3)  # 3 lesions per scan (LESIONS)
    cells = {row[0]: row[1:] for row in _table_rows(html[html.index('id="figures"'):html.index('id="chart"')])}
    assert cells["patients / scans"][0] == "2 / 6"
    assert cells["patients heterogeneous at the first follow-up"][0] == "100.0 %"
    assert cells["new at the first follow-up → resolved at the last"][0] == "0 of 2 (0.0 %)"
    assert cells["disappearing at the first follow-up → returned at the last"][0] == "0 of 2 (0.0 %)"


def test_cli_cohort_report(out, tmp_path):
    from LesionResponseLib.cli import app

    result = CliRunner().invoke(app, ["cohort-report", str(out), str(out), "-o", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "c" / "cohort.csv")) == 2


def test_track_table_shows_prior_guided_rois_and_detection_limits(out, tmp_path):
    import json
    import shutil

    from LesionResponseLib.report.data import load_report_data
    from LesionResponseLib.report.patient import render_patient_html
    from LesionResponseLib.segmentation.anatomy import NOT_SEARCHED_INTRACRANIAL

    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    data = json.loads((copy / "analysis.json").read_text())
    gone = next(r for r in data["responses"] if "disappearing" in r["categories"].values())
    track = next(t for t in data["tracks"] if t["track_id"] == gone["track_id"])
    k = int(next(k for k, c in gone["categories"].items() if c == "disappearing"))
    prior = track["rois"][str(k - 1)][0]
    data["prior_searches"] = [{"direction": "forward", "timepoint": k, "prior_timepoint": k - 1,
                               "prior_rois": [prior], "roi_id": None,
                               "found": False, "reason": "below the detection limit", "limit_suv": 2.345}]
    shown, by_model = [t for t in data["tracks"]
                       if t["track_id"] != gone["track_id"] and t["rois"].get("0") and t["rois"].get("1")][:2]
    for roi in data["rois"]:
        if roi["roi_id"] in (shown["rois"]["1"][0], by_model["rois"]["1"][0]):
            roi["source"] = "prior-guided"
    data["prior_searches"].append({"direction": "forward", "timepoint": 1, "prior_timepoint": 0,
                                   "prior_rois": [by_model["rois"]["0"][0]],
                                   "roi_id": by_model["rois"]["1"][0], "found": True, "evidence": "model",
                                   "reason": "found by model evidence (below the detection limit)"})
    head = next(t for t in data["tracks"]
                if t["track_id"] not in (gone["track_id"], shown["track_id"], by_model["track_id"]))
    head_roi = next(ids[0] for ids in head["rois"].values() if ids)
    for tp in (1, 2):
        data["prior_searches"].append({"direction": "forward", "timepoint": tp, "prior_timepoint": 0,
                                       "prior_rois": [head_roi],
                                       "roi_id": None, "found": False, "reason": NOT_SEARCHED_INTRACRANIAL,
                                       "limit_suv": float("nan")})
    (copy / "analysis.json").write_text(json.dumps(data))
    rows = _table_rows(render_patient_html(load_report_data(copy)))
    header = next(r for r in rows if r and r[0] == "track")
    tracks = {r[0]: r for r in rows if len(r) == len(header)}
    assert header[-1] == "ROI source / search"
    assert tracks[str(gone["track_id"])][-1] == f"TP{k} searched, not found (limit 2.3 SUV)"
    assert tracks[str(shown["track_id"])][-1] == "TP1 prior-guided"
    assert tracks[str(by_model["track_id"])][-1] == "TP1 prior-guided (model evidence)"
    assert "TP1, TP2 not searched: in the cranial cavity (pituitary uptake or a meningioma?)" in \
        tracks[str(head["track_id"])][-1]
    assert any(r and r[0] == "TP" and r[-1] == "of which prior-guided" for r in rows)


def test_track_table_marks_indeterminate_calls_and_the_queue_lists_what_was_not_reviewed(out, tmp_path):
    """The factory's track 2 is measured ± 25 %: its stable calls carry an interval holding ±30 % ('?'); track 1 is
    marked reviewed by a reader, so the queue section names who and lists the three others."""
    import json
    import shutil

    from LesionResponseLib.analysis.queue import review_queue
    from LesionResponseLib.report.data import load_report_data
    from LesionResponseLib.report.patient import render_patient_html

    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    data = json.loads((copy / "analysis.json").read_text())
    data["reviewed_tracks"] = [1]
    data["audit"].append({"id": "e1", "user": "dr-who", "time": "2026-01-02T10:11:12", "type": "reviewed",
                          "edit": {"type": "reviewed", "track_id": 1}})
    (copy / "analysis.json").write_text(json.dumps(data))
    report = load_report_data(copy)
    html = render_patient_html(report)
    rows = _table_rows(html[html.index('id="tracks"'):html.index('id="review-queue"')])
    header = next(r for r in rows if r and r[0] == "track")
    tracks = {r[0]: dict(zip(header, r, strict=True)) for r in rows if len(r) == len(header) and r[0] != "track"}
    assert tracks["2"]["TP1"] == "stable ?" and tracks["1"]["TP1"] == "decreasing"
    response = next(r for r in report.analysis.responses if r.track_id == 2)
    low, high = response.delta_interval_pct[1]
    assert tracks["2"]["Δ TP1 [%]"] == f"{response.delta_suv_total_pct[1]:.0f}({low:+.0f}…{high:+.0f})"  # 2 lines
    queue = html[html.index('id="review-queue"'):html.index('id="reader-edits"')]
    assert "1 of 4 tracks marked reviewed by a reader: T001 (dr-who 2026-01-02T10:11)" in queue
    listed = [r[0] for r in _table_rows(queue) if r and r[0] != "track"]
    assert listed == [str(i.track_id) for i in review_queue(report.analysis) if not i.reviewed] and "1" not in listed
