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

from LesionResponseLib.dicomio.errors import CorruptFileError, DicomInputError, GeometryError, tag
from LesionResponseLib.dicomio.index import HEADER_TAGS
from LesionResponseLib.errors import describe

SPACING_TOLERANCE = 0.01  # relative deviation of slice spacing accepted as uniform (1 %)
TILT_TOLERANCE_DEG = 0.1  # slice offsets more than 0.1° off the normal are a gantry tilt


def _corrupt(path: str, exc: Exception, what: str) -> CorruptFileError:
    return CorruptFileError(describe(f"cannot read {what} ({type(exc).__name__}: {exc})", path=path,
                                     fix="The file is corrupt or truncated; re-export the series."))


def read_headers(paths: Sequence[str], workers: int = 4) -> list[pydicom.Dataset]:
    """Every file's header (no pixel data), naming the file that fails."""
    def read(path: str) -> pydicom.Dataset:
        try:
            return pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
        except Exception as exc:
            raise _corrupt(path, exc, "the header") from exc

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(read, paths))


def read_datasets(paths: Sequence[str], workers: int = 4) -> list[pydicom.Dataset]:
    """Full datasets with decoded pixels (pydicom), naming the file that fails."""
    def read(path: str) -> pydicom.Dataset:
        try:
            ds = pydicom.dcmread(path)
            _ = ds.pixel_array
            return ds
        except Exception as exc:
            raise _corrupt(path, exc, "pixel data") from exc

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(read, paths))


def _read_pixels(paths: list[str], folder: str, pixel_type: int = sitk.sitkFloat32) -> sitk.Image:
    """Rescaled values (each file's own RescaleSlope/Intercept) of ``pixel_type``, files in the given order.

    SimpleITK/GDCM decodes the pixels (any transfer syntax GDCM supports, ~5× faster than pydicom); when it
    fails, pydicom re-reads the files one by one to name the damaged one.
    """
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(paths)
    reader.SetOutputPixelType(pixel_type)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        read_datasets(paths)  # raises CorruptFileError naming the file
        raise CorruptFileError(describe(f"SimpleITK cannot read the series ({exc})", path=folder,
                                        fix="Check the transfer syntax and the files of the series.")) from exc


def _geometry(datasets: list[pydicom.Dataset], folder: str):
    first = datasets[0]
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        raise GeometryError(describe(f"multi-frame (enhanced) images ({tag('NumberOfFrames')} > 1) are not "
                                     "supported", path=folder, fix="Export the series as single-frame images."))
    for ds in datasets:
        for key in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows", "Columns"):
            if key not in ds:
                raise GeometryError(describe(f"missing {tag(key)}: the image geometry is unknown",
                                             path=ds.filename, fix="Re-export the series with its geometry."))
    iop = np.array(first.ImageOrientationPatient, float)
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    for ds in datasets:
        if not np.allclose(np.array(ds.ImageOrientationPatient, float), iop, atol=1e-4):
            raise GeometryError(describe(f"{tag('ImageOrientationPatient')} differs from {first.filename}",
                                         path=ds.filename, fix="The series mixes orientations; select one."))
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise GeometryError(describe(f"matrix {ds.Rows}×{ds.Columns} differs from {first.Rows}×{first.Columns} "
                                         f"of {first.filename} ({tag('Rows')}, {tag('Columns')})",
                                         path=ds.filename, fix="Select slices of one reconstruction."))
    return row, col, normal


def check_series_geometry(headers: Sequence[pydicom.Dataset], paths: Sequence[str]) -> float:
    """Check from headers alone that the files form a regular volume; returns the slice spacing (mm)."""
    folder = str(Path(paths[0]).parent)
    _, _, normal = _geometry(list(headers), folder)
    positions = np.array([np.array(ds.ImagePositionPatient, float) for ds in headers])
    order = np.argsort(positions @ normal, kind="stable")
    return _check_spacing(positions[order], normal, [str(paths[i]) for i in order], folder)


