"""Read an analysis output folder (docs/DOMAIN.md §8) for reporting: analysis, per-ROI categories, images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.datamodel import Analysis, LesionROI
from LesionResponseLib.errors import LesionResponseError, describe

CATEGORY_COLOURS: dict[str, str] = {
    "baseline": "#00c8ff",  # cyan
    "new": "#e41a1c",  # red
    "increasing": "#ff8c00",  # orange
    "stable": "#f0d000",  # yellow
    "decreasing": "#2ca02c",  # green
    "disappearing": "#1f4fff",  # blue
    "absent": "#9e9e9e",
}
FOLLOW_UP_CATEGORIES = ("new", "increasing", "stable", "decreasing", "disappearing")
#: Colours of the lesion sites in the burden plot (colour-blind-safe Okabe-Ito palette; grey: undetermined).
SITE_COLOURS: dict[str, str] = {"liver": "#E69F00", "bone": "#56B4E9", "lymph node": "#009E73",
                                "pancreas": "#CC79A7", "lung": "#0072B2", "peritoneum/other": "#D55E00",
                                "undetermined": "#999999"}


class ReportInputError(LesionResponseError):
    """The analysis folder lacks something the report or export needs."""


@dataclass
class ReportData:
    """An analysis plus what the report derives from it."""

    out_dir: Path
    analysis: Analysis
    roi_category: dict[str, str]  # roi_id -> baseline/new/increasing/stable/decreasing
    roi_track: dict[str, int]  # roi_id -> track id

    def accepted_rois(self, timepoint: int) -> list[LesionROI]:
        """Accepted ROIs of ``timepoint`` ordered by label."""
        rois = [r for r in self.analysis.rois if r.timepoint == timepoint and r.status == "accepted"]
        return sorted(rois, key=lambda r: r.label)


def load_analysis_folder(out_dir: str | Path) -> Analysis:
    """The :class:`Analysis` of ``out_dir`` (via ``analysis.load_analysis`` when that stage provides it)."""
    out = Path(out_dir)
    path = out / "analysis.json"
    if not path.exists():
        raise ReportInputError(describe("no analysis.json here", path=out,
                                        fix="Run `lesion-response analyze INPUT -o OUT` first and pass OUT."))
    from LesionResponseLib.analysis import load_analysis

    try:
        return load_analysis(out)
    except (ValueError, KeyError, TypeError) as exc:
        raise ReportInputError(describe(f"cannot read the analysis ({exc})", path=path,
                                        fix="Re-run `lesion-response analyze` to rewrite it.")) from exc


def roi_tracks(analysis: Analysis) -> dict[str, int]:
    """Per ROI id: the id of the track it belongs to."""
    return {roi_id: t.track_id for t in analysis.tracks for ids in t.rois.values() for roi_id in ids}


def load_report_data(out_dir: str | Path) -> ReportData:
    """Analysis + ROI categories of ``out_dir`` (the categories of ``rois.csv`` win when present)."""
    out = Path(out_dir)
    from LesionResponseLib.analysis import roi_categories

    analysis = load_analysis_folder(out)
    category = roi_categories(analysis.tracks, analysis.responses, analysis.rois)
    csv = out / "rois.csv"
    if csv.exists():
        import pandas as pd

        table = pd.read_csv(csv, dtype={"roi_id": str})
        if {"roi_id", "category"} <= set(table.columns):
            category.update({str(k): str(v) for k, v in zip(table["roi_id"], table["category"], strict=True)
                             if isinstance(v, str)})
    return ReportData(out, analysis, category, roi_tracks(analysis))


def load_labels(out_dir: str | Path, timepoint: int) -> sitk.Image:
    """The lesion-ROI label map ``labels/tp{k}.nii.gz`` (uint16, PET grid)."""
    path = Path(out_dir) / "labels" / f"tp{timepoint}.nii.gz"
    if not path.exists():
        raise ReportInputError(describe("label map missing", path=path,
                                        fix="Re-run `lesion-response analyze` so that it writes labels/."))
    return sitk.ReadImage(str(path))


def load_suv(data: ReportData, timepoint: int) -> sitk.Image | None:
    """SUV PET of ``timepoint``: ``suv/tp{k}.nii.gz`` if the analysis wrote it, else from the DICOM files.

    Returns None when neither is available (the report then shows label-only MIPs).
    """
    path = data.out_dir / "suv" / f"tp{timepoint}.nii.gz"
    if path.exists():
        return sitk.ReadImage(str(path), sitk.sitkFloat32)
    info = data.analysis.timepoints[timepoint]
    if not info.pet_files or not all(Path(f).exists() for f in info.pet_files):
        return None
    try:
        from LesionResponseLib.dicomio import load_timepoint

        return load_timepoint(info).pet_suv
    except (LesionResponseError, ImportError, RuntimeError):
        return None


def category_counts(data: ReportData) -> dict[int, dict[str, int]]:
    """Per follow-up k >= 1: how many tracks fall in each category (``absent`` left out)."""
    counts: dict[int, dict[str, int]] = {}
    for k in range(1, len(data.analysis.timepoints)):
        row = dict.fromkeys(FOLLOW_UP_CATEGORIES, 0)
        for response in data.analysis.responses:
            cat = response.categories.get(k)
            if cat in row:
                row[cat] += 1
        counts[k] = row
    return counts


def label_array(image: sitk.Image) -> np.ndarray:
    """Label map as a (z, y, x) integer array."""
    return sitk.GetArrayFromImage(image).astype(np.int32)
