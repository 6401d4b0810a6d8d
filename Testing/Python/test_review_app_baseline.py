"""The browser review on a baseline-only analysis (one scan of another tracer, analysed with the override): it
opens with one view, lists the baseline tracks and shows the tracer from the headers, flagged."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

pytest.importorskip("trame_slicer", reason="the web extra is not installed (pip install -e .[web])")
playwright_api = pytest.importorskip("playwright.sync_api")
if shutil.which("chromium") is None:
    pytest.skip("chromium not installed (bash scripts/setup.sh installs it)", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import review_app_support as support  # noqa: E402
from dicom_factory import build_baseline_fdg_analysis  # noqa: E402

SLAB = {"axial_extent_mm": 160}


def test_a_baseline_only_analysis_opens_with_its_tracks_and_tracer(make_phantom, build_once, tmp_path):
    phantom = make_phantom(seed=2, timepoints=2, **SLAB)
    built = build_once("baseline_fdg_s2", lambda folder: build_baseline_fdg_analysis(phantom, folder)) / "out"
    out = support.copy_analysis(built, tmp_path / "analysis")
    rows = support.read_rows(out / "tracks.csv")
    with support.Server(out, tmp_path / "server.log") as server, playwright_api.sync_playwright() as playwright:
        browser = support.launch_chromium(playwright)
        page = support.open_app(browser, server.url)
        assert support.view_count(page) == 1
        assert support.view_pixels(page, 0).std() > 20  # the baseline PET/CT, not a blank view
        assert page.locator("[data-testid^=track-row-]").count() == len(rows) > 3
        page.locator("[data-testid=tab-info]").click()
        info = page.locator("[data-testid=timepoint-info]").inner_text()
        assert "tracer: Fluorodeoxyglucose F^18^ (F-18) — not SSTR PET, analysed on request" in info, info
        browser.close()
