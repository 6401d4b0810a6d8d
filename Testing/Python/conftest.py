"""Shared fixtures: phantom patients generated once per test session and cached on disk."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
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


@pytest.fixture(scope="session")
def make_phantom() -> Callable[..., Path]:
    """Factory: ``make_phantom(seed=1, timepoints=2, vendor="siemens", **options) -> Path`` (cached)."""

    def factory(seed: int = 1, timepoints: int = 2, vendor: str = "siemens", **options) -> Path:
        return _phantom_dir(seed, timepoints, vendor, **options)

    return factory


def require_tool(name: str) -> str:
    """Path of a Debian tool the test needs; skip (with the install hint) when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not installed (bash scripts/setup.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI must never pass by skipping the real-tool checks
        pytest.skip(message)
    return path
