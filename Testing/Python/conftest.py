"""Shared fixtures: phantom patients generated once per test session and cached on disk."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("LESION_RESPONSE_TEST_CACHE", REPO / "Testing" / ".cache"))


def _phantom_dir(seed: int, timepoints: int, vendor: str, **options) -> Path:
    from LesionResponseLib.phantom import PHANTOM_VERSION, generate_patient

    key = "_".join([f"v{PHANTOM_VERSION}", f"s{seed}", f"t{timepoints}", vendor] + [f"{k}-{v}" for k, v in sorted(options.items())])
    out = CACHE / "phantom" / key
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / f"{key}.lock")):
        if not (out / "truth.json").exists():
            shutil.rmtree(out, ignore_errors=True)
            generate_patient(out, seed=seed, timepoints=timepoints, vendor=vendor, **options)
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules holding a ``slow`` test run first, each module's tests kept together and in order: under
    ``pytest -n 2 --dist loadgroup`` (scripts/test.sh) the long tests start early on both workers and the short ones
    fill the end, instead of a long test running alone at the end. (xdist sends its ``xdist_group`` units first.)"""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable
    _name_xdist_groups(config, items)


def _name_xdist_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--dist loadgroup`` sends the tests whose node id ends in ``@<xdist_group>`` to one worker; pytest-xdist 3.8
    appends that suffix to ``item._nodeid``, which pytest 9 no longer reads (its node id is ``item._id``), so every
    ``xdist_group`` mark was ignored (measured: a module's tests on both workers, its module fixture built twice).
    Append it where pytest 9 keeps the id; a no-op on pytest 8, where xdist's own suffix works."""
    if not (hasattr(config, "workerinput") and config.getvalue("loadgroup")):
        return
    try:
        from _pytest.nodeid import NodeId  # pytest >= 9
    except ImportError:
        return
    for item in items:
        names = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                        for mark in item.iter_markers("xdist_group")})
        if names and "@" not in item.nodeid:
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")


@pytest.fixture(scope="session")
def make_phantom() -> Callable[..., Path]:
    """Factory: ``make_phantom(seed=1, timepoints=2, vendor="siemens", **options) -> Path`` (cached)."""

    def factory(seed: int = 1, timepoints: int = 2, vendor: str = "siemens", **options) -> Path:
        return _phantom_dir(seed, timepoints, vendor, **options)

    return factory


@pytest.fixture(scope="session")
def build_once(tmp_path_factory, request) -> Callable[[str, Callable[[Path], None]], Path]:
    """Factory: ``build_once(name, build) -> Path``: ``build(folder)`` runs once per test session, however many
    xdist workers ask (a file lock in the session's shared temporary folder); callers copy what they change."""
    root = tmp_path_factory.getbasetemp()
    # an xdist worker's popen-gwN/.. is shared by the session's workers (no xdist fixture: works with -p no:xdist)
    root = root.parent if hasattr(request.config, "workerinput") else root

    def factory(name: str, build: Callable[[Path], None]) -> Path:
        folder = root / "built-once" / name
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):
            if not (folder / ".built").exists():
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                build(folder)
                (folder / ".built").touch()
        return folder

    return factory


def require_tool(name: str) -> str:
    """Path of a Debian tool the test needs; skip (with the install hint) when it is missing."""
    path = shutil.which(name)
    if path is None:
        _missing(f"{name} not installed (bash scripts/setup.sh installs it)")
    return path


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)  # CI must never pass by skipping the real-tool checks
    pytest.skip(message)


DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")  # Debian orthanc-dicomweb


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_orthanc(storage: Path, dicomweb: bool = False) -> Iterator[tuple[str, int]]:
    """A real Orthanc on loopback (free ports, storage in ``storage``): yields (REST base URL, DICOM port).

    It accepts C-STORE, C-FIND and C-GET from any AE title calling ``ORTHANC``; with ``dicomweb`` it also
    serves DICOMweb at ``BASE/dicom-web`` (skipped when the plugin is not installed).
    """
    binary = require_tool("Orthanc")
    if dicomweb and not DICOMWEB_PLUGIN.is_file():
        _missing(f"the Orthanc DICOMweb plugin {DICOMWEB_PLUGIN} is not installed (bash scripts/setup.sh installs "
                 "orthanc-dicomweb)")
    http, dicom = free_port(), free_port()
    config = {"Name": "lesion-response-test", "StorageDirectory": str(storage / "db"),
              "IndexDirectory": str(storage / "db"), "HttpPort": http, "DicomPort": dicom,
              "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomAet": "ORTHANC",
              "DicomCheckCalledAet": True, "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True,
              "DicomAlwaysAllowGet": True, "Plugins": [str(DICOMWEB_PLUGIN)] if dicomweb else [],
              "DicomWeb": {"Enable": dicomweb, "Root": "/dicom-web/"}, "HttpsVerifyPeers": False}
    storage.mkdir(parents=True, exist_ok=True)
    path = storage / "orthanc.json"
    path.write_text(json.dumps(config))
    process = subprocess.Popen([binary, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{http}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}/system", timeout=1).read()
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"Orthanc exited: {process.stderr.read().decode()[-500:]}")
                time.sleep(0.2)
        else:
            pytest.fail("Orthanc did not answer /system within 60 s")
        yield base, dicom
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture()
def orthanc(tmp_path) -> Iterator[tuple[str, int]]:
    """A fresh Orthanc per test (:func:`start_orthanc`): (REST base URL, DICOM port)."""
    yield from start_orthanc(tmp_path / "orthanc")
