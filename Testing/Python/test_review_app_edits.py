"""Every correction done in the browser leaves the analysis folder exactly as the same edit through
``lesion-response review`` does: the app edits copy A, the CLI copy B, and after each edit ``rois.csv``,
``tracks.csv``, ``timepoints.csv``, the label maps, ``analysis.json``, ``review/session.json`` and the audit trail
agree (edit ids, times and staged mask names aside, which are unique per edit). Undo restores the files."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("trame_slicer", reason="the web extra is not installed (pip install -e .[web])")
playwright_api = pytest.importorskip("playwright.sync_api")
if shutil.which("chromium") is None:
    pytest.skip("chromium not installed (bash scripts/setup.sh installs it)", allow_module_level=True)

import review_app_support as support  # noqa: E402

pytestmark = support.ONE_WORKER

USER = "reader"
VOLATILE = {"id", "time"}  # unique per edit: differ between two runs of the same edit


def _normalise(value: Any) -> Any:
    """JSON with edit ids, times and per-edit mask file names blanked."""
    if isinstance(value, dict):
        return {k: ("masks/*" if k == "mask" else _normalise(v)) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _audit(out: Path) -> list[dict]:
    path = out / "review" / "audit.jsonl"
    return [_normalise(json.loads(line)) for line in path.read_text().splitlines()] if path.is_file() else []


def assert_same_outputs(a: Path, b: Path) -> None:
    import SimpleITK as sitk

    for name in ("rois.csv", "tracks.csv", "timepoints.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for label in sorted((a / "labels").glob("tp*.nii.gz")):
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(label))),
                              sitk.GetArrayFromImage(sitk.ReadImage(str(b / "labels" / label.name)))), label.name
    analysis_a, analysis_b = (json.loads((x / "analysis.json").read_text()) for x in (a, b))
    assert _normalise(analysis_a) == _normalise(analysis_b)
    session_a, session_b = (json.loads((x / "review" / "session.json").read_text()) for x in (a, b))
    assert _normalise(session_a) == _normalise(session_b)
    assert _audit(a) == _audit(b)


def cli(out: Path, *arguments: str) -> None:
    result = subprocess.run(support.review_app_command() + ["review", str(out), arguments[0], "--user", USER, *arguments[1:]],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("edits")
    source = support.review_analysis()
    a, b = support.copy_analysis(source, root / "app"), support.copy_analysis(source, root / "cli")
    with support.Server(a, root / "server.log", user=USER) as server, playwright_api.sync_playwright() as playwright:
        browser = support.launch_chromium(playwright)
        page = support.open_app(browser, server.url)
        yield a, b, page
        browser.close()
    for folder in (a, b):  # two ~130 MB analyses; the server log stays for a failed run
        shutil.rmtree(folder, ignore_errors=True)


def _lines(out: Path) -> int:
    path = out / "review" / "audit.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def _wait_for_edit(page, out: Path, before: int, timeout_s: float = 60.0) -> dict:
    """The new audit record after a UI action (fails with the app's error text when it refused)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _lines(out) > before:
            # the session saves the outputs before it appends the audit line (ReviewSession.apply)
            return json.loads((out / "review" / "audit.jsonl").read_text().splitlines()[-1])
        error = page.locator("[data-testid=correction-error]")
        if error.count() and error.is_visible():
            raise AssertionError(f"the app refused: {error.inner_text()}")
        time.sleep(0.1)
    raise TimeoutError("no audit record appeared")


def _tab(page, name: str) -> None:
    page.locator(f"[data-testid=tab-{name}]").click()


def _fill(page, testid: str, value: str) -> None:
    field = page.locator(f"[data-testid={testid}] input")
    field.fill(value)
    field.press("Tab")  # commit the value to the server state


def ui(page, out: Path, operation: str, **fields: str) -> dict:
    """Fill the correction panel's fields and press the operation's button."""
    _tab(page, "correct")
    for testid, value in fields.items():
        _fill(page, testid.replace("_", "-"), value)
    before = _lines(out)
    page.locator(f"[data-testid=op-{operation}]").click()
    return _wait_for_edit(page, out, before)


def select_track(page, track_id: int) -> None:
    _tab(page, "tracks")
    sources = support.view_sources(page)
    page.locator(f"[data-testid=track-row-{track_id}]").click()
    support.wait_views_settled(page, sources)


def _rois(out: Path) -> list[dict]:
    return support.read_rows(out / "rois.csv")


def test_ui_corrections_match_the_cli(folders):
    a, b, page = folders
    single = support.single_roi_tracks(a)
    first, second = single[0], single[1]
    rejected = first[1][1]["roi_id"]

    before_reject = (a / "rois.csv").read_bytes(), (a / "tracks.csv").read_bytes()
    ui(page, a, "reject", roi_a=rejected, reason="physiological uptake")
    cli(b, "reject", rejected, "--reason", "physiological uptake")
    assert_same_outputs(a, b)
    assert next(r for r in _rois(a) if r["roi_id"] == rejected)["status"] == "rejected"

    ui(page, a, "undo")
    cli(b, "undo")
    assert_same_outputs(a, b)
    assert ((a / "rois.csv").read_bytes(), (a / "tracks.csv").read_bytes()) == before_reject  # undo restores

    ui(page, a, "redo")
    cli(b, "redo")
    assert_same_outputs(a, b)
    ui(page, a, "restore", roi_a=rejected)
    cli(b, "restore", rejected)
    assert_same_outputs(a, b)

    unlinked, partner = second[1][1]["roi_id"], second[1][0]["roi_id"]
    ui(page, a, "unlink", roi_a=unlinked)
    cli(b, "unlink", unlinked)
    assert_same_outputs(a, b)
    ui(page, a, "link", roi_a=partner, roi_b=unlinked)
    cli(b, "link", partner, unlinked)
    assert_same_outputs(a, b)

    tracks = support.read_rows(a / "tracks.csv")
    new = [int(t["track_id"]) for t in tracks if t["pattern"] == "new"]
    select_track(page, new[0])
    ui(page, a, "merge", merge_track=str(new[1]))
    cli(b, "merge", str(new[0]), str(new[1]))
    assert_same_outputs(a, b)

    long = next(int(t["track_id"]) for t in support.read_rows(a / "tracks.csv")
                if t["first_timepoint"] == "0" and t["last_timepoint"] == "3")
    select_track(page, long)
    _tab(page, "correct")
    page.locator("[data-testid=split-timepoint]").click()
    page.get_by_role("option", name="2", exact=True).click()
    ui(page, a, "split")
    cli(b, "split", str(long), "2")
    assert_same_outputs(a, b)

    members = {r["roi_id"] for r in _rois(a) if r["track_id"] == str(long)}
    select_track(page, long)
    ui(page, a, "reject_track", reason="adrenal")
    cli(b, "reject-track", str(long), "--reason", "adrenal")
    assert_same_outputs(a, b)
    rejected_now = {r["roi_id"] for r in _rois(a) if r["status"] == "rejected"}
    assert len(members) >= 2 and members <= rejected_now
    assert str(long) not in {t["track_id"] for t in support.read_rows(a / "tracks.csv")}
    support.save_screenshot(page, "corrections")
    ui(page, a, "undo")
    cli(b, "undo")
    assert_same_outputs(a, b)


def test_ui_add_and_rethreshold_match_the_cli(folders):
    """Add: click a spot in 'add ROI' mode; edit: re-threshold a ROI. The CLI gets the very mask the app made."""
    a, b, page = folders
    gone = next((int(t["track_id"]), k) for t in support.read_rows(a / "tracks.csv")
                for k in (1, 2, 3) if t[f"category_t{k}"] == "disappearing")
    select_track(page, gone[0])
    tp = gone[1]
    before_rois = len(_rois(a))
    page.locator("[data-testid=mode-add]").click()
    box = page.locator(f"[data-testid=caption-{tp}]").locator("xpath=..").locator("img").bounding_box()
    before = _lines(a)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    record = _wait_for_edit(page, a, before)
    assert record["type"] == "add" and record["created_roi"].startswith(f"tp{tp}-")
    cli(b, "add", str(tp), str(a / "review" / record["edit"]["mask"]))
    assert_same_outputs(a, b)
    assert len(_rois(a)) == before_rois + 1

    target = support.single_roi_tracks(a)[0][1][2]["roi_id"]
    _tab(page, "correct")
    _fill(page, "threshold-percent", "60")
    record = ui(page, a, "edit_roi", roi_a=target)
    assert record["type"] == "edit"
    cli(b, "edit", target, str(a / "review" / record["edit"]["mask"]))
    assert_same_outputs(a, b)

    ui(page, a, "undo")
    cli(b, "undo")
    assert_same_outputs(a, b)
    _tab(page, "audit")
    page.wait_for_function(f"document.querySelectorAll('[data-testid=audit-entry]').length === {_lines(a)}")
    support.save_screenshot(page, "audit")


def test_ui_brush_and_reference_import_match_the_cli(folders, tmp_path):
    """Add with the sphere brush (a click in 'add ROI' mode paints a ball of the panel's radius), and import a
    reference label map (one structure redraws an existing ROI, one marks a place no ROI covers) with the Import
    button: one edit each, the CLI gets the same edits and leaves the same folder, and one undo takes the import
    back."""
    import SimpleITK as sitk

    a, b, page = folders
    new_track = next(int(t["track_id"]) for t in support.read_rows(a / "tracks.csv") if t["category_t1"] == "new")
    select_track(page, new_track)  # the views centre on a lesion that T0 does not have: nothing there at T0
    _tab(page, "correct")
    page.locator("[data-testid=add-tool-brush]").click()
    _fill(page, "brush-radius", "5")
    page.locator("[data-testid=mode-add]").click()
    box = page.locator("[data-testid=caption-0]").locator("xpath=..").locator("img").bounding_box()
    before = _lines(a)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    record = _wait_for_edit(page, a, before)
    assert record["type"] == "add" and record["created_roi"].startswith("tp0-")
    painted = sitk.ReadImage(str(a / "review" / record["edit"]["mask"]))
    voxels = np.argwhere(sitk.GetArrayFromImage(painted) > 0)
    assert len(voxels) and ((np.ptp(voxels, axis=0) * np.array(painted.GetSpacing()[::-1])) <= 10.0).all()
    playwright_api.expect(page.locator("[data-testid=correction-message]")).to_contain_text("painted, radius 5 mm")
    cli(b, "add", "0", str(a / "review" / record["edit"]["mask"]))
    assert_same_outputs(a, b)

    labels = sitk.ReadImage(str(a / "labels" / "tp1.nii.gz"))
    array = sitk.GetArrayFromImage(labels)
    redrawn = next(rows[1] for _, rows in support.single_roi_tracks(a) if 1 in rows)  # drawn a voxel larger
    reference = np.zeros(array.shape, np.uint16)
    reference[ndimage_dilate(array == int(redrawn["label"]))] = 1
    z, y, x = np.argwhere(array == 0)[len(array.ravel()) // 3]  # a place no ROI covers
    reference[z - 1:z + 1, y - 1:y + 1, x - 1:x + 1] = 2
    image = sitk.GetImageFromArray(reference)
    image.CopyInformation(labels)
    path = tmp_path / "tp1_reference.nii.gz"  # the time point comes from the file name
    sitk.WriteImage(image, str(path))
    before_rois = {r["roi_id"]: r for r in _rois(a)}
    record = ui(page, a, "import-reference", reference_path=str(path))
    assert record["type"] == "import_rois" and len(record["edit"]["rois"]) == 2
    playwright_api.expect(page.locator("[data-testid=correction-message]")).to_contain_text("(2 structures)")
    after_rois = {r["roi_id"]: r for r in _rois(a)}
    assert len(after_rois) == len(before_rois) + 1 and after_rois[redrawn["roi_id"]]["source"] == "reader"
    assert float(after_rois[redrawn["roi_id"]]["volume_ml"]) > float(before_rois[redrawn["roi_id"]]["volume_ml"])
    cli(b, "import-rois", str(path))
    assert_same_outputs(a, b)
    ui(page, a, "undo")
    cli(b, "undo")
    assert_same_outputs(a, b)
    assert {r["roi_id"]: r for r in _rois(a)} == before_rois


def ndimage_dilate(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_dilation(mask)


def test_ui_site_and_reference_region_match_the_cli(folders):
    """Set a ROI's site in the panel, and move the liver reference sphere by a click in 'liver ref' mode; the CLI
    gets the same edits (the app's clicked centre) and leaves the same folder; the time-point panel shows the
    reader's sphere."""
    a, b, page = folders
    first = _rois(a)[0]
    roi = first["roi_id"]
    _tab(page, "correct")
    _fill(page, "roi-a", roi)  # the panel describes ROI A with each SUVtotal's SD (rois.csv)
    expected = f"(PV-corrected {float(first['suv_total_pvc']):.1f} ± {float(first['suv_total_pvc_sd']):.1f})"
    page.wait_for_function(f"document.querySelector('[data-testid=roi-info]').innerText.includes({expected!r})",
                           timeout=15_000)
    page.locator("[data-testid=site]").click()
    page.get_by_role("option", name="lung", exact=True).click()
    record = ui(page, a, "set_site", roi_a=roi)
    assert record["type"] == "set_site" and record["sites_after"] == {roi: "lung"}
    cli(b, "site", roi, "lung")
    assert_same_outputs(a, b)

    page.locator("[data-testid=mode-liver-ref]").click()
    box = page.locator("[data-testid=caption-0]").locator("xpath=..").locator("img").bounding_box()
    before = _lines(a)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    record = _wait_for_edit(page, a, before)
    assert record["type"] == "move_reference" and record["edit"]["organ"] == "liver"
    x, y, z = record["edit"]["centre_mm"]
    cli(b, "reference", "0", "liver", f"--centre={x!r},{y!r},{z!r}")
    assert_same_outputs(a, b)
    _tab(page, "info")
    page.wait_for_function("[...document.querySelectorAll('[data-testid=timepoint-info]')][0].innerText"
                           ".includes('mm sphere, reader)')", timeout=30_000)
    sources = support.view_sources(page)
    page.locator("[data-testid=show-spleen-reference]").first.click()  # every view goes to the spleen's sphere
    support.wait_views_settled(page, sources)
    for _ in range(2):
        ui(page, a, "undo")
        cli(b, "undo")
        assert_same_outputs(a, b)
    _tab(page, "info")
    page.wait_for_function("![...document.querySelectorAll('[data-testid=timepoint-info]')][0].innerText"
                           ".includes('reader)')", timeout=30_000)  # both edits undone: the automatic spheres
    support.save_screenshot(page, "reference-regions")


def test_export_from_the_app_writes_the_report_and_dicom_seg_sr(folders):
    import pydicom

    a, _, page = folders
    _tab(page, "info")
    support.save_screenshot(page, "timepoints")
    page.get_by_label("PDF too").uncheck()  # the PDF needs a chromium print: covered by the report tests
    page.locator("[data-testid=export]").click()
    page.wait_for_function("document.querySelector('[data-testid=export-message]').innerText.includes('files written')",
                           timeout=120_000)
    report = a / "report"
    assert (report / "report.html").stat().st_size > 1000
    modalities = sorted(pydicom.dcmread(p).Modality for p in (report / "dicom").glob("*.dcm"))
    n = len(support.read_rows(a / "timepoints.csv"))
    assert modalities.count("SEG") == n and modalities.count("SR") == n
