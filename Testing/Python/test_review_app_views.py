"""The browser review on the review analysis (``review_app_support.review_analysis``), driven like a reader in
headless chromium: views, track table, navigation. Every assertion is on what the browser shows (screenshot
pixels, visible text) or on files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("trame_slicer", reason="the web extra is not installed (pip install -e .[web])")
playwright_api = pytest.importorskip("playwright.sync_api")
if shutil.which("chromium") is None:
    pytest.skip("chromium not installed (bash scripts/setup.sh installs it)", allow_module_level=True)

import review_app_support as support  # noqa: E402
from LesionResponseReview.mrml import CATEGORY_COLORS  # noqa: E402

pytestmark = support.ONE_WORKER
OPENED: dict = {}  # what the page showed when it opened, before any test selected a track


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(analysis folder, server, page): a fresh server on a copy of the review analysis, one browser page."""
    out = support.copy_analysis(support.review_analysis(), tmp_path_factory.mktemp("review") / "analysis")
    with support.Server(out, out.parent / "server.log") as server, playwright_api.sync_playwright() as playwright:
        browser = support.launch_chromium(playwright)
        page = support.open_app(browser, server.url)
        OPENED.update(order=_table_order(page), selected=[t for t in _table_order(page) if _selected(page, t)],
                      reasons=page.locator("[data-testid=queue-reasons]").inner_text())
        yield out, server, page
        browser.close()
    shutil.rmtree(out, ignore_errors=True)  # a ~130 MB analysis; the server log stays for a failed run


def _click_row(page, track_id: int) -> None:
    before = support.view_sources(page)
    page.locator(f"[data-testid=track-row-{track_id}]").click()
    support.wait_views_settled(page, before)


def _press(page, key: str) -> None:
    """Press a shortcut key and wait until the views have redrawn."""
    before = support.view_sources(page)
    page.keyboard.press(key)
    support.wait_views_settled(page, before)


def _selected(page, track_id: int) -> bool:
    return "bg-indigo" in (page.locator(f"[data-testid=track-row-{track_id}]").get_attribute("class") or "")


def test_one_view_per_timepoint_labelled_with_study_date(app):
    out, _, page = app
    rows = support.read_rows(out / "timepoints.csv")
    assert support.view_count(page) == len(rows) == 4
    for row in rows:
        date = row["study_date"]
        caption = page.locator(f"[data-testid=caption-{row['timepoint']}]").inner_text()
        assert caption.startswith(f"T{row['timepoint']} {date[:4]}-{date[4:6]}-{date[6:]}"), caption
    pixels = support.view_pixels(page, 0)
    assert pixels.std() > 20  # an image, not a blank view
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # CT grey levels and PET colours fused


def test_row_click_centres_every_view_on_the_track_in_its_category_colour(app):
    """The lesion of the clicked track is at the centre of every view where it is present, outlined in the
    colour of its category at that time point (rois.csv), as seen in the screenshot."""
    out, _, page = app
    track_id, rois = support.single_roi_tracks(out)[0]
    _click_row(page, track_id)
    assert _selected(page, track_id)
    checked = 0
    for tp in range(support.view_count(page)):
        caption = page.locator(f"[data-testid=caption-{tp}]").inner_text()
        assert f"T{track_id:03d}" in caption
        if tp not in rois:
            continue
        colour = CATEGORY_COLORS[rois[tp]["category"]]
        distance, size = support.colour_blob_near_centre(support.view_pixels(page, tp), colour)
        assert size >= 8 and distance <= 12.0, (tp, rois[tp]["category"], distance, size)
        checked += 1
    assert checked >= 2
    support.save_screenshot(page, "track")


def test_a_roi_of_the_prior_guided_search_is_flagged_in_the_table_and_its_view(app):
    """rois.csv ``source`` = prior-guided: the track's row names that time point, and the note over that view
    says so while the track is selected (so the reader checks what the model did not find)."""
    out, _, page = app
    found = [r for r in support.read_rows(out / "rois.csv") if r["source"] == "prior-guided" and r["status"] == "accepted"]
    assert found, "the review analysis has ROIs of the prior-guided search"
    flagged = {int(r["track_id"]): set() for r in found}
    for r in found:
        flagged[int(r["track_id"])].add(int(r["timepoint"]))
    track_id, timepoints = sorted(flagged.items())[0]
    cell = page.locator(f"[data-testid=not-model-{track_id}]").inner_text().split()
    assert {f"T{tp}" for tp in timepoints} <= set(cell), cell
    _click_row(page, track_id)
    for tp in range(support.view_count(page)):
        caption = page.locator(f"[data-testid=caption-{tp}]").inner_text()
        assert ("prior-guided" in caption) == (tp in timepoints), (tp, caption)


def _table_order(page) -> list[int]:
    rows = page.locator("[data-testid^=track-row-]")
    return [int(rows.nth(i).get_attribute("data-testid").rsplit("-", 1)[1]) for i in range(rows.count())]


