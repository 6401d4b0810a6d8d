"""Reader-made masks of the review (grow a clicked hot spot, re-threshold a ROI) on analytic images."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from LesionResponseReview import masks

SPACING = (2.0, 2.0, 3.0)  # mm, anisotropic on purpose


def _image(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin((-40.0, -30.0, 12.0))
    return image


def _sphere(shape, centre_zyx, radius_mm):
    grid = np.indices(shape).transpose(1, 2, 3, 0) - np.array(centre_zyx)
    return ((grid * np.array(SPACING[::-1])) ** 2).sum(-1) <= radius_mm**2


@pytest.fixture()
def scene():
    shape = (30, 40, 40)
    hot = _sphere(shape, (15, 20, 12), 9.0)
    suv = np.where(hot, 10.0, 1.0).astype(np.float32)
    suv[15, 20, 12] = 12.0  # the SUVmax voxel
    other = _sphere(shape, (15, 20, 30), 6.0)
    suv[other] = 8.0
    labels = np.zeros(shape, np.uint16)
    labels[other] = 3  # an existing ROI
    return _image(suv), _image(labels), hot, other


def test_grow_from_a_click_near_the_hot_spot_finds_the_sphere(scene):
    suv, labels, hot, _ = scene
    click = suv.TransformIndexToPhysicalPoint((14, 21, 15))  # 2 voxels off the maximum (x, y, z index)
    grown = masks.grow(suv, labels, click)
    assert grown.seed_index == (12, 20, 15) and grown.suv_max == pytest.approx(12.0)
    assert grown.threshold_suv == pytest.approx(0.4 * 12.0)
    assert np.array_equal(sitk.GetArrayFromImage(grown.mask) > 0, hot)  # every sphere voxel, nothing else


def test_grow_never_takes_voxels_of_another_roi(scene):
    suv, labels, _, other = scene
    click = suv.TransformIndexToPhysicalPoint((30, 20, 15))  # on the existing ROI
    grown = masks.grow(suv, labels, click, threshold_suv=0.5)  # a threshold under the background
    mask = sitk.GetArrayFromImage(grown.mask) > 0
    assert not (mask & other).any() and mask.any()


def test_grow_refuses_outside_the_image_and_below_the_threshold(scene):
    suv, labels, _, _ = scene
    with pytest.raises(masks.MaskError, match="outside the PET"):
        masks.grow(suv, labels, (500.0, 0.0, 0.0))
    with pytest.raises(masks.MaskError, match="below the threshold"):
        masks.grow(suv, labels, suv.TransformIndexToPhysicalPoint((2, 2, 2)), threshold_suv=20.0)


def test_rethreshold_regrows_a_roi_from_its_own_maximum(scene):
    suv, labels, _, other = scene
    lower = masks.rethreshold(suv, labels, 3, threshold_suv=0.5)  # below background: grows out of the ROI
    higher = masks.rethreshold(suv, labels, 3, fraction=0.9)  # 7.2 SUV: the ROI exactly
    assert np.array_equal(sitk.GetArrayFromImage(higher.mask) > 0, other)
    assert (sitk.GetArrayFromImage(lower.mask) > 0).sum() > other.sum()


def test_paint_fills_the_voxels_of_a_sphere_around_its_centre(scene):
    suv, labels, _, _ = scene
    centre = suv.TransformIndexToPhysicalPoint((12, 5, 5))  # a voxel centre, far from the existing ROI
    painted = masks.paint(suv, labels, centre, radius_mm=6.0)
    # voxel centres (2i, 2j, 3k) mm with 4(i^2 + j^2) + 9k^2 <= 36: k = 0 holds i^2 + j^2 <= 9 (29 points),
    # k = +-1 holds i^2 + j^2 <= 6.75 (21 each), k = +-2 only i = j = 0 (1 each): 29 + 2 x 21 + 2 x 1 = 73
    assert painted.n_voxels == 73 == int((sitk.GetArrayFromImage(painted.mask) > 0).sum())
    assert painted.seed_index == (12, 5, 5) and painted.threshold_suv is None


def test_paint_honours_the_suv_floor_and_never_paints_another_roi(scene):
    suv, labels, hot, other = scene
    between = suv.TransformIndexToPhysicalPoint((21, 20, 15))  # between the hot sphere and the existing ROI
    within = _sphere(hot.shape, (15, 20, 21), 14.0)
    floored = sitk.GetArrayFromImage(masks.paint(suv, labels, between, radius_mm=14.0, min_suv=5.0).mask) > 0
    assert np.array_equal(floored, within & hot)  # SUV 10 voxels of the brush; background 1 and the ROI's 8 left
    plain = sitk.GetArrayFromImage(masks.paint(suv, labels, between, radius_mm=14.0).mask) > 0
    assert np.array_equal(plain, within & ~other) and (within & other).any()
    kept = sitk.GetArrayFromImage(masks.paint(suv, labels, between, radius_mm=14.0, keep_label=3).mask) > 0
    assert np.array_equal(kept, within)  # the ROI being edited may be painted over


def test_paint_refuses_outside_the_image_a_bad_radius_and_nothing_to_paint(scene):
    suv, labels, _, _ = scene
    with pytest.raises(masks.MaskError, match="outside the PET"):
        masks.paint(suv, labels, (500.0, 0.0, 0.0), radius_mm=5.0)
    inside = suv.TransformIndexToPhysicalPoint((12, 20, 15))
    for radius in (0.0, -1.0, masks.MAX_RADIUS_MM + 1):
        with pytest.raises(masks.MaskError, match="brush radius"):
            masks.paint(suv, labels, inside, radius_mm=radius)
    with pytest.raises(masks.MaskError, match="SUV >= 20.00"):
        masks.paint(suv, labels, inside, radius_mm=5.0, min_suv=20.0)
    with pytest.raises(masks.MaskError, match="free of other lesion-ROIs"):
        masks.paint(suv, labels, suv.TransformIndexToPhysicalPoint((30, 20, 15)), radius_mm=2.0)
