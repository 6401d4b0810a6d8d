"""Export from the browser with a PACS configured (``review-app --pacs``): the patient report as HTML and PDF,
one DICOM SEG and one SR per time point, and every DICOM object stored in a real Orthanc on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request

import pytest

pytest.importorskip("trame_slicer", reason="the web extra is not installed (pip install -e .[web])")
playwright_api = pytest.importorskip("playwright.sync_api")
if shutil.which("chromium") is None:
    pytest.skip("chromium not installed (bash scripts/setup.sh installs it)", allow_module_level=True)

import review_app_support as support  # noqa: E402

pytestmark = support.ONE_WORKER


def _edit_is_held_while_exporting(page, out) -> None:
    """While the export runs the app still answers (the export is a task, not an awaited handler) and refuses an
    edit, which would change the folder the export reads: the refusal names the export, nothing is written."""
    audit = out / "review" / "audit.jsonl"
    lines = len(audit.read_text().splitlines()) if audit.exists() else 0
    page.locator("[data-testid=tab-correct]").click()
    field = page.locator("[data-testid=roi-a] input")
    field.fill(support.read_rows(out / "rois.csv")[0]["roi_id"])
    field.press("Tab")
    page.locator("[data-testid=op-reject]").click()
    page.wait_for_function("(document.querySelector('[data-testid=correction-error]') || {innerText: ''}).innerText"
                           ".includes('being exported')", timeout=30_000)
    assert (len(audit.read_text().splitlines()) if audit.exists() else 0) == lines


def test_export_from_the_app_writes_html_pdf_seg_sr_and_stores_them_in_the_pacs(orthanc, tmp_path):
    import pydicom

    base, port = orthanc
    out = support.copy_analysis(support.review_analysis(), tmp_path / "analysis")
    n = len(support.read_rows(out / "timepoints.csv"))
    with (support.Server(out, tmp_path / "server.log", extra=["--pacs", f"127.0.0.1:{port}:ORTHANC"]) as server,
          playwright_api.sync_playwright() as playwright):
        page = support.open_app(support.launch_chromium(playwright), server.url)
        page.locator("[data-testid=tab-info]").click()
        assert page.get_by_label("PDF too").is_checked()
        page.locator("[data-testid=export]").click()
        _edit_is_held_while_exporting(page, out)
        page.locator("[data-testid=tab-info]").click()
        page.wait_for_function("document.querySelector('[data-testid=export-message]').innerText"
                               ".includes('files written')", timeout=240_000)
        message = page.locator("[data-testid=export-message]").inner_text()
    assert f"sent to 127.0.0.1:{port} (ORTHANC)" in message, message
    report = out / "report"
    assert (report / "report.html").stat().st_size > 1000
    # the PDF is a real document: poppler renders its first page
    pdf = report / "report.pdf"
    rendered = subprocess.run(["pdftoppm", "-png", "-r", "30", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "p")],
                              capture_output=True, timeout=120)
    assert rendered.returncode == 0 and list(tmp_path.glob("p*.png")), rendered.stderr
    written = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p).Modality for p in (report / "dicom").glob("*.dcm")}
    assert sorted(written.values()).count("SEG") == n and sorted(written.values()).count("SR") == n
    stored = json.loads(urllib.request.urlopen(f"{base}/instances?expand", timeout=10).read())
    assert {i["MainDicomTags"]["SOPInstanceUID"] for i in stored} == set(written)
