"""Lesion-level detection metrics of a predicted label map against true lesion and organ label maps."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.imaging import robust_median_sd


@dataclass
class ScanMetrics:
    """Detection figures of one scan (lesions >= ``min_volume_ml`` count for sensitivity)."""

    n_true: int = 0
    n_detected: int = 0
    false_positive_rois: int = 0
    dice: list[float] = field(default_factory=list)  # per detected lesion
    fp_by_organ: dict[str, int] = field(default_factory=dict)  # false-positive ROIs lying mostly in an organ


@dataclass
class LesionMatch:
    """How one true lesion label fared: its mask volume (mL), whether it was detected, best Dice."""

    label: int
    mask_ml: float
    detected: bool
    dice: float


def match_lesions(predicted: sitk.Image, truth: sitk.Image) -> list[LesionMatch]:
    """Every true lesion label (any size): detected when a predicted ROI has Dice >= 0.1 with it or contains
    its centroid; its Dice is that of the best-matching predicted ROI."""
    pred, true = sitk.GetArrayFromImage(predicted), sitk.GetArrayFromImage(truth)
    voxel_ml = float(np.prod(truth.GetSpacing())) / 1000.0
    matches = []
    for label in (int(v) for v in np.unique(true) if v):
        lesion = true == label
        centroid = tuple(np.round(np.argwhere(lesion).mean(0)).astype(int))
        overlaps, counts = np.unique(pred[lesion], return_counts=True)
        best = 0.0
        for roi, count in zip(overlaps, counts, strict=True):
            if roi:
                best = max(best, 2 * count / (lesion.sum() + (pred == roi).sum()))
        matches.append(LesionMatch(label, float(lesion.sum() * voxel_ml), bool(best >= 0.1 or pred[centroid] > 0),
                                   float(best)))
    return matches


def evaluate(predicted: sitk.Image, truth: sitk.Image, organs: sitk.Image | None = None,
             organ_names: dict[int, str] | None = None, min_volume_ml: float = 0.5) -> ScanMetrics:
    """Sensitivity counts true lesions of >= ``min_volume_ml`` (mask volume), detected as in ``match_lesions``.

    A predicted ROI overlapping no true lesion is a false positive, attributed to the organ holding most of
    its voxels (if any).
    """
    pred, true = sitk.GetArrayFromImage(predicted), sitk.GetArrayFromImage(truth)
    metrics = ScanMetrics()
    for match in match_lesions(predicted, truth):
        if match.mask_ml < min_volume_ml:
            continue
        metrics.n_true += 1
        if match.detected:
            metrics.n_detected += 1
            metrics.dice.append(match.dice)
    organ = sitk.GetArrayFromImage(organs) if organs is not None else None
    for roi in (int(v) for v in np.unique(pred) if v):
        region = pred == roi
        if (true[region] > 0).any():
            continue
        metrics.false_positive_rois += 1
        if organ is not None and (organ[region] > 0).mean() > 0.5:
            values, counts = np.unique(organ[region][organ[region] > 0], return_counts=True)
            name = (organ_names or {}).get(int(values[counts.argmax()]), str(values[counts.argmax()]))
            metrics.fp_by_organ[name] = metrics.fp_by_organ.get(name, 0) + 1
    return metrics


def organ_voxels(predicted: sitk.Image, truth: sitk.Image, organs: sitk.Image, organ_names: dict[int, str],
                 spill_voxels: int = 2) -> dict[str, int]:
    """Predicted lesion voxels inside each named organ, ignoring voxels within ``spill_voxels`` (default 2,
    8 mm at 4 mm voxels: about one PET FWHM of partial-volume spill) of a true lesion."""
    from scipy import ndimage

    near_lesion = ndimage.binary_dilation(sitk.GetArrayViewFromImage(truth) > 0, iterations=spill_voxels)
    labelled = (sitk.GetArrayViewFromImage(predicted) > 0) & ~near_lesion
    organ = sitk.GetArrayViewFromImage(organs)
    return {name: int((labelled & (organ == value)).sum()) for value, name in organ_names.items()}


def sphere_recovery(volume_ml: float, fwhm_mm: float) -> float:
    """Peak recovery coefficient of a uniform sphere of ``volume_ml`` (mL) blurred by an isotropic Gaussian
    of ``fwhm_mm`` (mm): the blurred value at its centre over its true value (noise-free, analytic).

    The centre of a sphere of radius R convolved with a Gaussian of standard deviation s is the probability
    that a 3D normal vector lies within R: erf(R / (s sqrt 2)) - sqrt(2 / pi) (R / s) exp(-R^2 / (2 s^2))
    (the chi distribution with 3 degrees of freedom). Partial-volume theory: Hoffman et al., J Comput
    Assist Tomogr 1979;3:299-308; Soret et al., J Nucl Med 2007;48:932-945.
    """
    from math import erf, exp, pi, sqrt

    radius = (3.0 * volume_ml * 1000.0 / (4.0 * pi)) ** (1.0 / 3.0)
    x = radius / (fwhm_mm / (2.0 * sqrt(2.0 * np.log(2.0))))
    return erf(x / sqrt(2.0)) - sqrt(2.0 / pi) * x * exp(-x * x / 2.0)


def expected_peak_cnr(suv: np.ndarray, label_map: np.ndarray, labels: list[int], *, true_suv_max: float,
                      volume_ml: float, spacing_mm: float, recon_fwhm_mm: float,
                      shell_mm: tuple[float, float] = (8.0, 16.0)) -> float:
    """Expected peak contrast-to-noise ratio of a true lesion (``labels`` of ``label_map``, z-y-x on the PET grid).

    ``sphere_recovery(volume_ml, recon_fwhm_mm) × (true_suv_max − b) / s``, with ``b`` and ``s`` the median and
    1.4826 × MAD of the PET ``suv`` in a shell ``shell_mm`` (mm; ``spacing_mm`` the voxel size) around the lesion,
    outside every lesion. Rose's criterion (CNR ≥ 5) roughly bounds what any detector finds. 0 when the lesion has
    no voxel on the grid.
    """
    from scipy import ndimage

    mask = np.isin(label_map, labels)
    if not mask.any():
        return 0.0
    inner, outer = (int(round(mm / spacing_mm)) for mm in shell_mm)
    where = np.argwhere(mask)
    box = tuple(slice(max(0, int(lo) - outer - 1), int(hi) + outer + 2)
                for lo, hi in zip(where.min(0), where.max(0), strict=True))
    near = ndimage.binary_dilation(mask[box], iterations=inner)
    shell = ndimage.binary_dilation(mask[box], iterations=outer) & ~near & (label_map[box] == 0)
    values = suv[box][shell]
    if values.size == 0:
        return 0.0
    background, noise = robust_median_sd(values)
    noise = max(noise, 1e-3)
    return sphere_recovery(volume_ml, recon_fwhm_mm) * (true_suv_max - background) / noise
