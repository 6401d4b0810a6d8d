"""The analysis output folder (docs/DOMAIN.md §8): ``analysis.json``, ``timepoints.csv``, ``rois.csv``,
``tracks.csv``, ``labels/tp{k}.nii.gz``, ``burden.csv`` (``analysis.burden``); and ``ct/tp{k}.nii.gz``
(:func:`write_ct_images`). Every file is written atomically (temporary file + ``os.replace``).

``analysis.json`` holds everything; the CSV files are views of it for other tools (column names and order
are a contract). Derived figures are written into ``analysis.json`` too (its ``burden`` block and each ROI's
ratios to the reference regions, :func:`analysis_json`) and ignored when it is read back: they are recomputed. Tracks whose ROIs are all rejected have no response and no ``tracks.csv`` row.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path

import SimpleITK as sitk

from LesionResponseLib import __version__
from LesionResponseLib.analysis.burden import BURDEN_COLUMNS, burden_rows, burden_summary, lesion_ratios
from LesionResponseLib.analysis.response import roi_categories, track_ids_by_roi
from LesionResponseLib.datamodel import REFERENCE_ORGANS, Analysis
from LesionResponseLib.errors import LesionResponseError, describe

#: The ``ReferenceRegion`` attributes in ``timepoints.csv``, one column ``{organ}_ref_{attribute}`` per organ.
REFERENCE_COLUMNS = ("suv_mean", "suv_sd", "volume_ml")
TIMEPOINT_COLUMNS = ["timepoint", "study_date", "study_instance_uid", "pet_series_instance_uid",
                     "ct_series_instance_uid", "suv_factor", "n_rois",
                     *(f"{organ}_ref_{name}" for organ in REFERENCE_ORGANS for name in REFERENCE_COLUMNS)]
#: ``rois.csv`` ratio columns (analysis.burden.lesion_ratios).
RATIO_COLUMNS = ["suv_max_to_liver", "suv_max_to_spleen", "krenning_grade"]
ROI_COLUMNS = ["roi_id", "timepoint", "label", "track_id", "x_mm", "y_mm", "z_mm", "volume_ml", "suv_max",
               "suv_mean", "suv_peak", "suv_total", "category", "status", "suv_total_pvc", "source",
               "suv_total_sd", "suv_total_pvc_sd", "site", "site_source", *RATIO_COLUMNS]
TRACK_COLUMNS = ["track_id", "first_timepoint", "last_timepoint", "pattern"]
#: Per follow-up k, after the docs/DOMAIN.md §8 columns: the ΔSUVtotal interval (%), the probability that the true
#: change lies in the category called, and whether the interval holds a threshold (analysis.response).
TRACK_UNCERTAINTY_COLUMNS = ("delta_low_pct_t{k}", "delta_high_pct_t{k}", "category_confidence_t{k}",
                             "indeterminate_t{k}")
FILE_MODE = 0o644  # mkstemp creates 0600 files; outputs are meant to be read by other users and tools


class OutputFolderError(LesionResponseError):
    """The analysis folder is missing, unreadable or from a newer version."""


def track_columns(n_timepoints: int) -> list[str]:
    """``tracks.csv`` columns: the fixed ones, then ``category_t{k}``, ``delta_suv_total_pct_t{k}`` per k ≥ 1, then
    the uncertainty columns per k (:data:`TRACK_UNCERTAINTY_COLUMNS`)."""
    per_followup = [c for k in range(1, n_timepoints) for c in (f"category_t{k}", f"delta_suv_total_pct_t{k}")]
    uncertainty = [c.format(k=k) for k in range(1, n_timepoints) for c in TRACK_UNCERTAINTY_COLUMNS]
    return TRACK_COLUMNS + per_followup + uncertainty


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_image(image: sitk.Image, path: Path) -> None:
    """Write a SimpleITK image (compressed) atomically; the temporary name keeps the ``.nii.gz`` suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".nii.gz")
    os.close(fd)
    try:
        sitk.WriteImage(image, tmp, useCompression=True)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


ORPHAN_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.(?:tmp|nii\.gz)$")  # mkstemp names above