def load_series(paths: Sequence[str], scale: float = 1.0, slice_factors: dict[str, float] | None = None,
                dtype=np.float32, headers: list[pydicom.Dataset] | None = None) -> sitk.Image:
    """Stack single-frame slices into a volume of rescaled values × ``scale`` (× per-file ``slice_factors``).

    Slices are sorted by their position along the slice normal; geometry (origin, spacing, direction in LPS)
    comes from ImagePositionPatient/ImageOrientationPatient/PixelSpacing. ``dtype=None`` chooses int16 when
    every slice's RescaleSlope/RescaleIntercept is integral (CT in HU), float32 otherwise. ``headers`` are the
    files' headers when already read (same order as ``paths``).
    Raises :class:`GeometryError` on gantry tilt, duplicate or missing slices, non-uniform spacing, and
    :class:`CorruptFileError` naming an unreadable file.
    """
    if not paths:
        raise DicomInputError("load_series: no files to load")
    folder = str(Path(paths[0]).parent)
    headers = headers or read_headers(paths)
    row, col, normal = _geometry(headers, folder)
    positions = np.array([np.array(ds.ImagePositionPatient, float) for ds in headers])
    order = np.argsort(positions @ normal, kind="stable")
    files, positions = [str(paths[i]) for i in order], positions[order]
    headers = [headers[i] for i in order]
    spacing_z = _check_spacing(positions, normal, files, folder)
    rescale = [(float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)) for ds in headers]
    if dtype is None:
        integral = all(float(v).is_integer() for pair in rescale for v in pair) and scale == 1 and not slice_factors
        dtype = np.int16 if integral else np.float32
    elif np.issubdtype(dtype, np.integer) and dtype != np.int16:
        raise ValueError("load_series: integer output is int16 (HU) only")
    integer = np.issubdtype(dtype, np.integer)
    image = _read_pixels(files, folder, sitk.sitkInt16 if integer else sitk.sitkFloat32)
    if image.GetSize() != (headers[0].Columns, headers[0].Rows, len(files)):
        raise CorruptFileError(describe(f"pixel data of size {image.GetSize()} does not match {len(files)} slices "
                                        f"of {headers[0].Rows}×{headers[0].Columns}", path=folder,
                                        fix="Re-export the series."))
    factors = np.array([scale * (slice_factors or {}).get(f, 1.0) for f in files])
    if np.any(factors != factors[0]):
        volume = sitk.GetArrayFromImage(image) * factors[:, None, None].astype(np.float32)
        image = sitk.GetImageFromArray(volume.astype(dtype, copy=False))
    elif factors[0] != 1:
        image = sitk.Cast(image * float(factors[0]), sitk.sitkInt16 if integer else sitk.sitkFloat32)
    px = [float(v) for v in headers[0].PixelSpacing]  # row spacing (between rows), column spacing
    if len(files) == 1:
        spacing_z = float(headers[0].get("SliceThickness", 1) or 1)
    image.SetSpacing((px[1], px[0], spacing_z))
    image.SetOrigin(tuple(float(v) for v in positions[0]))
    image.SetDirection(tuple(float(v) for v in np.column_stack([row, col, normal]).ravel()))
    return image


def _check_spacing(positions: np.ndarray, normal: np.ndarray, files: list[str], folder: str) -> float:
    """The uniform slice spacing (mm) along the normal, or :class:`GeometryError` naming the offending files."""
    if len(positions) < 2:
        return 1.0
    steps = np.diff(positions @ normal)
    if np.any(steps < 1e-3):
        k = int(np.argmin(steps))
        raise GeometryError(describe(f"{files[k]} and {files[k + 1]} are at the same position along the slice "
                                     "normal", path=folder, fix="The folder holds duplicate or overlapping series "
                                     "(or two acquisitions under one SeriesInstanceUID); keep one."))
    offsets = np.diff(positions, axis=0)
    cos = np.abs(offsets @ normal) / np.linalg.norm(offsets, axis=1)
    tilt = float(np.degrees(np.arccos(np.clip(cos.min(), -1, 1))))
    if tilt > TILT_TOLERANCE_DEG:
        raise GeometryError(describe(f"gantry tilt of {tilt:.1f}° ({tag('ImagePositionPatient')} does not move "
                                     f"along the normal of {tag('ImageOrientationPatient')})", path=folder,
                                     fix="Resample the series to an untilted grid (e.g. plastimatch convert, or "
                                     "the scanner's reformat) before loading; tilted CT is rejected, not guessed."))
    median = float(np.median(steps))
    worst = int(np.argmax(np.abs(steps - median)))
    if abs(steps[worst] - median) > SPACING_TOLERANCE * median:
        raise GeometryError(describe(
            f"non-uniform slice spacing ({steps.min():.2f}–{steps.max():.2f} mm, typical {median:.2f} mm): "
            f"{steps[worst]:.2f} mm between {Path(files[worst]).name} and {Path(files[worst + 1]).name} "
            "(missing slices?)", path=folder,
            fix="Check that no file of the series is missing or corrupt; variable-spacing series are rejected, "
            "resample them to uniform spacing first."))
    return median
