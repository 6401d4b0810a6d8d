"""BASELINE: classical liver-referenced SUV threshold (PERCIST-style), the fallback when no model fits.

Threshold = max(``floor_suv``, 1.5 x liver SUVmean + 2 x liver SD). The liver reference is estimated as
the largest connected region of moderate uptake (smoothed SUV within ``liver_band``), or supplied. Known
physiological uptake is removed with an organ map when one is given (its non-zero voxels are excluded, so
pass only organs whose whole uptake is physiological - spleen, kidneys, adrenals, pituitary, bladder - never
the liver, which holds lesions); otherwise components larger
than ``max_volume_ml`` (spleen, kidneys, bladder are > 100 mL) are dropped. Adrenals, pituitary and
small bowel loops survive this heuristic: expect false positives - it is a baseline, not the method.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.imaging import robust_median_sd


def liver_reference(pet_suv: sitk.Image, liver_band: tuple[float, float] = (2.0, 12.0),
                    smoothing_mm: float = 8.0) -> tuple[float, float]:
    """(SUVmean, SD) of the liver, estimated as the largest region of smoothed SUV within ``liver_band``."""
    import cc3d

    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(sitk.Cast(pet_suv, sitk.sitkFloat32),
                                                                    smoothing_mm / 2.355))
    band = (smooth >= liver_band[0]) & (smooth <= liver_band[1])
    labels = cc3d.connected_components(band, connectivity=6)
    if labels.max() == 0:
        return 5.0, 1.0  # median DOTATATE liver SUVmean (docs/DOMAIN.md §5) when nothing resembles a liver
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    return robust_median_sd(sitk.GetArrayFromImage(pet_suv)[labels == counts.argmax()])


def threshold_mask(pet_suv: sitk.Image, organs: sitk.Image | None = None, liver_suv: float | None = None,
                   floor_suv: float = 4.0, max_volume_ml: float = 100.0) -> sitk.Image:
    """Binary lesion mask (uint8) on the PET grid by the liver-referenced threshold; see the module doc.

    ``organs``: optional map on the PET grid whose non-zero voxels are physiological uptake to exclude.
    ``floor_suv`` 4.0: never below median liver SUVmean (docs/DOMAIN.md §5). ``max_volume_ml`` 100 mL: without an
    organ map, larger components are taken for spleen, kidneys or bladder and dropped.
    """
    import cc3d

    mean, sd = (liver_suv, 0.15 * liver_suv) if liver_suv is not None else liver_reference(pet_suv)
    suv = sitk.GetArrayFromImage(pet_suv)
    mask = suv > max(floor_suv, 1.5 * mean + 2.0 * sd)
    if organs is not None:
        mask &= sitk.GetArrayFromImage(organs) == 0
    else:
        labels = cc3d.connected_components(mask, connectivity=26)
        counts = np.bincount(labels.ravel())
        voxel_ml = float(np.prod(pet_suv.GetSpacing())) / 1000.0
        big = np.flatnonzero(counts * voxel_ml > max_volume_ml)
        mask &= ~np.isin(labels, big[big > 0])
    out = sitk.GetImageFromArray(mask.astype(np.uint8))
    out.CopyInformation(pet_suv)
    return out
