"""Shared helpers of the browser-review tests and benchmark: the demo analysis (built once, cached), a
server started in a subprocess on a free loopback port, and a Playwright page on the Debian chromium.

The demo analysis is what ``lesion-response demo`` analyses (phantom seed 1, 4 time points, the shipped
model, default parameters), built by the real pipeline into ``LESION_RESPONSE_TEST_CACHE`` and copied per test.
The browser tests review :func:`review_analysis`: the same patient analysed by the same pipeline at a seventh of
the cost (they test the review, not the segmentation), or the demo analysis when they write the docs' screenshots.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("LESION_RESPONSE_TEST_CACHE", REPO / "Testing" / ".cache"))

#: The browser tests' modules run on one pytest-xdist worker (``--dist loadgroup``): one builds the review analysis
#: while the other keeps running other tests (two would wait for the same build), each module's server and chromium
#: start once, and two sets of server + chromium do not compete for the same two cores.
ONE_WORKER = pytest.mark.xdist_group("review-app")

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def analysis_key(seed: int, timepoints: int) -> str:
    from LesionResponseLib import __version__
    from LesionResponseLib.phantom import PHANTOM_VERSION
    from LesionResponseLib.segmentation.model import DEFAULT_MODEL_PATH

    model = DEFAULT_MODEL_PATH
    return f"demo_v{PHANTOM_VERSION}_s{seed}_t{timepoints}_{model.stem}_lr{__version__}_{_library_digest()}"


def _library_digest() -> str:
    """Digest of the library's sources: a cached analysis is rebuilt whenever the code that wrote it changed
    (a folder written by older code, e.g. without a column added since, would make the edit tests compare
    the review's rewrite with a stale original)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((REPO / "LesionResponseLib").rglob("*.py")):
        digest.update(path.relative_to(REPO).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def demo_analysis(seed: int = 1, timepoints: int = 4) -> Path:
    """The analysis folder of the demo patient (built once per cache by the real ``analyze``)."""
    from LesionResponseLib.config import AnalysisParameters

    return _cached_analysis(analysis_key(seed, timepoints), seed, timepoints, AnalysisParameters())


#: The lesions a segmentation of one scan misses: ideal-observer d' (``truth.json`` ``ideal_snr``) below 5, under
#: which no model ROI lay in the longitudinal evaluation (docs/evaluation.md, "Longitudinal detection").
MISSED_BELOW_IDEAL_SNR = 5.0


def review_analysis(seed: int = 1, timepoints: int = 4) -> Path:
    """The analysis folder the browser tests review (built once per cache): the demo patient by the real pipeline
    from its true lesion masks minus those of :data:`MISSED_BELOW_IDEAL_SNR` (a segmentation's misses, which the
    prior-guided search then looks for, as in the demo), with rigid registration: 40 CPU-s instead of the demo's 280
    (the model's inference and elastix). With LESION_RESPONSE_WRITE_SCREENSHOTS=1 it is the demo analysis, which the
    docs' screenshots show."""
    from LesionResponseLib.config import AnalysisParameters
    from LesionResponseLib.phantom import PHANTOM_VERSION

    if os.environ.get("LESION_RESPONSE_WRITE_SCREENSHOTS") == "1":
        return demo_analysis(seed, timepoints)
    key = f"review_v{PHANTOM_VERSION}_s{seed}_t{timepoints}_snr{MISSED_BELOW_IDEAL_SNR:g}_lr{_library_digest()}"
    params = AnalysisParameters().updated({"segmentation.method": "truth", "registration.method": "sitk-rigid"})
    # with its stage cache (0.4 MB): a re-run of a copy reuses every stage (the re-run figure of docs/evaluation.md)
    return _cached_analysis(key, seed, timepoints, params, labels=_without_missed_lesions, keep_cache=True)


def _without_missed_lesions(phantom: Path, folder: Path) -> Path:
    """``folder/tp{k}.nii.gz``: the phantom's true lesion labels without those below :data:`MISSED_BELOW_IDEAL_SNR`."""
    import json

    import numpy as np
    import SimpleITK as sitk

    truth = json.loads((phantom / "truth.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(truth["n_timepoints"]):
        states = [lesion["timepoints"].get(str(k), {}) for lesion in truth["lesions"]]
        missed = [label for state in states if state.get("present") and state["ideal_snr"] < MISSED_BELOW_IDEAL_SNR
                  for label in state["labels"]]
        image = sitk.ReadImage(str(phantom / "truth" / f"tp{k}_lesions.nii.gz"))
        array = sitk.GetArrayFromImage(image)
        array[np.isin(array, missed)] = 0
        kept = sitk.GetImageFromArray(array)
        kept.CopyInformation(image)
        sitk.WriteImage(kept, str(folder / f"tp{k}.nii.gz"), useCompression=True)
    return folder


def _cached_analysis(key: str, seed: int, timepoints: int, params, labels=None, keep_cache: bool = False) -> Path:
    """``CACHE/review_app/KEY``: the real ``analyze`` of phantom (seed, timepoints) with ``params`` (and the label
    maps ``labels(phantom, folder)`` writes, if given), built once per cache; ``keep_cache``: with its stage cache."""
    from conftest import _phantom_dir

    from LesionResponseLib.workflow import analyze

    out = CACHE / "review_app" / key
    (CACHE / "review_app").mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / "review_app" / f"{key}.lock")):
        if not (out / "analysis.json").is_file():
            phantom = _phantom_dir(seed, timepoints, "siemens")
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            # beside the analysis, not in it: analysis.json records the folder's path
            label_dir = labels(phantom, out.with_name(out.name + ".labels")) if labels else None
            analyze(phantom / "dicom", tmp, params, labels_dir=label_dir, progress=False)
            if not keep_cache:
                shutil.rmtree(tmp / "cache", ignore_errors=True)  # not needed by the review
            os.replace(tmp, out)
    return out


def copy_analysis(source: Path, target: Path, *, with_cache: bool = False) -> Path:
    """A private copy of an analysis folder (tests edit it); its stage cache only ``with_cache`` (a re-run)."""
    skipped = ("*.lock",) if with_cache else ("*.lock", "cache")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*skipped))
    return target


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def http_status(url: str) -> int:
    """HTTP status of a GET (errors included)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def review_app_command() -> list[str]:
    """The ``lesion-response`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("lesion-response")
    return [str(script)] if script.exists() else [sys.executable, "-m", "LesionResponseLib.cli"]


def launch_chromium(playwright):
    """The Debian chromium, headless (Playwright's own browser download is not used)."""
    executable = shutil.which("chromium")
    if executable is None:
        raise RuntimeError("chromium not installed (bash scripts/setup.sh installs it)")
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)


def open_app(browser, url: str, width: int = 1600, height: int = 1000):
    """A page on the app with every view showing a first frame."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('img.image-display-area[src^=\"blob:\"]').length > 0 && "
                           "[...document.querySelectorAll('[data-testid^=caption-]')].length > 0", timeout=90_000)
    wait_views_settled(page)
    return page


def view_count(page) -> int:
    return page.locator("[data-testid^=caption-]").count()


def view_sources(page) -> list[str]:
    """Current image URL of every view, in time-point order."""
    return [page.locator(f"[data-testid=caption-{k}]").locator("xpath=..").locator("img").get_attribute("src") or ""
            for k in range(view_count(page))]


def wait_views_settled(page, before: list[str] | None = None, timeout_s: float = 30.0, quiet_s: float = 0.6) -> float:
    """Wait until every view shows a new frame (when ``before`` is given) and no view changed for ``quiet_s``;
    returns the seconds until the last view changed."""
    start = time.monotonic()
    last, changed_at = view_sources(page), start
    while time.monotonic() - start < timeout_s:
        time.sleep(0.05)
        now = view_sources(page)
        if now != last:
            last, changed_at = now, time.monotonic()
        all_new = before is None or all(a != b for a, b in zip(now, before, strict=False))
        if all_new and "" not in now and time.monotonic() - changed_at >= quiet_s:
            return changed_at - start
    raise TimeoutError(f"views did not settle within {timeout_s} s")


def view_pixels(page, k: int):
    """RGB pixels (H, W, 3 uint8) of view ``k`` as the browser shows it (element screenshot, PNG)."""
    import io

    import numpy as np
    from PIL import Image

    png = page.locator(f"[data-testid=caption-{k}]").locator("xpath=..").locator("img").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def colour_blob_near_centre(pixels, rgb: tuple[float, float, float], tolerance: int = 12, max_offset_px: float = 12.0):
    """The pixel component of colour ``rgb`` (0..1) nearest to the image centre: ``(distance of its centroid to
    the centre in px, its pixel count)``, or ``(inf, 0)`` when the colour is absent."""
    import numpy as np
    from scipy import ndimage

    target = np.round(np.array(rgb) * 255)
    match = np.abs(pixels.astype(int) - target).max(-1) <= tolerance
    labels, n = ndimage.label(match, structure=np.ones((3, 3)))
    if n == 0:
        return float("inf"), 0
    centre = (np.array(pixels.shape[:2]) - 1) / 2.0
    best = (float("inf"), 0)
    for index, centroid in enumerate(ndimage.center_of_mass(match, labels, range(1, n + 1)), start=1):
        distance = float(np.linalg.norm(np.array(centroid) - centre))
        if distance < best[0]:
            best = (distance, int((labels == index).sum()))
    return best


def read_rows(path: Path) -> list[dict]:
    import csv

    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def single_roi_tracks(out: Path) -> list[tuple[int, dict[int, dict]]]:
    """Tracks with exactly one accepted ROI at every time point where present (from ``rois.csv``):
    ``[(track id, {time point: rois.csv row})]``, largest baseline volume first."""
    by_track: dict[int, dict[int, list[dict]]] = {}
    for row in read_rows(out / "rois.csv"):
        if row["track_id"] and row["status"] == "accepted":
            by_track.setdefault(int(row["track_id"]), {}).setdefault(int(row["timepoint"]), []).append(row)
    single = [(t, {tp: rows[0] for tp, rows in tps.items()}) for t, tps in by_track.items()
              if all(len(rows) == 1 for rows in tps.values())]
    return sorted(single, key=lambda item: -max(float(r["volume_ml"]) for r in item[1].values()))


class Server:
    """A review-app subprocess on a free loopback port (context manager; SIGKILL on exit)."""

    def __init__(self, out: Path, log: Path, host: str = "127.0.0.1", token: str | None = None,
                 user: str = "reader", port: int | None = None, extra: list[str] | None = None) -> None:
        self.out, self.log, self.host, self.token, self.user = out, log, host, token, user
        self.extra = list(extra or [])
        self.port = port or free_port("127.0.0.1")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def start(self, timeout_s: float = 180.0) -> Server:
        command = review_app_command() + ["review-app", str(self.out), "--host", self.host, "--port",
                                          str(self.port), "--user", self.user]
        if self.token:
            command += ["--token", self.token]
        command += self.extra
        handle = open(self.log, "ab")  # noqa: SIM115 (owned by the subprocess)
        self.process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"review-app exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            if "running" in self.log.read_text(errors="replace"):
                return self
            time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"review-app not ready within {timeout_s} s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: nothing is flushed on purpose (every edit must already be on disk)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.kill()


def save_screenshot(page, name: str) -> None:
    """Keep a screenshot for the docs (``docs/images/review-app-NAME.png``) when
    LESION_RESPONSE_WRITE_SCREENSHOTS=1."""
    if os.environ.get("LESION_RESPONSE_WRITE_SCREENSHOTS") == "1":
        folder = REPO / "docs" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(600)  # the tabs' underline and ripples animate for ~0.3 s after a click
        page.screenshot(path=str(folder / f"review-app-{name}.png"))
