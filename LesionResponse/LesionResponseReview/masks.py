"""Reader-made lesion-ROI masks on the PET grid (no Slicer, no Qt): grow a hot spot from a click, re-threshold
an existing ROI. The masks go to the review session's ``add_roi`` / ``edit_roi``, which re-measure them.

Threshold: a fixed fraction of the hot spot's SUVmax (default 40 %) is the usual PET volume definition
(EANM FDG guideline 2.0, Boellaard et al., EJNMMI 2015: 41 % SUVmax; the same rule is used for
somatostatin-receptor PET in the absence of a DOTATATE-specific one); an absolute SUV threshold is the
alternative. Both are the reader's choice in the app.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.errors import LesionResponseError, describe

DEFAULT_FRACTION = 0.40  # of the hot spot's SUVmax (see module docstring)
SEARCH_RADIUS_MM = 10.0  # the hottest voxel this close to the click seeds the ROI: ~1.5 x PET FWHM (6-7 mm),
# so a click on the visible hot spot finds its maximum even on a blurred or slightly shifted display
MAX_RADIUS_MM = 60.0  # growing stops this far from the seed: larger than any lesion-ROI the review expects
# (a 60 mm radius sphere is ~900 mL), and it keeps a low threshold from flooding a hot organ


class MaskError(LesionResponseError):
    """A mask cannot be made here (outside the image, no uptake above the threshold, all taken by ROIs)."""


@dataclass
class GrownMask:
    """A grown ROI mask (uint8 on the PET grid) and how it was made."""

    mask: sitk.Image
    seed_index: tuple[int, int, int]  # (x, y, z) voxel of the SUVmax that seeded it
    suv_max: float
    threshold_suv: float
    n_voxels: int


def _ball(spacing: Sequence[float], radius_mm: float) -> np.ndarray:
    """Boolean (z, y, x) ball of ``radius_mm`` on a grid of ``spacing`` (x, y, z mm)."""
    half = [int(np.ceil(radius_mm / s)) for s in spacing[::-1]]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    return sum((g * s) ** 2 for g, s in zip(grids, spacing[::-1], strict=True)) <= radius_mm**2


def _box(centre: Sequence[int], shape: Sequence[int], half: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(max(c - h, 0), min(c + h + 1, n)) for c, h, n in zip(centre, half, shape, strict=True))


def hottest_near(suv: np.ndarray, spacing: Sequence[float], index_zyx: Sequence[int], radius_mm: float,
                 free: np.ndarray) -> tuple[int, int, int]:
    """(z, y, x) of the highest SUV among ``free`` voxels within ``radius_mm`` of ``index_zyx``."""
    half = [int(np.ceil(radius_mm / s)) for s in spacing[::-1]]
    box = _box(index_zyx, suv.shape, half)
    offsets = np.indices(suv[box].shape).reshape(3, -1).T + [b.start for b in box]
    distance = np.sqrt((((offsets - np.asarray(index_zyx)) * np.asarray(spacing[::-1])) ** 2).sum(1))
    values = np.where((distance <= radius_mm) & free[box].ravel(), suv[box].ravel(), -np.inf)
    if not np.isfinite(values.max()):
        raise MaskError(describe("every voxel near this point already belongs to a lesion-ROI",
                                 fix="Click the hot spot outside the existing ROIs, or edit that ROI instead."))
    return tuple(int(v) for v in offsets[int(values.argmax())])  # type: ignore[return-value]


def grow(suv_image: sitk.Image, labels: sitk.Image, seed_lps: Sequence[float], *,
         fraction: float | None = DEFAULT_FRACTION,
         threshold_suv: float | None = None, keep_label: int = 0) -> GrownMask:
    """The connected region of SUV >= threshold around the hottest voxel near ``seed_lps`` (LPS mm).

    Threshold = ``threshold_suv`` if given, else ``fraction`` x the seed's SUVmax. Voxels of other ROIs
    (``labels`` != 0 and != ``keep_label``) are excluded, so the mask never overlaps them; growing stays within
    :data:`MAX_RADIUS_MM` of the seed.
    """
    suv = sitk.GetArrayViewFromImage(suv_image)
    label_array = sitk.GetArrayViewFromImage(labels)
    if label_array.shape != suv.shape:
        raise MaskError(describe("the label map and the SUV PET are on different grids", path="labels/",
                                 fix="Re-run the analysis; labels are written on the PET grid."))
    index = suv_image.TransformPhysicalPointToIndex(tuple(float(c) for c in seed_lps))
    zyx = index[::-1]
    if not all(0 <= c < n for c, n in zip(zyx, suv.shape, strict=True)):
        raise MaskError(describe(f"the point {tuple(round(c, 1) for c in seed_lps)} mm is outside the PET",
                                 fix="Click inside the image."))
    free = (label_array == 0) | (label_array == keep_label) if keep_label else label_array == 0
    spacing = suv_image.GetSpacing()
    seed = hottest_near(suv, spacing, zyx, SEARCH_RADIUS_MM, free)
    suv_max = float(suv[seed])
    threshold = float(threshold_suv) if threshold_suv is not None else float(fraction or DEFAULT_FRACTION) * suv_max
    if suv_max < threshold or suv_max <= 0:
        raise MaskError(describe(f"the hottest voxel here has SUV {suv_max:.2f}, below the threshold {threshold:.2f}",
                                 fix="Lower the threshold or click on the hot spot."))
    half = [int(np.ceil(MAX_RADIUS_MM / s)) for s in spacing[::-1]]
    box = _box(seed, suv.shape, half)
    local_seed = tuple(int(s - b.start) for s, b in zip(seed, box, strict=True))
    ball = _ball(spacing, MAX_RADIUS_MM)
    ball = ball[tuple(slice(h - (s - b.start), h - (s - b.start) + (b.stop - b.start))
                      for h, s, b in zip(half, seed, box, strict=True))]
    candidate = (suv[box] >= threshold) & free[box] & ball
    import cc3d

    components = cc3d.connected_components(candidate.astype(np.uint8), connectivity=6)
    region = components == components[local_seed]
    out = np.zeros(suv.shape, dtype=np.uint8)
    out[box][region] = 1
    mask = sitk.GetImageFromArray(out)
    mask.CopyInformation(suv_image)
    return GrownMask(mask, (seed[2], seed[1], seed[0]), suv_max, threshold, int(region.sum()))


def rethreshold(suv_image: sitk.Image, labels: sitk.Image, label: int, fraction: float | None = DEFAULT_FRACTION,
                threshold_suv: float | None = None) -> GrownMask:
    """A new mask for the ROI ``label``: grown from its own SUVmax voxel with a new threshold (it may grow into
    background, never into another ROI)."""
    label_array = sitk.GetArrayViewFromImage(labels)
    inside = np.argwhere(label_array == label)
    if inside.size == 0:
        raise MaskError(describe(f"label {label} has no voxel", path="labels/", fix="Choose an existing ROI."))
    suv = sitk.GetArrayViewFromImage(suv_image)
    peak = inside[int(np.argmax(suv[tuple(inside.T)]))]
    seed_lps = suv_image.TransformIndexToPhysicalPoint(tuple(int(c) for c in peak[::-1]))
    return grow(suv_image, labels, seed_lps, fraction=fraction, threshold_suv=threshold_suv, keep_label=label)
