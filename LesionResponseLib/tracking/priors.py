"""Where the registration puts an earlier (or later) lesion-ROI in another time point: the prior's search region.

Transforms follow the ITK convention of :mod:`LesionResponseLib.tracking.registration`: ``transforms[(0, k)]``
maps points of the baseline to the corresponding points of time point ``k``. A point of time point ``s`` goes
to time point ``d`` through the baseline: ``T(0, d)(T(0, s)⁻¹(p))``. ``T(0, s)⁻¹`` is evaluated per point by
fixed-point iteration ``x ← x + (p − T(x))``, which converges for any transform whose Jacobian stays within
the unit ball of the identity (rigid repositioning by translations and a few degrees, smooth deformations:
what registration returns; a folding transform is rejected by the registration's checks). No image-wide
inverse field is built, so the cost follows the ROI's voxel count.

The ROI's voxel centres are mapped into the target grid and the set is grown by ``margin_mm`` (physical
ball): this covers the registration error at lesions, the partial-volume shift of a shrinking lesion's edge,
and the holes a deformation leaves between mapped voxel centres.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from LesionResponseLib.errors import describe
from LesionResponseLib.imaging import ball
from LesionResponseLib.tracking.tracks import TrackingError

Transforms = dict[tuple[int, int], sitk.Transform]
INVERSE_TOLERANCE_MM = 0.01
INVERSE_ITERATIONS = 50


def invert_point(transform: sitk.Transform, target: np.ndarray) -> np.ndarray:
    """The point ``x`` with ``transform(x) == target`` (mm, within :data:`INVERSE_TOLERANCE_MM`)."""
    x = np.asarray(target, float).copy()
    for _ in range(INVERSE_ITERATIONS):
        residual = np.asarray(target, float) - np.asarray(transform.TransformPoint(tuple(x)))
        x += residual
        if float(np.abs(residual).max()) < INVERSE_TOLERANCE_MM:
            break
    return x


def map_points(points: np.ndarray, transforms: Transforms, source: int, target: int) -> np.ndarray:
    """Points (N × 3, LPS mm) of time point ``source`` mapped to time point ``target`` through the baseline."""
    points = np.asarray(points, float).reshape(-1, 3)
    if source == target:
        return points.copy()
    for k in {source, target} - {0}:
        if (0, k) not in transforms:
            raise TrackingError(describe(f"no registration of time point {k} to the baseline",
                                         path="transforms", fix=f"Register time point {k} onto the baseline"))
    if source != 0:
        inverse = transforms[(0, source)]
        points = np.array([invert_point(inverse, p) for p in points])
    if target != 0:
        forward = transforms[(0, target)]
        points = np.array([forward.TransformPoint(tuple(p)) for p in points])
    return points


def voxel_points(mask: np.ndarray, grid: sitk.Image) -> np.ndarray:
    """Physical centres (N × 3, LPS mm) of the ``True`` voxels of a (z, y, x) mask on ``grid``."""
    zyx = np.argwhere(mask)
    idx = zyx[:, ::-1].astype(float)
    direction = np.asarray(grid.GetDirection()).reshape(3, 3)
    return (idx * np.asarray(grid.GetSpacing())) @ direction.T + np.asarray(grid.GetOrigin())


def map_mask(mask: np.ndarray, source_grid: sitk.Image, transforms: Transforms, *, source: int, target: int,
             target_grid: sitk.Image, margin_mm: float) -> np.ndarray:
    """A (z, y, x) mask of time point ``source`` as a search region on ``target_grid`` (grown by ``margin_mm``)."""
    points = map_points(voxel_points(mask, source_grid), transforms, source, target)
    out = np.zeros(sitk.GetArrayViewFromImage(target_grid).shape, bool)
    direction = np.asarray(target_grid.GetDirection()).reshape(3, 3)
    idx = np.rint(((points - np.asarray(target_grid.GetOrigin())) @ direction) / np.asarray(target_grid.GetSpacing()))
    idx = idx.astype(int)[:, ::-1]  # z, y, x
    inside = np.all((idx >= 0) & (idx < np.asarray(out.shape)), axis=1)
    if not inside.any():
        return out
    out[tuple(idx[inside].T)] = True
    if margin_mm <= 0:
        return out
    spacing = np.asarray(target_grid.GetSpacing()[::-1], float)
    structure = ball(tuple(spacing), margin_mm)
    pad = np.array(structure.shape) // 2 + 1
    where = np.argwhere(out)
    low = np.maximum(where.min(axis=0) - pad, 0)
    high = np.minimum(where.max(axis=0) + pad + 1, out.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
    out[box] = ndimage.binary_dilation(out[box], structure)
    return out
