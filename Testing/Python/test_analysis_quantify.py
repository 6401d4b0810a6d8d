"""measure_rois against analytic values on hand-built images."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from LesionResponseLib.analysis.quantify import QuantificationError, measure_rois, sphere_kernel


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
