"""Slice geometry as scanners write it: where each slice of a series lies, checked, and made regular.

A series' slices are sorted along the normal of ImageOrientationPatient. Their positions (ImagePositionPatient)
are compared with a regular grid through the first and the last slice, spaced (last − first) / (N − 1) along
the normal: the spacing ITK's ImageSeriesReader gives (``itkImageSeriesReader.hxx``). What the loader does:

* **regular** (every slice within :data:`REGULAR_EPSILON_MM` of the grid, no in-plane drift): stacked as is.
* **jitter** (slices up to :data:`JITTER_TOLERANCE` × spacing off the grid; multi-bed PET is written so, e.g. a
  GE Discovery ST whole body of 3.27 mm slices with steps of 3.19 and 3.29 mm where the beds join): every slice
  is placed at its true position and the volume resampled onto the regular grid (a cubic spline through the
  slices along the normal); the largest deviation is recorded.
* **gantry tilt** (slice positions drifting in-plane along the stack, CT only in practice): each slice is shifted
  back in-plane (cubic spline) onto an untilted grid of axes row, column, normal, as 3D Slicer's acquisition
  geometry regularisation does (``DICOMScalarVolumePlugin.AcquisitionModeling``, hardened); the tilt is recorded.
* refused, naming the files: a gap (a missing slice shifts the slices after it by a whole spacing), two slices at
  one position, a tilt beyond any gantry's (:data:`MAX_TILT_DEG`), irregular in-plane shifts.

How the tolerance compares with other readers (all of them load any spacing; none refuses a gap):

=====================================  ==================================================================
3D Slicer ``DICOMUtils``               warns when a step differs from the first by > 0.01 mm; adds (and can
                                       harden) a grid transform when slice corners are > 0.001 mm off
ITK ``ImageSeriesReader``              stacks at (last − first) / (N − 1), warns "Non uniform sampling or
                                       missing slices" at any difference, records the largest deviation
dcm2niix                               steps equal within 0.2 mm; beyond, writes an extra equidistant copy
this loader                            regular below 0.01 mm; resampled up to 5 % of the spacing; refused
                                       beyond (a missing slice is 100 %)
=====================================  ==================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from LesionResponseLib.dicomio.errors import GeometryError, tag
from LesionResponseLib.errors import describe

#: Positions within 0.01 mm of the grid are regular: DICOM decimal strings round them, and 0.01 mm is the
#: spacing epsilon of 3D Slicer's DICOM reader (``DICOMUtils.getSortedImageFiles``).
REGULAR_EPSILON_MM = 0.01
#: Slices may lie up to 5 % of the slice spacing off the regular grid (0.16 mm for 3.27 mm PET slices, 0.2 mm for
#: 4 mm). Why 5 %: a missing slice puts the slices after it a whole spacing (100 %) off, so no gap passes; real
#: multi-bed jitter is ~2 % (0.08 mm on 3.27 mm); and at 5 % the resampling error on the phantom (4 mm slices,
#: 5.5–6.5 mm FWHM PSF, slices alternately ±5 % off: the worst pattern) is 0.4 % RMS of the SUV image
#: (benchmarks/bench_dicomio.py ``--jitter``), while the displacement itself is 1/30 of the PET resolution.
JITTER_TOLERANCE = 0.05
#: CT gantries tilt by at most ±30°; slices drifting further in-plane are not a tilted acquisition.
MAX_TILT_DEG = 30.0
#: Spline weights below this are left out of the resampling along the normal (each is < 1e-7 of a value).
WEIGHT_FLOOR = 1e-7
#: Two slices closer than this along the normal are at one position (duplicates or two acquisitions).
SAME_POSITION_MM = 1e-3


@dataclass(frozen=True)
class SliceGeometry:
    """Where the slices of one series lie (sorted along the normal; LPS, mm)."""

    row: np.ndarray  # unit vector along a row (ImageOrientationPatient[:3])
    col: np.ndarray  # unit vector along a column (ImageOrientationPatient[3:])
    normal: np.ndarray  # row × col
    origin: np.ndarray  # ImagePositionPatient of the first slice
    spacing_mm: float  # regular slice spacing: (last − first) / (N − 1) along the normal
    along_mm: np.ndarray  # each slice's distance from the first along the normal
    in_plane_mm: np.ndarray  # (N, 3) each slice's offset from the first within the slice plane
    pixel_spacing: tuple[float, float]  # (between columns, between rows): x, y spacing in mm

    @property
    def deviation_mm(self) -> float:
        """Largest distance of a slice from its regular position along the normal."""
        grid = self.spacing_mm * np.arange(len(self.along_mm))
        return float(np.abs(self.along_mm - grid).max()) if len(self.along_mm) > 1 else 0.0

    @property
    def tilt_deg(self) -> float:
        """Angle between the slice normal and the line through the slices (gantry tilt), 0 when not tilted."""
        if len(self.along_mm) < 2 or self.along_mm[-1] <= 0:
            return 0.0
        drift = float(np.linalg.norm(self.in_plane_mm[-1]))
        return float(np.degrees(np.arctan2(drift, self.along_mm[-1])))

    @property
    def in_plane_drift_mm(self) -> float:
        """Largest in-plane offset of a slice from the first."""
        return float(np.linalg.norm(self.in_plane_mm, axis=1).max()) if len(self.in_plane_mm) else 0.0

    @property
    def regular(self) -> bool:
        return self.deviation_mm <= REGULAR_EPSILON_MM and self.in_plane_drift_mm <= REGULAR_EPSILON_MM

    def describe(self) -> str | None:
        """What resampling did, for the provenance (None when the slices were regular)."""
        if self.regular:
            return None
        parts = []
        if self.deviation_mm > REGULAR_EPSILON_MM:
            parts.append(f"slices up to {self.deviation_mm:.3f} mm off a regular {self.spacing_mm:.4g} mm grid "
                         f"({len(self.along_mm)} slices)")
        if self.in_plane_drift_mm > REGULAR_EPSILON_MM:
            parts.append(f"gantry tilt {self.tilt_deg:.1f}° ({self.in_plane_drift_mm:.1f} mm in-plane drift)")
        return "; ".join(parts) + ": resampled to the true slice positions on an untilted regular grid"


def _vector(ds: Any, keyword: str) -> np.ndarray:
    return np.array([float(v) for v in ds.get(keyword)], float)


def check_planes(headers: list[Any], folder: str) -> None:
    """Every slice has position, orientation, spacing and size, with one orientation and one matrix size."""
    first = headers[0]
    for ds in headers:
        for key in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing", "Rows", "Columns"):
            if key not in ds:
                raise GeometryError(describe(f"missing {tag(key)}: the image geometry is unknown",
                                             path=_name(ds, folder), fix="Re-export the series with its geometry."))
    iop = _vector(first, "ImageOrientationPatient")
    for ds in headers:
        if not np.allclose(_vector(ds, "ImageOrientationPatient"), iop, atol=1e-4):
            raise GeometryError(describe(f"{tag('ImageOrientationPatient')} differs from {_name(first, folder)}",
                                         path=_name(ds, folder), fix="The series mixes orientations; select one."))
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise GeometryError(describe(f"matrix {ds.Rows}×{ds.Columns} differs from {first.Rows}×{first.Columns} "
                                         f"of {_name(first, folder)} ({tag('Rows')}, {tag('Columns')})",
                                         path=_name(ds, folder), fix="Select slices of one reconstruction."))


def _name(ds: Any, folder: str) -> str:
    return str(getattr(ds, "filename", "") or folder)


def slice_order(headers: list[Any]) -> np.ndarray:
    """Indices of ``headers`` sorted by position along the slice normal (stable)."""
    iop = _vector(headers[0], "ImageOrientationPatient")
    normal = np.cross(iop[:3], iop[3:])
    positions = np.array([_vector(ds, "ImagePositionPatient") for ds in headers])
    return np.argsort(positions @ normal, kind="stable")


def slice_geometry(headers: list[Any], names: list[str], folder: str) -> SliceGeometry:
    """The geometry of slices already sorted by :func:`slice_order` (``names`` name them in errors), checked.

    Raises :class:`GeometryError` naming the files on a gap or irregular spacing beyond the tolerance, two slices
    at one position, a tilt beyond :data:`MAX_TILT_DEG` or in-plane shifts that are not a tilt.
    """
    check_planes(headers, folder)
    iop = _vector(headers[0], "ImageOrientationPatient")
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    positions = np.array([_vector(ds, "ImagePositionPatient") for ds in headers])
    offsets = positions - positions[0]
    along = offsets @ normal
    pixel = [float(v) for v in headers[0].PixelSpacing]  # between rows (y), between columns (x)
    n = len(headers)
    spacing = float(along[-1] / (n - 1)) if n > 1 else float(headers[0].get("SliceThickness", 1) or 1)
    geometry = SliceGeometry(row, col, normal, positions[0], spacing, along, offsets - np.outer(along, normal),
                             (pixel[1], pixel[0]))
    if n > 1:
        _check_steps(geometry, names, folder)
        _check_tilt(geometry, names, folder)
    return geometry


def _check_steps(geometry: SliceGeometry, names: list[str], folder: str) -> None:
    steps = np.diff(geometry.along_mm)
    if np.any(steps < SAME_POSITION_MM):
        k = int(np.argmin(steps))
        raise GeometryError(describe(f"{names[k]} and {names[k + 1]} are at the same position along the slice "
                                     "normal", path=folder, fix="The folder holds duplicate or overlapping series "
                                     "(or two acquisitions under one SeriesInstanceUID); keep one."))
    if geometry.deviation_mm <= JITTER_TOLERANCE * geometry.spacing_mm + REGULAR_EPSILON_MM:  # + rounding of DS
        return
    median = float(np.median(steps))
    worst = int(np.argmax(np.abs(steps - median)))
    raise GeometryError(describe(
        f"non-uniform slice spacing ({steps.min():.2f}–{steps.max():.2f} mm, typical {median:.2f} mm): "
        f"{steps[worst]:.2f} mm between {Path(names[worst]).name} and {Path(names[worst + 1]).name} "
        f"(missing slices?); slices lie up to {geometry.deviation_mm:.2f} mm off a regular grid, more than "
        f"{100 * JITTER_TOLERANCE:.0f} % of the spacing", path=folder,
        fix="Check that no file of the series is missing or corrupt; variable-spacing series are rejected, "
            "resample them to uniform spacing first."))


def _check_tilt(geometry: SliceGeometry, names: list[str], folder: str) -> None:
    if geometry.in_plane_drift_mm <= REGULAR_EPSILON_MM:
        return
    if geometry.tilt_deg > MAX_TILT_DEG:
        raise GeometryError(describe(f"the slices drift {geometry.tilt_deg:.0f}° off the normal of "
                                     f"{tag('ImageOrientationPatient')} ({tag('ImagePositionPatient')} from "
                                     f"{Path(names[0]).name} to {Path(names[-1]).name}), more than any gantry tilt "
                                     f"(±{MAX_TILT_DEG:.0f}°)", path=folder,
                                     fix="The files are not one axial stack; check the series or reformat it."))
    # a tilt moves the slices in-plane in proportion to their distance along the normal
    slope = geometry.in_plane_mm[-1] / geometry.along_mm[-1]
    residual = np.linalg.norm(geometry.in_plane_mm - np.outer(geometry.along_mm, slope), axis=1)
    k = int(np.argmax(residual))
    if residual[k] > JITTER_TOLERANCE * geometry.spacing_mm + REGULAR_EPSILON_MM:
        raise GeometryError(describe(f"{Path(names[k]).name} is shifted {residual[k]:.2f} mm in-plane from the line "
                                     "through the other slices: not a gantry tilt", path=folder,
                                     fix="The files are not one acquisition; check the series."))


def regularise(volume: np.ndarray, geometry: SliceGeometry, *, fill: float) -> np.ndarray:
    """``volume`` (z, y, x; slices sorted as ``geometry``) resampled to the true slice positions on the regular
    untilted grid of ``geometry`` (origin: the first slice; axes row, column, normal; spacing ``spacing_mm``).

    In-plane shifts (tilt) and the interpolation along the normal are interpolating cubic splines (scipy.ndimage,
    scipy.interpolate; along the normal applied as per-slice weights): on band-limited data (PET is blurred by its
    resolution) they are 2.5–3× closer than linear interpolation to a windowed-sinc reference
    (benchmarks/bench_dicomio.py ``--jitter``). ``fill`` is the value outside the field of view after an in-plane
    shift. Returns float32.
    """
    from scipy import interpolate, ndimage

    out = volume.astype(np.float32, copy=True)
    if geometry.in_plane_drift_mm > REGULAR_EPSILON_MM:
        px, py = geometry.pixel_spacing
        for k in range(out.shape[0]):
            shift = geometry.in_plane_mm[k]
            # grid row j lies at row j + (its offset from the first slice) of slice k: shift it back by that offset
            out[k] = ndimage.shift(out[k], ((shift @ geometry.col) / py, (shift @ geometry.row) / px), order=3,
                                   mode="constant", cval=fill)
    if geometry.deviation_mm > REGULAR_EPSILON_MM:
        grid = geometry.spacing_mm * np.arange(out.shape[0])
        # the interpolating spline is linear in the data: its weights (output slice × input slice) come from
        # splining the identity; they fall ~3.7× per slice away from the output, so each output slice is the sum of
        # the few input slices weighing more than WEIGHT_FLOOR (the rest change it by < 1e-6 of the values in all)
        weights = interpolate.make_interp_spline(geometry.along_mm, np.eye(len(grid)), k=min(3, len(grid) - 1),
                                                 axis=0)(grid)
        source = out.copy()
        for g, row in enumerate(weights):
            taps = np.flatnonzero(np.abs(row) > WEIGHT_FLOOR)
            out[g] = np.tensordot(row[taps].astype(np.float32), source[taps], axes=(0, 0))
    return out