def test_the_table_opens_in_review_queue_order_with_the_top_track_selected(app):
    """Rows in the order of analysis.queue over the folder's analysis (likeliest errors first), the first one
    selected, what is left of the queue and why the selected track is in it shown."""
    from LesionResponseLib.analysis import load_analysis
    from LesionResponseLib.analysis.queue import review_queue

    out, _, page = app
    queue = review_queue(load_analysis(out))
    assert OPENED["order"] == [item.track_id for item in queue]
    assert page.locator("[data-testid=queue-summary]").inner_text() == f"{len(queue)} of {len(queue)} tracks left to review"
    first = queue[0]
    assert OPENED["selected"] == [first.track_id]
    shown = OPENED["reasons"]
    assert shown.startswith(f"Why T{first.track_id:03d} is in the queue") and first.reasons[0] in shown


def test_u_steps_to_the_next_unreviewed_track_and_centres_every_view_on_it(app):
    """U from the queue's first track selects the second; every view shows it in its caption and, where the track
    has one ROI, that ROI outlined in its category colour at the view's centre (pixels)."""
    out, _, page = app
    order = OPENED["order"]  # the queue's (the table may be sorted otherwise by now)
    _click_row(page, order[0])
    _press(page, "u")
    target = order[1]
    assert _selected(page, target)
    rois = {int(r["timepoint"]): r for r in support.read_rows(out / "rois.csv")
            if r["track_id"] == str(target) and r["status"] == "accepted"}
    single = {tp for tp in rois if sum(r["track_id"] == str(target) and int(r["timepoint"]) == tp
                                       for r in support.read_rows(out / "rois.csv")) == 1}
    checked = 0
    for tp in range(support.view_count(page)):
        assert f"T{target:03d}" in page.locator(f"[data-testid=caption-{tp}]").inner_text()
        if tp in single:
            distance, size = support.colour_blob_near_centre(support.view_pixels(page, tp),
                                                             CATEGORY_COLORS[rois[tp]["category"]])
            assert size >= 4 and distance <= 12.0, (tp, distance, size)
            checked += 1
    assert checked >= 1
    support.save_screenshot(page, "queue")


def test_next_previous_keys_follow_the_table(app):
    out, _, page = app
    items = _table_order(page)
    _click_row(page, items[0])
    _press(page, "n")
    assert _selected(page, items[1])
    assert f"T{items[1]:03d}" in page.locator("[data-testid=caption-0]").inner_text()
    _press(page, "p")
    assert f"T{items[0]:03d}" in page.locator("[data-testid=caption-0]").inner_text()


def test_table_filters_by_category_and_sorts(app):
    out, _, page = app
    rows = support.read_rows(out / "tracks.csv")
    followups = [c for c in rows[0] if c.startswith("category_t")]
    new = [r for r in rows if "new" in [r[c] for c in followups]]
    page.locator("[data-testid=category-filter]").click()
    page.get_by_role("option", name="new", exact=True).click()
    page.wait_for_function(f"document.querySelector('[data-testid=track-summary]').innerText.startsWith('{len(new)} of')")
    assert page.locator("[data-testid^=track-row-]").count() == len(new)
    page.locator("[data-testid=category-filter]").click()
    page.get_by_role("option", name="any", exact=True).click()
    page.wait_for_function(f"document.querySelectorAll('[data-testid^=track-row-]').length === {len(rows)}")
    page.get_by_role("columnheader", name="T1 ΔSUVtotal").click()  # sort by the change at T1
    deltas = {int(r["track_id"]): float(r["delta_suv_total_pct_t1"]) for r in rows if r["delta_suv_total_pct_t1"]}
    # wait for the whole column in order (ties allowed): the unsorted table may already start with a -100 % row
    page.wait_for_function("""deltas => {
        const shown = [...document.querySelectorAll('[data-testid^=track-row-]')]
            .map(r => deltas[r.dataset.testid.replace('track-row-', '')]).filter(d => d !== undefined);
        return shown.every((d, i) => i === 0 || shown[i - 1] <= d);
    }""", arg={str(t): d for t, d in deltas.items()})
    shown = [int(t.removeprefix("track-row-")) for t in page.locator("[data-testid^=track-row-]").evaluate_all(
        "rows => rows.map(r => r.dataset.testid)")]
    ordered = [deltas[t] for t in shown if t in deltas]
    assert ordered == sorted(ordered) and len(set(ordered)) > 2  # the whole column in order, not only its first row


