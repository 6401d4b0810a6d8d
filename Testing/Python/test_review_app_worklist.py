"""The cohort worklist in two headless chromium browsers: reader A opens a patient (the browser moves to that
patient's review, which holds its lock), reader B's worklist shows the lock and refuses to open the same patient,
and the lock is released once A's page closes."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("trame_slicer", reason="the web extra is not installed (pip install -e .[web])")
playwright_api = pytest.importorskip("playwright.sync_api")
if shutil.which("chromium") is None:
    pytest.skip("chromium not installed (bash scripts/setup.sh installs it)", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import review_app_support as support  # noqa: E402

pytestmark = support.ONE_WORKER

IDLE_EXIT_S = 3  # the patients' apps stop this long after their page closed (the test waits for it)


def _cohort(tmp_path: Path) -> Path:
    """A cohort output folder holding the browser tests' review analysis of the demo patient twice (as two patients)
    and a failed one (the worklist, locks and queue need a 4-time-point analysis, not the model's ROIs)."""
    cohort = tmp_path / "cohort"
    demo = support.review_analysis()
    for name in ("PAT-A", "PAT-B"):
        support.copy_analysis(demo, cohort / "patients" / name)
    (cohort / "patients" / "PAT-C").mkdir()
    (cohort / "patients" / "PAT-C" / "cohort-failed.json").write_text('{"error": "DicomInputError: no PET"}')
    return cohort


def _row(page, patient: str) -> str:
    return page.locator(f"[data-testid=worklist-row-{patient}]").inner_text()


def test_worklist_opens_a_patient_and_shows_its_lock_to_a_second_reader(tmp_path):
    cohort = _cohort(tmp_path)
    log = tmp_path / "worklist.log"
    server = support.Server(cohort, log, extra=["--idle-exit", str(IDLE_EXIT_S)])
    with server, playwright_api.sync_playwright() as playwright:
        browser = support.launch_chromium(playwright)
        reader_b = browser.new_page()
        reader_b.goto(server.url + "?user=reader-b")
        reader_b.locator("[data-testid=worklist-row-PAT-A]").wait_for()
        assert "not started" in _row(reader_b, "PAT-A") and "failed" in _row(reader_b, "PAT-C")
        tracks = len(support.read_rows(cohort / "patients" / "PAT-A" / "tracks.csv"))
        assert f"0 of {tracks}" in _row(reader_b, "PAT-A")  # tracks reviewed of all
        reader_a = browser.new_page(viewport={"width": 1600, "height": 1000})
        reader_a.goto(server.url + "?user=reader-a")
        reader_a.locator("[data-testid=open-PAT-A]").click()
        reader_a.wait_for_url(lambda url: f":{server.port}/" not in url, timeout=240_000)  # A moved to PAT-A's app
        reader_a.wait_for_function("document.querySelectorAll('[data-testid^=caption-]').length === 4",
                                   timeout=120_000)
        assert (cohort / "patients" / "PAT-A" / "review" / "session.lock").read_text().startswith("user=reader-a")
        lock = reader_b.locator("[data-testid=lock-PAT-A]")
        reader_b.wait_for_function("document.querySelector('[data-testid=lock-PAT-A]').innerText === 'reader-a'",
                                   timeout=15_000)  # B's list shows who has it open
        assert lock.inner_text() == "reader-a" and reader_b.locator("[data-testid=lock-PAT-B]").inner_text() == ""
        reader_b.locator("[data-testid=open-PAT-A]").click()
        reader_b.wait_for_function("document.querySelector('[data-testid=worklist-error]').innerText.includes("
                                   "'PAT-A is open by reader-a')", timeout=15_000)
        assert f":{server.port}/" in reader_b.url  # B stayed on the worklist
        reader_a.keyboard.press("r")  # A marks the queue's first track reviewed
        reader_a.wait_for_function("document.querySelector('[data-testid=queue-summary]').innerText.startsWith("
                                   f"'{tracks - 1} of {tracks}')", timeout=30_000)
        reader_a.close()  # A leaves: PAT-A's app stops and releases the lock
        reader_b.wait_for_function("document.querySelector('[data-testid=lock-PAT-A]').innerText === ''",
                                   timeout=(IDLE_EXIT_S + 30) * 1000)
        assert "in review" in _row(reader_b, "PAT-A") and "reader-a" in _row(reader_b, "PAT-A")
        assert f"1 of {tracks}" in _row(reader_b, "PAT-A")
        browser.close()
    deadline = time.monotonic() + 30
    while (cohort / "patients" / "PAT-A" / "review" / "session.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not (cohort / "patients" / "PAT-A" / "review" / "session.lock").exists()
