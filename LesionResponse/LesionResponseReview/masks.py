"""Reader-made lesion-ROI masks on the PET grid (no Slicer, no Qt): grow a hot spot from a click, re-threshold
an existing ROI, paint a sphere. The masks go to the review session's ``add_roi`` / ``edit_roi``, which re-measure
them.

Threshold: a fixed fraction of the hot spot's SUVmax (default 40 %) is the usual PET volume definition
(EANM FDG guideline 2.0, Boellaard et al., EJNMMI 2015: 41 % SUVmax; the same rule is used for
somatostatin-receptor PET in the absence of a DOTATATE-specific one); an absolute SUV threshold is the
alternative. Both are the reader's choice in the app.

Where a threshold region leaks into the organ around a lesion (or the lesion is a few voxels inside a hot organ),
the reader paints it instead, as with the "Paint" effect of Slicer's Segment Editor: a sphere brush of a chosen
radius, optionally masked to an intensity range (here an SUV floor), that never paints over another segment.
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
    """A reader-made ROI mask (uint8 on the PET grid) and how it was made."""

    mask: sitk.Image
    seed_index: tuple[int, int, int]  # (x, y, z) voxel of the SUVmax that seeded it (painted: the brush's centre)
    suv_max: float
    threshold_suv: float | None  # the SUV the voxels reach (painted: the floor, None without one)
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


def _same_grid(suv_image: sitk.Image, labels: sitk.Image) -> None:
    if labels.GetSize() != suv_image.GetSize():
        raise MaskError(describe("the label map and the SUV PET are on different grids", path="labels/",
                                 fix="Re-run the analysis; labels are written on the PET grid."))


def _free(label_array: np.ndarray, keep_label: int) -> np.ndarray:
    """Voxels a reader-made mask may take: no ROI's, or ROI ``keep_label``'s (the one being redrawn; 0: none)."""
    return (label_array == 0) | (label_array == keep_label) if keep_label else label_array == 0


def _index_of(suv_image: sitk.Image, point_lps: Sequence[float]) -> tuple[int, int, int]:
    """(z, y, x) voxel holding ``point_lps`` (MaskError outside the PET)."""
    zyx = suv_image.TransformPhysicalPointToIndex(tuple(float(c) for c in point_lps))[::-1]
    if not all(0 <= c < n for c, n in zip(zyx, suv_image.GetSize()[::-1], strict=True)):
        raise MaskError(describe(f"the point {tuple(round(float(c), 1) for c in point_lps)} mm is outside the PET",
                                 fix="Click inside the image."))
    return zyx


def paint(suv_image: sitk.Image, labels: sitk.Image, centre_lps: Sequence[float], *, radius_mm: float,
          min_suv: float | None = None, keep_label: int = 0) -> GrownMask:
    """The voxels whose centres lie within ``radius_mm`` of ``centre_lps`` (LPS mm): a sphere brush stroke.

    With ``min_suv`` only voxels of SUV >= ``min_suv`` are painted (the brush's masking range). Voxels of other ROIs
    (``labels`` != 0 and != ``keep_label``) are never painted. MaskError when the centre is outside the PET, the
    radius is not in (0, :data:`MAX_RADIUS_MM`] or nothing is left to paint.
    """
    _same_grid(suv_image, labels)
    if not 0 < radius_mm <= MAX_RADIUS_MM:
        raise MaskError(describe(f"a brush radius of {radius_mm} mm", fix=f"Choose a radius above 0 and at most "
                                                                          f"{MAX_RADIUS_MM:g} mm."))
    zyx = _index_of(suv_image, centre_lps)
    spacing = suv_image.GetSpacing()
    box = _box(zyx, suv_image.GetSize()[::-1], [int(np.ceil(radius_mm / s)) + 1 for s in spacing[::-1]])
    index_xyz = np.indices([b.stop - b.start for b in box]).reshape(3, -1)[::-1] + \
        np.array([b.start for b in box[::-1]])[:, None]
    to_lps = np.asarray(suv_image.GetDirection()).reshape(3, 3) * np.asarray(spacing)
    points = np.asarray(suv_image.GetOrigin())[:, None] + to_lps @ index_xyz
    inside = (np.linalg.norm(points - np.asarray(centre_lps, dtype=float)[:, None], axis=0) <= radius_mm).reshape(
        [b.stop - b.start for b in box])
    suv = sitk.GetArrayViewFromImage(suv_image)[box]
    label_array = sitk.GetArrayViewFromImage(labels)[box]
    inside &= _free(label_array, keep_label)
    if min_suv is not None:
        inside &= suv >= min_suv
    if not inside.any():
        floor = "" if min_suv is None else f" with SUV >= {min_suv:.2f}"
        raise MaskError(describe(f"no voxel within {radius_mm:g} mm of this point{floor} is free of other "
                                 "lesion-ROIs", fix="Paint elsewhere, enlarge the brush or lower its SUV floor."))
    out = np.zeros(suv_image.GetSize()[::-1], dtype=np.uint8)
    out[box][inside] = 1
    mask = sitk.GetImageFromArray(out)
    mask.CopyInformation(suv_image)
    return GrownMask(mask, zyx[::-1], float(suv[inside].max()), min_suv, int(inside.sum()))


def grow(suv_image: sitk.Image, labels: sitk.Image, seed_lps: Sequence[float], *,
         fraction: float | None = DEFAULT_FRACTION,
         threshold_suv: float | None = None, keep_label: int = 0) -> GrownMask:
    """The connected region of SUV >= threshold around the hottest voxel near ``seed_lps`` (LPS mm).

    Threshold = ``threshold_suv`` if given, else ``fraction`` x the seed's SUVmax. Voxels of other ROIs
    (``labels`` != 0 and != ``keep_label``) are excluded, so the mask never overlaps them; growing stays within
    :data:`MAX_RADIUS_MM` of the seed.
    """
    _same_grid(suv_image, labels)
    suv = sitk.GetArrayViewFromImage(suv_image)
    label_array = sitk.GetArrayViewFromImage(labels)
    zyx = _index_of(suv_image, seed_lps)
    free = _free(label_array, keep_label)
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