def test_click_in_one_view_moves_the_others_to_the_corresponding_point(app):
    """A click off-centre in view 0: the other views now show at their centre what they showed, before, at the
    same offset (the registered point), and view 0 stays where it was."""
    out, _, page = app
    track_id, _ = support.single_roi_tracks(out)[0]
    _click_row(page, track_id)
    n = support.view_count(page)
    before = {k: support.view_pixels(page, k).astype(float) for k in range(n)}
    height, width = before[0].shape[:2]
    offset = (int(0.18 * width), int(0.12 * height))  # px right, down
    box = page.locator("[data-testid=caption-0]").locator("xpath=..").locator("img").bounding_box()
    sources = support.view_sources(page)
    page.mouse.click(box["x"] + width / 2 + offset[0], box["y"] + height / 2 + offset[1])
    support.wait_views_settled(page, [""] + sources[1:])  # views 1.. redraw; view 0 need not
    # a 128 px patch holds organ edges; a 48 px one inside the liver held only PET noise, whose texture differs
    # between the slices before and after the click, so the match there was chance (corr 0.48, 32 px off)
    half, search = 64, 40

    def patch(image, cx, cy):
        return image[cy - half:cy + half, cx - half:cx + half].mean(-1).ravel()

    def best_shift(after, before_k):
        """Where in the earlier frame the new centre patch fits best (template matching, px from centre)."""
        target = patch(after, cx, cy)
        scores = {(dx, dy): np.corrcoef(target, patch(before_k, cx + dx, cy + dy))[0, 1]
                  for dx in range(offset[0] - search, offset[0] + search + 1, 2)
                  for dy in range(offset[1] - search, offset[1] + search + 1, 2)}
        return max(scores, key=scores.get), max(scores.values())

    cx, cy = width // 2, height // 2
    for k in range(1, n):
        (dx, dy), score = best_shift(support.view_pixels(page, k).astype(float), before[k])
        # the view moved by the click's offset (to within the registration's local deformation)
        assert np.hypot(dx - offset[0], dy - offset[1]) <= 12 and score > 0.4, (k, dx, dy, offset, score)
    assert np.corrcoef(patch(support.view_pixels(page, 0).astype(float), cx, cy), patch(before[0], cx, cy))[0, 1] > 0.95


def test_a_click_on_the_coronal_mip_navigates_to_the_hot_spot(app):
    """MIP tab: a click elsewhere moves the views away; a click on the selected track's ROI projection at time
    point k brings view k back onto that lesion (its category colour at the centre)."""
    import SimpleITK as sitk

    out, _, page = app
    track_id, rois = support.single_roi_tracks(out)[0]
    tp = max(rois, key=lambda k: float(rois[k]["suv_max"]))
    _click_row(page, track_id)
    page.locator("[data-testid=tab-mip]").click()
    mip = page.locator(f"[data-testid=mip-{tp}]")
    mip.wait_for()
    box = mip.bounding_box()
    suv = sitk.ReadImage(str(out / "suv" / f"tp{tp}.nii.gz"))
    i, _, k = suv.TransformPhysicalPointToContinuousIndex(tuple(float(rois[tp][c]) for c in ("x_mm", "y_mm", "z_mm")))
    nx, _, nz = suv.GetSize()
    target = (box["x"] + (i + 0.5) / nx * box["width"], box["y"] + (1 - (k + 0.5) / nz) * box["height"])
    sources = support.view_sources(page)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + 0.08 * box["height"])  # the head: away
    support.wait_views_settled(page, sources)
    assert support.colour_blob_near_centre(support.view_pixels(page, tp),
                                           CATEGORY_COLORS[rois[tp]["category"]])[0] > 12
    sources = support.view_sources(page)
    page.mouse.click(*target)
    support.wait_views_settled(page, sources)
    distance, size = support.colour_blob_near_centre(support.view_pixels(page, tp), CATEGORY_COLORS[rois[tp]["category"]])
    assert size >= 8 and distance <= 12.0, (distance, size)
    support.save_screenshot(page, "mip")
    page.locator("[data-testid=tab-tracks]").click()


def test_the_settings_tab_shows_every_setting_and_the_rerun_command(app, tmp_path):
    """One row per setting of LesionResponseLib.config with its value and default; an edited value gives the
    command that re-runs the analysis with it, a refused one says why."""
    from LesionResponseLib.config import settings

    out, _, page = app
    page.locator("[data-testid=tab-settings]").click()
    rows = page.locator("[data-testid=setting-row]")
    rows.first.wait_for()
    assert rows.count() == len(settings())
    dilation = rows.nth([s.path for s in settings()].index("matching.dilation_mm")).locator("input")
    assert dilation.input_value() == "8.0"
    dilation.fill("10")
    dilation.press("Tab")
    command = page.locator("[data-testid=settings-command]")
    page.wait_for_function("document.querySelector('[data-testid=settings-command]').innerText"
                           ".includes('matching.dilation_mm=10')")
    recorded = json.loads((out / "analysis.json").read_text())["input_source"]["resolved"]  # the phantom's DICOM
    assert command.inner_text().startswith(f"lesion-response analyze {recorded} -o {out.resolve()} --config "
                                           f"{out.resolve() / 'analysis.json'} --set matching.dilation_mm=10")
    page.screenshot(path=str(tmp_path / "settings.png"))
    dilation.fill("-1")
    dilation.press("Tab")
    page.wait_for_function("document.querySelector('[data-testid=settings-error]') !== null")
    assert "matching.dilation_mm = -1.0 is not allowed" in page.locator("[data-testid=settings-error]").inner_text()
