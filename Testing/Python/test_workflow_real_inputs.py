"""A first scan of another tracer, delivered as a ZIP: refused without the override; with it, analysed from the
archive, and a report whose every image renders (checked on the PDF), the tracer flagged in the report and SR."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from conftest import require_tool
from dicom_factory import baseline_fdg_zip, build_baseline_fdg_analysis

from LesionResponseLib.analysis import load_analysis
from LesionResponseLib.dicomio.tracer import TracerError
from LesionResponseLib.workflow import run_pipeline

SLAB = {"axial_extent_mm": 160}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def baseline(make_phantom, build_once) -> Path:
    """The analysis folder of a one-scan [18F]FDG ZIP (dicom_factory.build_baseline_fdg_analysis), built once."""
    phantom = make_phantom(seed=2, timepoints=2, **SLAB)
    return build_once("baseline_fdg_s2", lambda folder: build_baseline_fdg_analysis(phantom, folder)) / "out"


def test_another_tracer_is_refused_without_the_override(make_phantom, tmp_path):
    archive = baseline_fdg_zip(make_phantom(seed=2, timepoints=2, **SLAB), tmp_path)
    with pytest.raises(TracerError, match=r"the PET shows Fluorodeoxyglucose F\^18\^ .*--allow-other-tracer"):
        run_pipeline(archive, tmp_path / "out")


def test_the_archive_is_analysed_from_its_unpacked_copy(baseline):
    analysis = load_analysis(baseline)
    [info] = analysis.timepoints
    assert info.tracer_override and info.radiopharmaceutical == "Fluorodeoxyglucose F^18^"
    assert all(Path(f).is_relative_to(baseline / "archives") and Path(f).is_file() for f in info.pet_files)
    assert analysis.parameters.input.allow_other_tracer and {r.pattern for r in analysis.responses} == {"baseline-only"}
    assert len(analysis.rois) > 3 and analysis.registrations == []


def test_baseline_report_shows_what_exists_and_flags_the_tracer(baseline):
    html = (baseline / "report" / "report.html").read_text()
    assert "Fluorodeoxyglucose F^18^ PET/CT, 1 time point," in html and 'id="tracer-warning"' in html
    assert "Baseline only: one scan, no follow-up yet." in html
    assert "Tumour volume = Σ volume" in html and "SSTR-expressing" not in html  # FDG uptake is not SSTR expression
    for absent in ('id="waterfall"', 'id="category-counts"', 'id="spaghetti"'):  # they need a follow-up
        assert absent not in html
    images = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]*)"', html)
    assert len(images) == html.count("<img ")  # every image embedded
    assert sorted(alt for alt, _ in images) == ["MIP TP0", "tumour burden by site"]  # what one scan has
    assert all(base64.b64decode(image).startswith(PNG) for _, image in images)


def test_every_image_of_the_baseline_report_renders_in_the_pdf(baseline, tmp_path):
    pdfimages, pdftoppm = require_tool("pdfimages"), require_tool("pdftoppm")
    pdf = baseline / "report" / "report.pdf"
    listing = subprocess.run([pdfimages, "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in listing.splitlines()[2:] if line.strip()]
    html = (baseline / "report" / "report.html").read_text()
    assert len([r for r in rows if r[2] == "image"]) == html.count("<img ")  # a broken image embeds nothing
    assert all(int(r[3]) > 100 and int(r[4]) > 100 for r in rows if r[2] == "image")
    subprocess.run([pdftoppm, "-r", "40", "-png", str(pdf), str(tmp_path / "page")], check=True)
    assert sorted(tmp_path.glob("page-*.png"))
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "Not somatostatin-receptor PET" in text and "Fluorodeoxyglucose" in text


def test_sr_states_the_tracer_and_the_override(baseline):
    [sr] = (baseline / "report" / "dicom").glob("TP0_SR.dcm")
    content = pydicom.dcmread(sr).ContentSequence
    evaluations = [item for group in _items(content) for item in _items(group.get("ContentSequence", []))
                   if item.ValueType == "CODE"]
    named = {item.ConceptNameCodeSequence[0].CodeMeaning: item.ConceptCodeSequence[0] for item in evaluations}
    assert named["Radiopharmaceutical"].CodeValue == "35321007"  # SCT Fluorodeoxyglucose F^18^
    assert named["Analysed although not somatostatin-receptor PET"].CodeMeaning == "Yes"
    if shutil.which("dciodvfy"):
        result = subprocess.run(["dciodvfy", str(sr)], capture_output=True, text=True)
        assert "Error" not in result.stderr, result.stderr[-2000:]


def _items(sequence):
    """Every content item under ``sequence``, depth first."""
    for item in sequence:
        yield item
        yield from _items(item.get("ContentSequence", []))


def test_analyze_and_cohort_commands_take_the_override(make_phantom, tmp_path):
    from typer.testing import CliRunner

    from LesionResponseLib.cli import app
    from LesionResponseLib.cli_base import EXIT_INPUT

    archive = baseline_fdg_zip(make_phantom(seed=2, timepoints=2, **SLAB), tmp_path)
    result = CliRunner().invoke(app, ["analyze", str(archive), "-o", str(tmp_path / "out")])
    assert result.exit_code == EXIT_INPUT and "Fluorodeoxyglucose" in result.output and "--allow-other-tracer" in result.output
    for command in ("analyze", "cohort-analyze", "inspect"):
        assert "--allow-other-tracer" in CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"}).output


def test_a_cohort_zip_is_unpacked_beside_the_output_and_its_patients_found(tmp_path):
    import zipfile

    from dicom_factory import write_series

    from LesionResponseLib.workflow.cohort import discover, input_fingerprint

    for name in ("ALPHA", "BRAVO"):
        write_series(tmp_path / "export" / name, patient_id=name)
    archive = tmp_path / "cohort.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted((tmp_path / "export").rglob("*.dcm")):
            handle.write(path, path.relative_to(tmp_path / "export"))
    jobs = discover(archive, unpack_dir=tmp_path / "out" / "archives")
    assert [j.patient_id for j in jobs] == ["ALPHA", "BRAVO"]
    for job in jobs:
        folder = Path(job.folder)
        assert folder.is_relative_to(tmp_path / "out" / "archives") and folder.name == job.patient_id
        assert len(list(folder.iterdir())) == 12 and input_fingerprint(folder)
