"""Edits survive a page reload and a killed server (SIGKILL: each edit is saved as it is made), and a
non-loopback bind refuses every request without the token."""

from __future__ import annotations

import shutil
import socket
import urllib.request

import pytest

pytest.importorskip("trame_slicer", reason="the web extra is not installed (pip install -e .[web])")
playwright_api = pytest.importorskip("playwright.sync_api")
if shutil.which("chromium") is None:
    pytest.skip("chromium not installed (bash scripts/setup.sh installs it)", allow_module_level=True)

import review_app_support as support  # noqa: E402
from test_review_app_edits import _lines, _wait_for_edit, select_track, ui  # noqa: E402

pytestmark = support.ONE_WORKER


def _category_cell(page, k: int, track_id: int) -> str:
    return page.locator(f"[data-testid=cat-t{k}-{track_id}]").inner_text()


def test_reload_and_killed_server_keep_every_edit(tmp_path):
    out = support.copy_analysis(support.review_analysis(), tmp_path / "analysis")
    track_id, rois = support.single_roi_tracks(out)[0]
    tp = max(k for k in rois if k > 0)
    roi_id = rois[tp]["roi_id"]
    server = support.Server(out, tmp_path / "server.log")
    with playwright_api.sync_playwright() as playwright:
        browser = support.launch_chromium(playwright)
        with server:
            page = support.open_app(browser, server.url)
            shown_before = _category_cell(page, tp, track_id)
            select_track(page, track_id)
            ui(page, out, "reject", roi_a=roi_id)
            page.locator("[data-testid=tab-tracks]").click()
            expected = next(t for t in support.read_rows(out / "tracks.csv") if t["track_id"] == str(track_id))
            assert expected[f"category_t{tp}"] not in shown_before  # the edit changed the category in the file
            page.wait_for_function(f"document.querySelector('[data-testid=cat-t{tp}-{track_id}]').innerText"
                                   f".includes({expected[f'category_t{tp}']!r})")  # and the table followed
            changed = _category_cell(page, tp, track_id)
            left = page.locator("[data-testid=queue-summary]").inner_text()
            before = _lines(out)
            page.keyboard.press("r")  # mark the selected track reviewed: an edit like the others
            assert _wait_for_edit(page, out, before)["type"] == "reviewed"
            page.wait_for_function(f"document.querySelector('[data-testid=queue-{track_id}]').innerText.includes('✓')")
            reviewed = page.locator("[data-testid=queue-summary]").inner_text()
            assert int(reviewed.split()[0]) == int(left.split()[0]) - 1
            page.reload()
            support.wait_views_settled(page)
            assert _category_cell(page, tp, track_id) == changed
            server.kill()  # SIGKILL: no shutdown code runs
        assert next(r for r in support.read_rows(out / "rois.csv") if r["roi_id"] == roi_id)["status"] == "rejected"
        with support.Server(out, tmp_path / "server2.log", port=server.port):
            page = support.open_app(browser, server.url)
            assert _category_cell(page, tp, track_id) == changed
            assert "✓" in page.locator(f"[data-testid=queue-{track_id}]").inner_text()  # still marked reviewed
            assert page.locator("[data-testid=queue-summary]").inner_text() == reviewed
            page.locator("[data-testid=tab-audit]").click()
            assert page.locator("[data-testid=audit-entry]").count() == _lines(out) == 2
            assert "reviewed" in page.locator("[data-testid=audit-entry]").first.inner_text()
            ui(page, out, "undo")  # the restarted server holds the same session: undo works across the kill
            page.locator("[data-testid=tab-tracks]").click()
            page.wait_for_function(f"document.querySelector('[data-testid=queue-summary]').innerText === {left!r}")
            ui(page, out, "undo")
            page.locator("[data-testid=tab-tracks]").click()
            page.wait_for_function(f"document.querySelector('[data-testid=cat-t{tp}-{track_id}]').innerText"
                                   f".trim() === {shown_before.strip()!r}")
        browser.close()


def _status(url: str, headers: dict | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _machine_address() -> str:
    """A non-loopback address of this machine (the route to a public address; nothing is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed, only selects an interface
            return probe.getsockname()[0]
        except OSError:
            return ""


def test_non_loopback_bind_refuses_requests_without_the_token(tmp_path):
    out = support.copy_analysis(support.review_analysis(), tmp_path / "analysis")
    log = tmp_path / "server.log"
    with support.Server(out, log, host="0.0.0.0") as server:
        printed = log.read_text()
        token = printed.split("?token=")[1].split()[0]  # generated and printed at start
        assert len(token) >= 24
        hosts = ["127.0.0.1"] + ([address] if (address := _machine_address()) and address != "127.0.0.1" else [])
        for host in hosts:
            base = f"http://{host}:{server.port}"
            assert _status(f"{base}/") == 403
            assert _status(f"{base}/index.html") == 403
            assert _status(f"{base}/index.html?token=wrong") == 403
            websocket = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
            assert _status(f"{base}/ws", websocket) == 403
            assert _status(f"{base}/index.html?token={token}") == 200
        with playwright_api.sync_playwright() as playwright:  # the page works with the printed URL
            browser = support.launch_chromium(playwright)
            server.token = token
            page = support.open_app(browser, server.url)
            assert support.view_count(page) == 4
            browser.close()
