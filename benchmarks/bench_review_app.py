"""Browser review (``lesion-response review-app``) speed and memory, driven in headless chromium.

For the demo patient with 4 and with 7 time points (built by the real analysis into the test cache, once):
start to HTTP up, start to the first rendered frame of every view, track jump latency (row click until every
view shows a new frame), edit latency (reject + recompute until the edited view shows it and the file is
written; then undo), server RSS. Targets on 2 cores: first frame < 10 s, jump < 500 ms with 7 views,
edit + recompute < 1 s, RSS < 2 GB.

    LESION_RESPONSE_TEST_CACHE=/work/cache/tests python benchmarks/bench_review_app.py [--timepoints 4 7] [--jumps 10] [--encoder png|jpeg]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Testing" / "Python"))
import review_app_support as support  # noqa: E402

# JS run in the page: click an element, resolve with the ms until every listed view image changed
CLICK_AND_WAIT = """async ([selector, views]) => {
  const imgs = views.map(k => document.querySelector(`[data-testid=caption-${k}]`).parentElement.querySelector('img'));
  const before = imgs.map(i => i.src);
  const t0 = performance.now();
  document.querySelector(selector).click();
  return await new Promise((resolve, reject) => {
    const check = () => {
      if (imgs.every((img, k) => img.src !== before[k])) resolve(performance.now() - t0);
      else if (performance.now() - t0 > 30000) reject(new Error('views did not redraw'));
      else setTimeout(check, 2);
    };
    check();
  });
}"""


def _rss_mb(pid: int) -> float:
    import psutil

    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20


def measure(timepoints: int, jumps: int, encoder: str = "png") -> dict:
    from playwright.sync_api import sync_playwright

    source = support.demo_analysis(timepoints=timepoints)
    with tempfile.TemporaryDirectory() as tmp:
        out = support.copy_analysis(source, Path(tmp) / "analysis")
        server = support.Server(out, Path(tmp) / "server.log", extra=["--encoder", encoder])
        start = time.monotonic()
        server.start()
        ready = time.monotonic() - start
        with sync_playwright() as playwright:
            browser = support.launch_chromium(playwright)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(server.url)
            page.wait_for_function(f"[...document.querySelectorAll('img.image-display-area')]"
                                   f".filter(i => i.src.startsWith('blob:')).length === {timepoints}", timeout=120_000)
            first_frame = time.monotonic() - start
            support.wait_views_settled(page)
            views = list(range(timepoints))
            ids = [int(r["track_id"]) for r in support.read_rows(out / "tracks.csv")]
            jump_ms = []
            for i in range(jumps):
                track = ids[(i + 1) % len(ids)]
                jump_ms.append(page.evaluate(CLICK_AND_WAIT, [f"[data-testid=track-row-{track}]", views]))
                support.wait_views_settled(page, quiet_s=0.3)
            track_id, rois = support.single_roi_tracks(out)[0]
            tp = max(rois)
            page.evaluate(CLICK_AND_WAIT, [f"[data-testid=track-row-{track_id}]", views])
            support.wait_views_settled(page, quiet_s=0.3)
            page.locator("[data-testid=tab-correct]").click()
            field = page.locator("[data-testid=roi-a] input")
            field.fill(rois[tp]["roi_id"])
            field.press("Tab")
            time.sleep(0.5)
            edit_ms = [page.evaluate(CLICK_AND_WAIT, ["[data-testid=op-reject]", [tp]])]
            support.wait_views_settled(page, quiet_s=0.3)
            edit_ms.append(page.evaluate(CLICK_AND_WAIT, ["[data-testid=op-undo]", [tp]]))
            rss = _rss_mb(server.process.pid)
            browser.close()
        server.kill()
    return {"timepoints": timepoints, "http_up_s": ready, "first_frame_s": first_frame,
            "jump_ms_median": statistics.median(jump_ms), "jump_ms_max": max(jump_ms),
            "edit_ms": edit_ms, "rss_mb": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timepoints", type=int, nargs="+", default=[4, 7])
    parser.add_argument("--jumps", type=int, default=10)
    parser.add_argument("--encoder", default="png", choices=["png", "jpeg"], help="view image encoding")
    args = parser.parse_args()
    print(f"encoder {args.encoder}")
    print("time points | HTTP up s | first frame s | jump ms median (max) | edit ms reject, undo | RSS MB")
    for n in args.timepoints:
        r = measure(n, args.jumps, args.encoder)
        print(f"{n:11d} | {r['http_up_s']:9.1f} | {r['first_frame_s']:13.1f} | {r['jump_ms_median']:6.0f} "
              f"({r['jump_ms_max']:.0f}) | {r['edit_ms'][0]:.0f}, {r['edit_ms'][1]:.0f} | {r['rss_mb']:.0f}")
    print("targets (2 cores): first frame < 10 s, jump < 500 ms with 7 views, edit + recompute < 1 s, RSS < 2 GB")


if __name__ == "__main__":
    main()
