"""measure_rois against analytic values on hand-built images."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from LesionResponseLib.analysis.quantify import (
    QuantificationError,
    measure_rois,
    pvc_suv_totals,
    sphere_kernel,
)
from LesionResponseLib.config import QuantificationConfig
from LesionResponseLib.errors import LesionResponseError


def _grid(array: np.ndarray, spacing=(2.0, 2.5, 3.0), origin=(-100.0, 50.0, 20.0), direction=None) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def _ball(shape, centre_zyx, radius_mm, spacing_xyz) -> np.ndarray:
    zz, yy, xx = np.indices(shape).astype(float)
    sz, sy, sx = spacing_xyz[::-1]
    d2 = ((zz - centre_zyx[0]) * sz) ** 2 + ((yy - centre_zyx[1]) * sy) ** 2 + ((xx - centre_zyx[2]) * sx) ** 2
    return d2 <= radius_mm**2


def test_uniform_spheres_match_analytic_values() -> None:
    spacing = (2.0, 2.5, 3.0)
    shape = (40, 48, 60)
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # rotated axes: centroid must use them
    big = _ball(shape, (15, 20, 20), 15.0, spacing)
    small = _ball(shape, (25, 30, 45), 6.0, spacing)
    suv = np.ones(shape, np.float32)
    suv[big] = 10.0
    suv[small] = 4.0
    lab = np.zeros(shape, np.uint16)
    lab[big] = 3
    lab[small] = 7
    labels = _grid(lab, spacing, direction=direction)
    pet = _grid(suv, spacing, direction=direction)
    rois = {r.label: r for r in measure_rois(labels, pet, timepoint=2)}
    assert set(rois) == {3, 7}
    voxel_ml = np.prod(spacing) / 1000
    big_roi = rois[3]
    assert big_roi.roi_id == "tp2-L0003" and big_roi.timepoint == 2
    assert big_roi.n_voxels == int(big.sum())
    assert big_roi.volume_ml == pytest.approx(big.sum() * voxel_ml)
    assert big_roi.volume_ml == pytest.approx(4 / 3 * np.pi * 15.0**3 / 1000, rel=0.05)
    assert big_roi.suv_max == pytest.approx(10.0)
    assert big_roi.suv_mean == pytest.approx(10.0)
    assert big_roi.suv_total == pytest.approx(10.0 * big_roi.volume_ml)
    assert big_roi.suv_peak == pytest.approx(10.0, abs=1e-4)  # a 6.2 mm sphere fits inside a 15 mm one
    expected = pet.TransformContinuousIndexToPhysicalPoint((20.0, 20.0, 15.0))
    assert np.allclose(big_roi.centroid_mm, expected, atol=1e-6)
    small_roi = rois[7]
    assert small_roi.suv_total == pytest.approx(4.0 * small_roi.volume_ml)
    assert 1.0 < small_roi.suv_peak < 4.0  # the sphere reaches the background: peak below the ROI's max


def test_peak_of_single_hot_voxel_is_kernel_centre_weight() -> None:
    spacing = (4.0, 4.0, 4.0)
    suv = np.zeros((15, 15, 15), np.float32)
    suv[7, 7, 7] = 100.0
    lab = (suv > 0).astype(np.uint16)
    roi = measure_rois(_grid(lab, spacing), _grid(suv, spacing), 0)[0]
    kernel = sphere_kernel(spacing)
    centre = tuple(s // 2 for s in kernel.shape)
    assert roi.suv_peak == pytest.approx(100.0 * kernel[centre], rel=1e-5)
    # the partial-voxel kernel covers 1 mL (4/3 π 6.2³ mm³) within the sub-sampling error
    covered_ml = float((kernel / kernel.max()).sum()) * 64 / 1000  # centre voxel is wholly inside: weight 1
    assert covered_ml == pytest.approx(4 / 3 * np.pi * 6.2**3 / 1000, rel=0.1)


def test_empty_label_map_gives_no_rois() -> None:
    image = _grid(np.zeros((5, 5, 5), np.float32))
    assert measure_rois(sitk.Cast(image, sitk.sitkUInt16), image, 0) == []


def test_grid_mismatch_is_a_clear_error() -> None:
    labels = _grid(np.ones((5, 5, 5), np.uint16))
    pet = _grid(np.ones((5, 5, 6), np.float32))
    with pytest.raises(QuantificationError, match="Resample"):
        measure_rois(labels, pet, 0)


def _pet_of_spheres(spheres, background: float, fwhm_mm: float = 6.0, fine_mm: float = 1.0, pet_mm: float = 4.0,
                    size_mm: float = 96.0):
    """A noise-free PET of uniform spheres [(centre_mm zyx, radius_mm, SUV)]: drawn on a ``fine_mm`` grid,
    blurred with a Gaussian PSF of ``fwhm_mm`` and averaged onto ``pet_mm`` voxels (as a scanner would).
    Returns (PET image, label image: PET voxels more than half inside sphere i get label i + 1)."""
    from scipy import ndimage

    n = int(size_mm / fine_mm)
    centres = (np.indices((n, n, n)).astype(np.float32) + 0.5) * fine_mm
    activity = np.full((n, n, n), background, np.float32)
    inside = np.zeros((n, n, n), np.uint16)
    for i, (centre, radius, suv) in enumerate(spheres, start=1):
        ball = sum((c - x) ** 2 for c, x in zip(centres, centre, strict=True)) <= radius**2
        activity[ball] = suv
        inside[ball] = i
    blurred = ndimage.gaussian_filter(activity, fwhm_mm / 2.3548 / fine_mm)
    f = int(pet_mm / fine_mm)
    m = n // f

    def block_mean(a):
        return a.reshape(m, f, m, f, m, f).mean(axis=(1, 3, 5))

    labels = np.zeros((m, m, m), np.uint16)
    for i in range(1, len(spheres) + 1):
        labels[block_mean((inside == i).astype(np.float32)) > 0.5] = i
    return _grid(block_mean(blurred), (pet_mm,) * 3), _grid(labels, (pet_mm,) * 3)


def test_pvc_recovers_the_true_suv_total_of_blurred_spheres() -> None:
    """2.1 mL and 7.2 mL spheres in a warm background, 6 mm PSF, 4 mm voxels: SUVmean x volume loses 20-45 % of
    the true SUVtotal (SUV x exact sphere volume); the count-conserving correction recovers it within 5 %."""
    spheres = [((30.0, 30.0, 30.0), 8.0, 20.0), ((62.0, 60.0, 58.0), 12.0, 8.0)]
    pet, labels = _pet_of_spheres(spheres, background=2.0)
    rois = {r.label: r for r in measure_rois(labels, pet, 0, settings=QuantificationConfig(psf_fwhm_mm=6.0))}
    for i, (_, radius, suv) in enumerate(spheres, start=1):
        true_total = suv * 4 / 3 * np.pi * radius**3 / 1000
        assert rois[i].suv_total < 0.85 * true_total
        assert rois[i].suv_total_pvc == pytest.approx(true_total, rel=0.05)


def test_pvc_of_neighbours_is_shared_and_local() -> None:
    """Two spheres 6 mm apart (edge to edge) share the spill-over between them: each stays within 10 %;
    measuring one label alone (``only``) gives the same value as measuring all."""
    spheres = [((48.0, 40.0, 36.0), 9.0, 15.0), ((48.0, 40.0, 60.0), 9.0, 30.0)]
    pet, labels = _pet_of_spheres(spheres, background=1.0)
    rois = {r.label: r for r in measure_rois(labels, pet, 0)}
    for i, (_, radius, suv) in enumerate(spheres, start=1):
        assert rois[i].suv_total_pvc == pytest.approx(suv * 4 / 3 * np.pi * radius**3 / 1000, rel=0.10)
    alone = measure_rois(labels, pet, 0, only=[2])
    assert [r.label for r in alone] == [2] and alone[0].suv_total_pvc == pytest.approx(rois[2].suv_total_pvc)
    assert alone[0].suv_total == pytest.approx(rois[2].suv_total)


def test_pvc_needs_a_positive_resolution() -> None:
    pet, labels = _pet_of_spheres([((48.0, 48.0, 48.0), 8.0, 10.0)], background=1.0)
    with pytest.raises(LesionResponseError, match="psf_fwhm_mm"):  # the setting refuses it
        QuantificationConfig(psf_fwhm_mm=0.0)
    with pytest.raises(QuantificationError, match="psf_fwhm_mm"):  # and so does the correction itself
        pvc_suv_totals(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(pet), pet.GetSpacing(), psf_fwhm_mm=0.0)
