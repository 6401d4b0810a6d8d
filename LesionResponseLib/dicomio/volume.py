"""Load a DICOM image series into a SimpleITK volume with checked geometry (LPS, mm).

Slices are sorted along the slice normal (not by file name or InstanceNumber); each slice's own
RescaleSlope/RescaleIntercept is applied (PET slopes differ per slice). Slice positions as scanners write
them (multi-bed jitter, gantry tilt) are resampled onto a regular grid; gaps, duplicate slices, mixed
orientations or matrix sizes are rejected with a message that names the series folder and what was found
(:mod:`geometry`). Multi-frame (Enhanced, legacy-converted) files give one slice per frame (:mod:`frames`).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from LesionResponseLib.dicomio.errors import CorruptFileError, DicomInputError
from LesionResponseLib.dicomio.geometry import SliceGeometry, regularise, slice_geometry, slice_order
from LesionResponseLib.dicomio.index import HEADER_TAGS, Instance, instances_of
from LesionResponseLib.errors import describe


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


def series_instances(paths: Sequence[str], headers: Sequence[pydicom.Dataset] | None = None) -> list[Instance]:
    """The slices of the files ``paths`` (one per file, or one per frame of a multi-frame file)."""
    headers = headers or read_headers(paths)
    return [inst for path, ds in zip(paths, headers, strict=True) for inst in instances_of(str(path), ds)]


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


def _read_frames(slices: list[Instance]) -> np.ndarray:
    """Rescaled values (each frame's own Pixel Value Transformation) of the slices, some of them frames of
    multi-frame files, as a (z, y, x) float32 array in the given order (pydicom decodes)."""
    stored: dict[str, np.ndarray] = {}
    for path in dict.fromkeys(s.path for s in slices):
        try:
            array = pydicom.dcmread(path).pixel_array
        except Exception as exc:
            raise _corrupt(path, exc, "pixel data") from exc
        stored[path] = array if array.ndim == 3 else array[None]
    planes = []
    for s in slices:
        slope, intercept = float(s.get("RescaleSlope", 1) or 1), float(s.get("RescaleIntercept", 0) or 0)
        planes.append(stored[s.path][s.frame or 0].astype(np.float32) * np.float32(slope) + np.float32(intercept))
    return np.stack(planes)


def check_series_geometry(headers: Sequence[pydicom.Dataset], paths: Sequence[str]) -> SliceGeometry:
    """Check from headers alone that the slices form a volume (:mod:`geometry`); returns their geometry."""
    folder = str(Path(paths[0]).parent)
    order = slice_order(list(headers))
    return slice_geometry([headers[i] for i in order], [str(paths[i]) for i in order], folder)


def load_series(paths: Sequence[str], scale: float = 1.0, slice_factors: dict[str, float] | None = None,
                dtype=np.float32, headers: list[pydicom.Dataset] | None = None) -> sitk.Image:
    """Stack the slices of ``paths`` into a volume of rescaled values × ``scale`` (× per-slice ``slice_factors``,
    keyed by :attr:`Instance.key`).

    Slices are sorted by their position along the slice normal; geometry (origin, spacing, direction in LPS)
    comes from ImagePositionPatient/ImageOrientationPatient/PixelSpacing, resampled onto a regular untilted grid
    when the positions are not regular (:func:`geometry.regularise`). ``dtype=None`` chooses int16 when every
    slice's RescaleSlope/RescaleIntercept is integral (CT in HU), float32 otherwise. ``headers`` are the files'
    headers when already read (same order as ``paths``).
    Raises :class:`GeometryError` on gaps, duplicate slices, tilt beyond a gantry's, and
    :class:`CorruptFileError` naming an unreadable file.
    """
    if not paths:
        raise DicomInputError("load_series: no files to load")
    folder = str(Path(paths[0]).parent)
    slices = series_instances(paths, headers)
    order = slice_order([s.header for s in slices])
    slices = [slices[i] for i in order]
    geometry = slice_geometry([s.header for s in slices], [s.key for s in slices], folder)
    rescale = [(float(s.get("RescaleSlope", 1) or 1), float(s.get("RescaleIntercept", 0) or 0)) for s in slices]
    if dtype is None:
        integral = all(float(v).is_integer() for pair in rescale for v in pair) and scale == 1 and not slice_factors
        dtype = np.int16 if integral else np.float32
    elif np.issubdtype(dtype, np.integer) and dtype != np.int16:
        raise ValueError("load_series: integer output is int16 (HU) only")
    integer = np.issubdtype(dtype, np.integer)
    first = slices[0].header
    if any(s.frame is not None for s in slices):
        image = sitk.GetImageFromArray(_read_frames(slices))
        if integer:
            image = sitk.Cast(sitk.Round(image), sitk.sitkInt16)
    else:
        image = _read_pixels([s.path for s in slices], folder, sitk.sitkInt16 if integer else sitk.sitkFloat32)
    if image.GetSize() != (first.Columns, first.Rows, len(slices)):
        raise CorruptFileError(describe(f"pixel data of size {image.GetSize()} does not match {len(slices)} "
                                        f"slices of {first.Rows}×{first.Columns}", path=folder,
                                        fix="Re-export the series."))
    factors = np.array([scale * (slice_factors or {}).get(s.key, 1.0) for s in slices])
    if np.any(factors != factors[0]):
        volume = sitk.GetArrayFromImage(image) * factors[:, None, None].astype(np.float32)
        image = sitk.GetImageFromArray(volume.astype(dtype, copy=False))
    elif factors[0] != 1:
        image = sitk.Cast(image * float(factors[0]), sitk.sitkInt16 if integer else sitk.sitkFloat32)
    if not geometry.regular:
        image = _regular_image(image, geometry, integer)
    image.SetSpacing((*geometry.pixel_spacing, geometry.spacing_mm))
    image.SetOrigin(tuple(float(v) for v in geometry.origin))
    image.SetDirection(tuple(float(v) for v in np.column_stack([geometry.row, geometry.col, geometry.normal]).ravel()))
    return image


def _regular_image(image: sitk.Image, geometry: SliceGeometry, integer: bool) -> sitk.Image:
    """``image``'s slices resampled onto the regular grid of ``geometry`` (int16 rounded when ``integer``)."""
    array = sitk.GetArrayViewFromImage(image)
    resampled = regularise(array, geometry, fill=float(array.min()))
    if integer:
        info = np.iinfo(np.int16)
        return sitk.GetImageFromArray(np.clip(np.rint(resampled), info.min, info.max).astype(np.int16))
    return sitk.GetImageFromArray(resampled)
