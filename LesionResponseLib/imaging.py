"""Small image helpers shared by the stages (grid comparison, nearest-neighbour resampling of masks, CT on the PET
grid, balls)."""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

SPACING_TOLERANCE_MM = 1e-4  # DICOM decimal strings round spacing/origin; these absorb that, nothing more
ORIGIN_TOLERANCE_MM = 1e-3
DIRECTION_TOLERANCE = 1e-5


def same_grid(image: sitk.Image, reference: sitk.Image) -> bool:
    """True when ``image`` has the size, spacing (mm), origin (mm) and direction of ``reference``."""
    return (image.GetSize() == reference.GetSize()
            and np.allclose(image.GetSpacing(), reference.GetSpacing(), atol=SPACING_TOLERANCE_MM)
            and np.allclose(image.GetOrigin(), reference.GetOrigin(), atol=ORIGIN_TOLERANCE_MM)
            and np.allclose(image.GetDirection(), reference.GetDirection(), atol=DIRECTION_TOLERANCE))


def label_on_grid(labels: sitk.Image, reference: sitk.Image, pixel_type: int = sitk.sitkUInt16) -> sitk.Image:
    """``labels`` cast to ``pixel_type`` on the grid of ``reference`` (nearest neighbour when grids differ)."""
    labels = sitk.Cast(labels, pixel_type)
    if same_grid(labels, reference):
        labels.CopyInformation(reference)  # drop sub-tolerance rounding differences
        return labels
    return sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, pixel_type)


def ball(spacing_zyx: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    """Boolean (z, y, x) structuring element: the voxels within ``radius_mm`` (mm, boundary included) of the
    centre on a grid of ``spacing_zyx`` (mm)."""
    half = [math.floor(radius_mm / s) for s in spacing_zyx]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    return sum((g * s) ** 2 for g, s in zip(grids, spacing_zyx, strict=True)) <= radius_mm**2 + 1e-6


#: The median absolute deviation × this is the SD of Gaussian values (a robust SD).
MAD_TO_SD = 1.4826


def robust_median_sd(values: np.ndarray) -> tuple[float, float]:
    """(median, robust SD = 1.4826 × median absolute deviation) of ``values``: the SD of the bulk of the values,
    not pulled up by the few outliers (a lesion's voxels among background, an organ's rim)."""
    median = float(np.median(values))
    return median, MAD_TO_SD * float(np.median(np.abs(values - median)))


#: HU outside a CT's field of view: air.
AIR_HU = -1000.0


def hu_on_grid(ct: sitk.Image, grid: sitk.Image) -> np.ndarray:
    """The CT (HU) on ``grid`` (e.g. the PET of the same time point) as a float32 (z, y, x) array.

    PET and CT of one time point share their frame of reference (DICOM PS3.3 C.7.4.1), so the CT is resampled
    with the identity transform: first block-averaged by the whole factor between the spacings (``BinShrink``:
    a 0.7-1 mm diagnostic CT is averaged rather than point-sampled onto 4 mm voxels; 0.1 s where a Gaussian
    took 1.5 s on a whole-body CT), then linearly interpolated; outside the CT's field of view it is air.
    """
    factors = [max(1, int(t // s)) for s, t in zip(ct.GetSpacing(), grid.GetSpacing(), strict=True)]
    if max(factors) > 1:
        ct = sitk.BinShrink(ct, factors)
    return sitk.GetArrayFromImage(sitk.Resample(ct, grid, sitk.Transform(), sitk.sitkLinear, AIR_HU,
                                                sitk.sitkFloat32))
