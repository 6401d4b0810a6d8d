"""Per lesion-ROI measures (DOMAIN.md §4): volume, SUVmax, SUVmean, SUVpeak, SUVtotal, centroid.

Everything is vectorised over the labels (``numpy.bincount`` / ``scipy.ndimage``), so one call measures
thousands of ROIs in about a second; SUVpeak sphere means are computed only at ROI voxels.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from LesionResponseLib.datamodel import LesionROI, roi_id_for
from LesionResponseLib.errors import LesionResponseError, describe
from LesionResponseLib.imaging import same_grid

PEAK_RADIUS_MM = 6.2  # radius of a 1 mL sphere (PERCIST SUVpeak)
PEAK_SUBSAMPLES = 5  # sub-samples per voxel axis for the partial-volume weights of the sphere kernel


class QuantificationError(LesionResponseError):
    """The label map and the PET cannot be measured together."""


def _check_grids(labels: sitk.Image, pet_suv: sitk.Image) -> None:
    if not same_grid(labels, pet_suv):
        raise QuantificationError(describe(
            f"label map grid (size {labels.GetSize()}, spacing {labels.GetSpacing()}) differs from the PET "
            f"grid (size {pet_suv.GetSize()}, spacing {pet_suv.GetSpacing()})",
            path="label map", fix="Resample the label map onto the PET grid with nearest-neighbour first."))


def sphere_kernel(spacing_xyz: tuple[float, float, float], radius_mm: float = PEAK_RADIUS_MM,
                  subsamples: int = PEAK_SUBSAMPLES) -> np.ndarray:
    """Normalised (sum 1) spherical kernel in (z, y, x) order for voxels of ``spacing_xyz`` mm.

    Each weight is the fraction of the voxel inside the sphere of ``radius_mm`` (estimated on
    ``subsamples``³ points per voxel), so the kernel stays close to 1 mL even for coarse 4–5 mm PET voxels.
    """
    spacing_zyx = np.asarray(spacing_xyz, dtype=float)[::-1]
    half = np.ceil(radius_mm / spacing_zyx - 0.5).astype(int)
    offsets = (np.arange(subsamples) + 0.5) / subsamples - 0.5  # voxel fractions
    axes = [((np.arange(-h, h + 1)[:, None] + offsets[None, :]) * s) for h, s in zip(half, spacing_zyx, strict=True)]
    dist2 = (axes[0][:, None, None, :, None, None] ** 2 + axes[1][None, :, None, None, :, None] ** 2
             + axes[2][None, None, :, None, None, :] ** 2)
    inside = (dist2 <= radius_mm**2).mean(axis=(3, 4, 5))
    return inside / inside.sum()


def sphere_means(suv: np.ndarray, voxels: tuple[np.ndarray, ...], spacing_xyz: tuple[float, float, float],
                 radius_mm: float = PEAK_RADIUS_MM) -> np.ndarray:
    """Mean SUV in a sphere of ``radius_mm`` centred on each voxel of ``voxels`` (z, y, x index arrays).

    Computed only at those voxels (one gather per kernel tap), so the cost scales with the ROI volume, not
    the image. Near the image border only the part of the sphere inside the image counts.
    """
    kernel = sphere_kernel(spacing_xyz, radius_mm)
    half = np.array(kernel.shape) // 2
    padded = np.pad(suv.astype(np.float32, copy=False), [(h, h) for h in half])
    inside = np.pad(np.ones(suv.shape, dtype=bool), [(h, h) for h in half])
    summed = np.zeros(voxels[0].size, np.float64)
    weight = np.zeros(voxels[0].size, np.float64)
    for offset in np.argwhere(kernel > 0):
        w = float(kernel[tuple(offset)])
        index = tuple(v + o for v, o in zip(voxels, offset, strict=True))
        summed += w * padded[index]
        weight += w * inside[index]
    return summed / np.maximum(weight, 1e-12)


def measure_rois(labels: sitk.Image, pet_suv: sitk.Image, timepoint: int) -> list[LesionROI]:
    """Measure every non-zero label of ``labels`` (PET grid) on ``pet_suv`` (SUV), one :class:`LesionROI` each.

    - ``volume_ml`` = voxel count × voxel volume (mL); ``suv_total`` = Σ SUV × voxel volume (SUV·mL).
    - ``suv_peak`` = the highest mean SUV in a 1 mL sphere (radius 6.2 mm, partial-voxel weights) centred on
      any voxel of the ROI; the sphere samples the whole image, not only the ROI (PERCIST).
    - ``centroid_mm`` = the LPS physical point (mm) of the geometric (unweighted) voxel-index centroid.
    """
    _check_grids(labels, pet_suv)
    lab = sitk.GetArrayViewFromImage(labels)
    mask = lab > 0
    voxels = np.nonzero(mask)
    flat_lab = lab[voxels].astype(np.int64)
    ids = np.unique(flat_lab)
    if ids.size == 0:
        return []
    suv = sitk.GetArrayViewFromImage(pet_suv)
    flat_suv = suv[voxels].astype(np.float64)
    spacing = labels.GetSpacing()
    voxel_ml = float(np.prod(spacing)) / 1000.0
    n = int(ids.max()) + 1
    count = np.bincount(flat_lab, minlength=n)
    total = np.bincount(flat_lab, weights=flat_suv, minlength=n)
    centroid_idx = np.stack([np.bincount(flat_lab, weights=i, minlength=n) for i in voxels[::-1]],
                            axis=1) / np.maximum(count, 1)[:, None]  # (x, y, z) index order
    suv_max = ndimage.maximum(flat_suv, flat_lab, index=ids)
    peaks = ndimage.maximum(sphere_means(suv, voxels, spacing), flat_lab, index=ids)
    direction = np.asarray(labels.GetDirection()).reshape(3, 3)
    points = np.asarray(labels.GetOrigin()) + (centroid_idx[ids] * np.asarray(spacing)) @ direction.T
    return [
        LesionROI(roi_id=roi_id_for(timepoint, int(k)), timepoint=timepoint, label=int(k),
                  centroid_mm=tuple(float(c) for c in points[i]), volume_ml=float(count[k] * voxel_ml),
                  suv_max=float(suv_max[i]), suv_mean=float(total[k] / count[k]), suv_peak=float(peaks[i]),
                  suv_total=float(total[k] * voxel_ml), n_voxels=int(count[k]))
        for i, k in enumerate(ids)
    ]
