"""Re-run from the Settings tab: a lower 'increasing' threshold (read only by the categorisation, which every run
recomputes) makes the re-run reuse every cached stage, and the reloaded table shows exactly the categories that
threshold implies, with the reader's edit made before the re-run still applied and the re-run in the audit trail."""

from __future__ import annotations

import json

import review_app_support as support

# skips this module where that one skips (no web extra, no playwright, no chromium)
from test_review_app_edits import playwright_api, select_track, ui
from test_workflow_rerun import rerun_analysis

pytestmark = support.ONE_WORKER
SETTING = "response.increase_threshold_pct"


def _deltas(out) -> dict[tuple[int, int], tuple[str, float | None]]:
    """(track, follow-up) -> (category, ΔSUVtotal %) of tracks.csv."""
    result = {}
    for row in support.read_rows(out / "tracks.csv"):
        for key, category in row.items():
            if key.startswith("category_t") and category:
                k = key.removeprefix("category_t")
                delta = row[f"delta_suv_total_pct_t{k}"]
                result[(int(row["track_id"]), int(k))] = (category, float(delta) if delta else None)
    return result


def _expected(shown: dict[tuple[int, int], tuple[str, float | None]], increase: float) -> dict[tuple[int, int], str]:
    """The categories with the increase threshold at ``increase``: a stable change above it is increasing
    (analysis.response; nothing else reads the setting)."""
    return {key: "increasing" if category == "stable" and delta > increase else category
            for key, (category, delta) in shown.items()}


def test_rerun_from_settings_reuses_the_cache_and_keeps_the_review(make_phantom, build_once, tmp_path):
    from LesionResponseLib.config import settings

    out = support.copy_analysis(rerun_analysis(make_phantom, build_once)[1], tmp_path / "analysis", with_cache=True)
    track_id, rois = support.single_roi_tracks(out)[0]
    rejected = rois[1]["roi_id"]
    with support.Server(out, tmp_path / "server.log") as server, playwright_api.sync_playwright() as playwright:
        browser = support.launch_chromium(playwright)
        page = support.open_app(browser, server.url)
        select_track(page, track_id)
        ui(page, out, "reject", roi_a=rejected, reason="physiological uptake")
        shown = _deltas(out)  # after the edit: the re-run must keep it
        rising = [delta for category, delta in shown.values() if category == "stable" and delta > 0]
        increase = round(max(rising) / 2, 2)  # halfway to the largest stable rise: that track becomes increasing
        expected = _expected(shown, increase)

        page.locator("[data-testid=tab-settings]").click()
        recorded = json.loads((out / "analysis.json").read_text())["input_source"]["resolved"]
        assert page.locator("[data-testid=settings-input] input").input_value() == recorded  # the phantom's DICOM
        field = page.locator("[data-testid=setting-row]").nth([s.path for s in settings()].index(SETTING))
        field.locator("input").fill(f"{increase:g}")
        field.locator("input").press("Tab")
        page.wait_for_function("document.querySelector('[data-testid=settings-command]').innerText"
                               f".includes('--set {SETTING}={increase:g}')")
        page.locator("[data-testid=settings-rerun]").click()
        page.locator("[data-testid=settings-stage]").wait_for(timeout=30_000)  # the stage being run is shown
        message = page.locator("[data-testid=settings-message]")
        message.wait_for(timeout=180_000)
        error = page.locator("[data-testid=settings-run-error]")
        assert not error.count(), error.inner_text()
        assert "re-run finished: 0 stage step(s) computed" in message.inner_text(), message.inner_text()
        assert "1 edit(s) re-applied" in message.inner_text()

        page.locator("[data-testid=tab-tracks]").click()
        for (track, k), category in sorted(expected.items()):  # the reloaded table, as the reader sees it
            cell = f"[data-testid=cat-t{k}-{track}]"
            page.wait_for_function(f"document.querySelector({cell!r}).innerText.includes({category!r})",
                                   timeout=10_000)
        after = {key: category for key, (category, _) in _deltas(out).items()}
        assert after == expected and after != {key: category for key, (category, _) in shown.items()}
        assert next(r for r in support.read_rows(out / "rois.csv") if r["roi_id"] == rejected)["status"] == "rejected"
        page.locator("[data-testid=tab-audit]").click()
        entry = page.locator("[data-testid=audit-entry]").first
        assert "reader · rerun" in entry.inner_text() and f"{SETTING}={increase:g}" in entry.inner_text()

        # an input that is not there is refused before anything runs; a run that fails shows analyze's error and
        # leaves the folder as it was; Cancel stops a run (the folder written whole or not at all)
        page.locator("[data-testid=tab-settings]").click()
        reran = (out / "analysis.json").read_bytes()
        (tmp_path / "empty").mkdir()
        for folder in ("moved", "empty"):
            page.locator("[data-testid=settings-input] input").fill(str(tmp_path / folder))
            page.locator("[data-testid=settings-input] input").press("Tab")
            page.locator("[data-testid=settings-rerun]").click()
            page.wait_for_function("document.querySelector('[data-testid=settings-run-error]')?.innerText"
                                   f".includes({str(tmp_path / folder)!r})", timeout=60_000)
        assert "error:" in page.locator("[data-testid=settings-run-error]").inner_text()  # analyze's own message
        assert "re-run failed; nothing changed" in message.inner_text()
        assert (out / "analysis.json").read_bytes() == reran
        page.locator("[data-testid=settings-input] input").fill(recorded)
        page.locator("[data-testid=settings-input] input").press("Tab")
        page.locator("[data-testid=settings-rerun]").click()
        page.locator("[data-testid=settings-cancel]").click()
        page.wait_for_function("document.querySelector('[data-testid=settings-message]')?.innerText"
                               ".includes('re-run cancelled')", timeout=60_000)
        if "nothing changed" in message.inner_text():
            assert (out / "analysis.json").read_bytes() == reran
        page.screenshot(path=str(tmp_path / "settings.png"))
        browser.close()
    analysis = json.loads((out / "analysis.json").read_text())
    assert analysis["parameters"]["response"]["increase_threshold_pct"] == increase
    assert [edit["type"] for edit in analysis["audit"]] == ["reject"]
