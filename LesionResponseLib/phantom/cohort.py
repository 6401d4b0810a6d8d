"""A synthetic cohort like the paper's: N phantom patients with 2–7 scans each, in mixed vendor flavours.

Scan counts follow the paper's cohort (docs/DOMAIN.md §1: 18 patients, 67 scans; 10 patients with more
than one follow-up): 8 patients with 2 scans and 10 with 3, 4, 4, 5, 5, 5, 6, 6, 6, 7 scans (8 × 2 + 51 = 67).
The list is shuffled by the seed (repeated first when N > 18); for 18 patients it is the paper's exact
distribution. Vendors cycle over :data:`VENDORS` (every DICOM flavour the loader
must handle appears in a cohort of ≥ 5 patients).

Layout of ``DIR``: ``DIR/<patient_id>/`` is one phantom folder (docs/ARCHITECTURE.md: ``dicom/``,
``truth.json``, ``truth/``); ``DIR/manifest.csv`` lists ``patient_id,folder,seed,scans,vendor`` with
``folder`` = ``<patient_id>/dicom`` relative to DIR (a manifest ``cohort-analyze`` reads). The truth
cohort figures of the phantom folders: :func:`LesionResponseLib.analysis.cohort.truth_cohort_summary`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from LesionResponseLib.phantom.dicom_writer import VENDORS
from LesionResponseLib.phantom.errors import bad_option
from LesionResponseLib.phantom.generate import generate_patient

#: scans per patient in the paper's cohort (docs/DOMAIN.md §1): 8 × 2, then 10 patients with > 1 follow-up
PAPER_SCANS = (2, 2, 2, 2, 2, 2, 2, 2, 3, 4, 4, 5, 5, 5, 6, 6, 6, 7)
MANIFEST_COLUMNS = ("patient_id", "folder", "seed", "scans", "vendor")


def cohort_plan(patients: int, seed: int = 1) -> list[dict[str, Any]]:
    """``patients`` entries ``{seed, scans, vendor}``: patient i gets phantom seed ``seed + i``."""
    if patients < 1:
        raise bad_option("patients", patients, "at least 1")
    repeats = -(-patients // len(PAPER_SCANS))
    scans = np.random.default_rng(seed).permutation(list(PAPER_SCANS) * repeats)
    return [{"seed": seed + i, "scans": int(scans[i]), "vendor": VENDORS[i % len(VENDORS)]} for i in range(patients)]


def generate_cohort(out_dir: str | Path, *, patients: int = 18, seed: int = 1,
                    axial_extent_mm: float | None = None,
                    n_lesions: int | None = None, extras: bool = True,
                    progress: Callable[[int, int, str], None] | None = None) -> Path:
    """Write ``patients`` phantom patients and ``manifest.csv`` into ``out_dir`` (module docstring).

    A patient whose folder already holds ``truth.json`` (the last file the generator writes) is kept as is,
    so an interrupted generation resumes. ``axial_extent_mm`` / ``n_lesions`` / ``extras`` are passed to
    :func:`generate_patient` (slab patients for quick runs). ``progress(done, total, patient_id)``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    plan = cohort_plan(patients, seed)
    for done, entry in enumerate(plan, 1):
        patient_id = f"LRPH{entry['seed']:04d}"  # the phantom's PatientID (simulate_patient)
        folder = out / patient_id
        if not (folder / "truth.json").is_file():
            generate_patient(folder, seed=entry["seed"], timepoints=entry["scans"], vendor=entry["vendor"],
                             extras=extras, n_lesions=n_lesions, axial_extent_mm=axial_extent_mm)
        rows.append({"patient_id": patient_id, "folder": f"{patient_id}/dicom", **entry})
        if progress:
            progress(done, len(plan), patient_id)
    tmp = out / "manifest.csv.tmp"
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in MANIFEST_COLUMNS} for row in rows)
    os.replace(tmp, out / "manifest.csv")
    return out
