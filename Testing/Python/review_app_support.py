"""Shared helpers of the browser-review tests and benchmark: the demo analysis (built once, cached), a
server started in a subprocess on a free loopback port, and a Playwright page on the Debian chromium.

The demo analysis is what ``lesion-response demo`` analyses (phantom seed 1, 4 time points, the shipped
model, default parameters), built by the real pipeline into ``LESION_RESPONSE_TEST_CACHE`` and copied per test.
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

from filelock import FileLock

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("LESION_RESPONSE_TEST_CACHE", REPO / "Testing" / ".cache"))
ANALYSIS_FORMAT = 1  # bump when the analysis folder gains files the app needs (1: ct/ added)
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def analysis_key(seed: int, timepoints: int) -> str:
    from LesionResponseLib import __version__
    from LesionResponseLib.phantom import PHANTOM_VERSION
    from LesionResponseLib.segmentation.model import DEFAULT_MODEL_PATH

    model = DEFAULT_MODEL_PATH
    return f"demo_v{PHANTOM_VERSION}_s{seed}_t{timepoints}_{model.stem}_lr{__version__}_f{ANALYSIS_FORMAT}"


def demo_analysis(seed: int = 1, timepoints: int = 4) -> Path:
    """The analysis folder of the demo patient (built once per cache by the real ``analyze``)."""
    from LesionResponseLib.analysis import analyze
    from LesionResponseLib.datamodel import AnalysisParameters
    from LesionResponseLib.phantom import PHANTOM_VERSION, generate_patient

    key = analysis_key(seed, timepoints)
    out = CACHE / "review_app" / key
    (CACHE / "review_app").mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / "review_app" / f"{key}.lock")):
        if not (out / "analysis.json").is_file():
            phantom = CACHE / "phantom" / f"v{PHANTOM_VERSION}_s{seed}_t{timepoints}_siemens"
            with FileLock(str(CACHE / f"{phantom.name}.lock")):
                if not (phantom / "truth.json").exists():
                    shutil.rmtree(phantom, ignore_errors=True)
                    generate_patient(phantom, seed=seed, timepoints=timepoints, vendor="siemens")
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            analyze(phantom / "dicom", tmp, AnalysisParameters(), progress=False)
            shutil.rmtree(tmp / "cache", ignore_errors=True)  # not needed by the review
            os.replace(tmp, out)
    return out


def copy_analysis(source: Path, target: Path) -> Path:
    """A private copy of an analysis folder (tests edit it)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.lock"))
    return target


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start_server(out: Path, port: int, host: str = "127.0.0.1", user: str = "reader", token: str | None = None,
                 log: Path | None = None, timeout_s: float = 120.0) -> subprocess.Popen:
    """``lesion-response review-app OUT`` in a subprocess; returns once its HTTP port answers."""
    command = [sys.executable, "-m", "LesionResponseLib.cli", "review-app", str(out), "--host", host,
               "--port", str(port), "--user", user]
    if token:
        command += ["--token", token]
    handle = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (kept open for the process)
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"review-app exited with {process.returncode}; see {log}")
        try:
            with socket.create_connection((host if host != "0.0.0.0" else "127.0.0.1", port), timeout=1):
                return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"review-app did not listen on {host}:{port} within {timeout_s} s; see {log}")


def http_status(url: str) -> int:
    """HTTP status of a GET (errors included)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