def remove_orphaned_temporaries(out_dir: str | Path, keep: tuple[str, ...] = ("review",)) -> list[Path]:
    """Delete the temporary files a killed writer left under ``out_dir`` (those of :func:`atomic_write_text`
    and :func:`atomic_write_image`); subfolders named in ``keep`` (the review, which recovers its own) are left.

    Only call this while no other process writes the folder (the cohort holds its lock). Returns what was removed.
    """
    removed = []
    for path in sorted(Path(out_dir).rglob(".*")):
        inside_kept = any(part in keep for part in path.relative_to(out_dir).parts[:-1])
        if path.is_file() and not inside_kept and ORPHAN_PATTERN.match(path.name):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _csv(columns: list[str], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


#: Decimals of the measures written to the CSV files (SUV, mL, SUV·mL: far below their uncertainty).
CSV_DIGITS = 4


def _num(value: float | None, digits: int = CSV_DIGITS) -> str:
    return "" if value is None else repr(round(float(value), digits))


def timepoint_rows(analysis: Analysis) -> list[dict]:
    """Rows of ``timepoints.csv`` (``n_rois`` counts accepted ROIs)."""
    counts = {tp.index: 0 for tp in analysis.timepoints}
    for roi in analysis.rois:
        if roi.status == "accepted":
            counts[roi.timepoint] = counts.get(roi.timepoint, 0) + 1
    return [{"timepoint": tp.index, "study_date": tp.study_date, "study_instance_uid": tp.study_instance_uid,
             "pet_series_instance_uid": tp.pet_series_instance_uid,
             "ct_series_instance_uid": tp.ct_series_instance_uid or "", "suv_factor": f"{tp.suv_factor:.8g}",
             "n_rois": counts.get(tp.index, 0), **_reference_cells(analysis, tp.index)} for tp in analysis.timepoints]


def _reference_cells(analysis: Analysis, timepoint: int) -> dict[str, str]:
    """The reference-region columns of one ``timepoints.csv`` row (empty where a region is not placed)."""
    cells = {}
    for organ in REFERENCE_ORGANS:
        region = analysis.reference(timepoint, organ)
        for name in REFERENCE_COLUMNS:
            value = getattr(region, name) if region is not None and region.placed else None
            cells[f"{organ}_ref_{name}"] = _num(value)
    return cells


def roi_rows(analysis: Analysis) -> list[dict]:
    """Rows of ``rois.csv`` in (time point, label) order."""
    owner = track_ids_by_roi(analysis.tracks)
    categories = roi_categories(analysis.tracks, analysis.responses, analysis.rois)
    ratios = lesion_ratios(analysis)
    rows = []
    for roi in sorted(analysis.rois, key=lambda r: (r.timepoint, r.label, r.roi_id)):
        x, y, z = roi.centroid_mm
        rows.append({"roi_id": roi.roi_id, "timepoint": roi.timepoint, "label": roi.label,
                     "track_id": owner.get(roi.roi_id, ""), "x_mm": _num(x, 2), "y_mm": _num(y, 2),
                     "z_mm": _num(z, 2), "volume_ml": _num(roi.volume_ml), "suv_max": _num(roi.suv_max),
                     "suv_mean": _num(roi.suv_mean), "suv_peak": _num(roi.suv_peak),
                     "suv_total": _num(roi.suv_total), "category": categories.get(roi.roi_id, ""),
                     "status": roi.status, "suv_total_pvc": _num(roi.suv_total_pvc), "source": roi.source,
                     "suv_total_sd": _num(roi.suv_total_sd), "suv_total_pvc_sd": _num(roi.suv_total_pvc_sd),
                     "site": roi.site, "site_source": roi.site_source,
                     "suv_max_to_liver": _num(ratios[roi.roi_id]["suv_max_to_liver"], 3),
                     "suv_max_to_spleen": _num(ratios[roi.roi_id]["suv_max_to_spleen"], 3),
                     "krenning_grade": ratios[roi.roi_id]["krenning_grade"]})
    return rows


def track_rows(analysis: Analysis) -> list[dict]:
    """Rows of ``tracks.csv`` (one per assessed track, by track id)."""
    n = len(analysis.timepoints)
    tracks = {t.track_id: t for t in analysis.tracks}
    rows = []
    for response in sorted(analysis.responses, key=lambda r: r.track_id):
        present = [tp for tp, v in response.suv_total.items() if v > 0] or [tracks[response.track_id].first_timepoint]
        row = {"track_id": response.track_id, "first_timepoint": min(present), "last_timepoint": max(present),
               "pattern": response.pattern}
        for k in range(1, n):
            row[f"category_t{k}"] = response.categories.get(k, "")
            row[f"delta_suv_total_pct_t{k}"] = _num(response.delta_suv_total_pct.get(k), 2)
            interval = response.delta_interval_pct.get(k)
            row[f"delta_low_pct_t{k}"] = _num(interval[0], 2) if interval else ""
            row[f"delta_high_pct_t{k}"] = _num(interval[1], 2) if interval else ""
            row[f"category_confidence_t{k}"] = _num(response.category_confidence.get(k), 3)
            row[f"indeterminate_t{k}"] = "yes" if response.indeterminate.get(k) else ""
        rows.append(row)
    return rows


def burden_csv_rows(analysis: Analysis) -> list[dict]:
    """Rows of ``burden.csv`` (``analysis.burden.burden_rows`` with numbers formatted)."""
    return [{k: _num(v, 4) if v is None or isinstance(v, float) else v for k, v in row.items()}
            for row in burden_rows(analysis)]


def analysis_json(analysis: Analysis) -> dict:
    """``analysis.json``: :meth:`Analysis.to_dict` plus the derived figures (the ``burden`` block, each ROI's
    ratios and Krenning-like grade), which reading ignores."""
    data = analysis.to_dict()
    ratios = lesion_ratios(analysis)
    for roi in data["rois"]:
        roi.update(ratios.get(roi["roi_id"], {}))
    data["burden"] = burden_summary(analysis)
    return data


def write_outputs(analysis: Analysis, out_dir: str | Path, labels: dict[int, sitk.Image] | None = None) -> Path:
    """Write the output folder of docs/DOMAIN.md §8 into ``out_dir`` (created); returns ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not analysis.software_version:
        analysis.software_version = __version__
    for index, image in sorted((labels or {}).items()):
        atomic_write_image(image, out / "labels" / f"tp{index}.nii.gz")
    atomic_write_text(out / "timepoints.csv", _csv(TIMEPOINT_COLUMNS, timepoint_rows(analysis)))
    atomic_write_text(out / "rois.csv", _csv(ROI_COLUMNS, roi_rows(analysis)))
    atomic_write_text(out / "tracks.csv", _csv(track_columns(len(analysis.timepoints)), track_rows(analysis)))
    atomic_write_text(out / "burden.csv", _csv(BURDEN_COLUMNS, burden_csv_rows(analysis)))
    atomic_write_text(out / "analysis.json", json.dumps(analysis_json(analysis), indent=1))  # last: marks complete
    return out


def write_ct_images(loaded: list, out_dir: str | Path) -> None:
    """``OUT/ct/tp{k}.nii.gz`` per time point (the CT in HU, int16 when integral; native grid), so the review
    can show CT + PET fused without the DICOM files. Rewritten only when the CT series changed
    (``ct/index.json``: file -> CT series UID); time points without a CT get no file."""
    folder = Path(out_dir) / "ct"
    index_path = folder / "index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    for tp in loaded:
        name = f"tp{tp.info.index}.nii.gz"
        if tp.ct is None:
            (folder / name).unlink(missing_ok=True)
            index.pop(name, None)
        elif index.get(name) != tp.info.ct_series_instance_uid or not (folder / name).is_file():
            atomic_write_image(tp.ct, folder / name)
            index[name] = tp.info.ct_series_instance_uid
    for stale in set(index) - {f"tp{tp.info.index}.nii.gz" for tp in loaded}:
        (folder / stale).unlink(missing_ok=True)
        index.pop(stale)
    if index or folder.is_dir():
        atomic_write_text(index_path, json.dumps(index, indent=1, sort_keys=True))


def load_analysis(out_dir: str | Path) -> Analysis:
    """Read ``out_dir/analysis.json`` back into an :class:`Analysis`."""
    path = Path(out_dir) / "analysis.json"
    if not path.is_file():
        raise OutputFolderError(describe("no analysis.json here", path=Path(out_dir),
                                         fix="Run `lesion-response analyze INPUT -o OUT` first, or give its OUT."))
    try:
        return Analysis.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise OutputFolderError(describe(f"unreadable analysis.json ({error})", path=path,
                                         fix="Re-run `lesion-response analyze` to rewrite it.")) from error


def load_labels(out_dir: str | Path, n_timepoints: int) -> dict[int, sitk.Image]:
    """The label maps ``labels/tp{k}.nii.gz`` that exist for k < ``n_timepoints``."""
    folder = Path(out_dir) / "labels"
    return {k: sitk.ReadImage(str(folder / f"tp{k}.nii.gz")) for k in range(n_timepoints)
            if (folder / f"tp{k}.nii.gz").is_file()}
