"""Load a DICOM image series into a SimpleITK volume with checked geometry (LPS, mm).

Slices are sorted along the slice normal (not by file name or InstanceNumber); each slice's own
RescaleSlope/RescaleIntercept is applied (PET slopes differ per slice). Gantry tilt, missing or duplicate
slices, non-uniform slice spacing, mixed orientations or matrix sizes are rejected with a message that
names the series folder and what was found.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from LesionResponseLib.dicomio.index import DicomInputError
from LesionResponseLib.errors import describe

SPACING_TOLERANCE = 0.01  # relative deviation of slice spacing accepted as uniform (1 %)
TILT_TOLERANCE_DEG = 0.1


def read_datasets(paths: Sequence[str], workers: int = 4) -> list[pydicom.Dataset]:
    """Read full datasets (pixels included), naming the file that fails."""
    def read(path: str) -> pydicom.Dataset:
        try:
            ds = pydicom.dcmread(path)
            _ = ds.pixel_array
            return ds
        except Exception as exc:
            raise DicomInputError(describe(f"cannot read pixel data ({type(exc).__name__}: {exc})", path=path,
                                           fix="The file is corrupt or truncated; re-export the series.")) from exc

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(read, paths))


def _geometry(datasets: list[pydicom.Dataset], folder: str):
    first = datasets[0]
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise DicomInputError(describe("multi-frame (enhanced) images are not supported", path=folder,
                                       fix="Export the series as single-frame (legacy) images."))
    for ds in datasets:
        for key in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
            if key not in ds:
                raise DicomInputError(describe(f"missing {key}: the image geometry is unknown",
                                               path=ds.filename, fix="Re-export the series with its geometry."))
    iop = np.array(first.ImageOrientationPatient, float)
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    for ds in datasets:
        if not np.allclose(np.array(ds.ImageOrientationPatient, float), iop, atol=1e-4):
            raise DicomInputError(describe("slices have different ImageOrientationPatient", path=ds.filename,
                                           fix="The series mixes orientations; select one orientation."))
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise DicomInputError(describe("slices have different matrix sizes", path=ds.filename,
                                           fix="Select slices of one reconstruction."))
    return row, col, normal


def load_series(paths: Sequence[str], scale: float = 1.0, slice_factors: dict[str, float] | None = None,
                dtype=np.float32, datasets: list[pydicom.Dataset] | None = None) -> sitk.Image:
    """Stack single-frame slices into a volume of rescaled values × ``scale`` (× per-file ``slice_factors``).

    Raises :class:`DicomInputError` on gantry tilt, duplicate or missing slices, non-uniform spacing.
    """
    if not paths:
        raise DicomInputError("no files to load")
    folder = str(Path(paths[0]).parent)
    datasets = datasets or read_datasets(paths)
    row, col, normal = _geometry(datasets, folder)
    positions = np.array([np.array(ds.ImagePositionPatient, float) for ds in datasets])
    distance = positions @ normal
    order = np.argsort(distance)
    datasets = [datasets[i] for i in order]
    positions, distance = positions[order], distance[order]
    spacing_z = _check_spacing(positions, distance, normal, folder)
    volume = np.empty((len(datasets), datasets[0].Rows, datasets[0].Columns), np.float32)
    for k, ds in enumerate(datasets):
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
        factor = scale * (slice_factors.get(ds.filename, 1.0) if slice_factors else 1.0)
        volume[k] = (ds.pixel_array.astype(np.float32) * slope + intercept) * factor
    if np.issubdtype(dtype, np.integer):
        volume = np.round(volume)
    image = sitk.GetImageFromArray(volume.astype(dtype, copy=False))
    px = [float(v) for v in datasets[0].PixelSpacing]  # row spacing, column spacing
    image.SetSpacing((px[1], px[0], spacing_z if len(datasets) > 1 else float(datasets[0].get("SliceThickness", 1)
                                                                                 or 1)))
    image.SetOrigin(tuple(positions[0]))
    image.SetDirection(tuple(np.column_stack([row, col, normal]).ravel()))
    return image


def _check_spacing(positions: np.ndarray, distance: np.ndarray, normal: np.ndarray, folder: str) -> float:
    if len(distance) < 2:
        return 1.0
    steps = np.diff(distance)
    if np.any(steps < 1e-3):
        dup = int(np.argmin(steps))
        raise DicomInputError(describe(f"two slices at the same position ({distance[dup]:.2f} mm along the normal)",
                                       path=folder, fix="The folder holds duplicate or overlapping series; keep one."))
    offsets = np.diff(positions, axis=0)
    cos = np.abs(offsets @ normal) / np.linalg.norm(offsets, axis=1)
    tilt = float(np.degrees(np.arccos(np.clip(cos.min(), -1, 1))))
    if tilt > TILT_TOLERANCE_DEG:
        raise DicomInputError(describe(f"gantry tilt of {tilt:.1f}° (slices are not stacked along their normal)",
                                       path=folder, fix="Resample the series to an untilted grid (e.g. with "
                                       "plastimatch convert or the scanner's reformat) before loading."))
    median = float(np.median(steps))
    if np.max(np.abs(steps - median)) > SPACING_TOLERANCE * median:
        raise DicomInputError(describe(
            f"non-uniform slice spacing ({steps.min():.2f}–{steps.max():.2f} mm; missing slices?)", path=folder,
            fix="Check that no file of the series is missing or corrupt; resample to uniform spacing otherwise."))
    return median
