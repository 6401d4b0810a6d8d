"""Components, minimum volume, split of touching lesions and the threshold baseline on analytic images."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.segmentation import (
    drop_equivocal_rois,
    label_rois,
    liver_reference,
    segment,
    threshold_mask,
)

SPACING = 2.0  # mm; voxel = 0.008 mL


def _image(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing((SPACING,) * 3)
    return image


def _ball(shape, centre_vox, radius_mm) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    dist2 = sum((g - c) ** 2 for g, c in zip((zz, yy, xx), centre_vox, strict=True)) * SPACING**2
    return dist2 <= radius_mm**2


def test_components_drop_small_and_order_by_suvmax():
    shape = (40, 40, 40)
    suv = np.ones(shape)
    big, small, medium = _ball(shape, (10, 10, 10), 8), _ball(shape, (30, 30, 30), 2), _ball(shape, (10, 30, 20), 6)
    suv[big], suv[small], suv[medium] = 10.0, 50.0, 30.0
    labels = label_rois(_image(big | small | medium), _image(suv), min_volume_ml=0.1, split_touching=False)
    out = sitk.GetArrayFromImage(labels)
    assert labels.GetPixelID() == sitk.sitkUInt16
    assert out.max() == 2  # the 2 mm-radius ball (0.03 mL) is dropped
    assert (out[medium] == 1).all() and (out[big] == 2).all()  # hottest first
    assert abs((out == 2).sum() * 0.008 - 4 / 3 * np.pi * 0.8**3) < 0.15  # 8 mm ball ~ 2.14 mL


def test_touching_lesions_split_but_single_lesion_not():
    shape = (30, 30, 50)
    zz, yy, xx = np.indices(shape) * SPACING
    peak = lambda cx: 20 * np.exp(-((zz - 30) ** 2 + (yy - 30) ** 2 + (xx - cx) ** 2) / (2 * 6.0**2))  # noqa: E731
    pair = 1 + peak(38) + peak(62)  # two lesions 24 mm apart, saddle SUV ~5.9 vs peaks ~21
    mask = pair > 3
    assert sitk.GetArrayFromImage(label_rois(_image(mask), _image(pair), split_touching=False)).max() == 1
    split = sitk.GetArrayFromImage(label_rois(_image(mask), _image(pair), split_touching=True))
    assert split.max() == 2
    assert split[15, 15, 19] != split[15, 15, 31]  # each peak (x = 38 mm, 62 mm) in its own ROI
    single = 1 + peak(50)
    assert sitk.GetArrayFromImage(label_rois(_image(single > 3), _image(single), split_touching=True)).max() == 1


def test_threshold_baseline_finds_spheres_and_skips_large_organ():
    shape = (60, 60, 60)
    rng = np.random.default_rng(3)
    suv = 0.5 + 0.05 * rng.standard_normal(shape)
    liver = np.zeros(shape, bool)
    liver[5:35, 5:55, 5:35] = True
    suv[liver] = 5.0 + 0.3 * rng.standard_normal(liver.sum())
    spleen = _ball(shape, (45, 45, 45), 32)  # 137 mL, SUV 25: physiological, must be dropped
    lesions = [_ball(shape, (20, 20, 20), 8), _ball(shape, (45, 15, 15), 6)]
    suv[spleen] = 25.0
    for lesion in lesions:
        suv[lesion] = 20.0
    mean, sd = liver_reference(_image(suv))
    assert abs(mean - 5.0) < 0.3 and sd < 1.0
    mask = sitk.GetArrayFromImage(threshold_mask(_image(suv))) > 0
    assert not mask[spleen].any()
    for lesion in lesions:
        assert mask[lesion].mean() > 0.95
    labels = sitk.GetArrayFromImage(segment(_image(suv), method="threshold"))
    assert labels.max() == 2


def test_equivocal_rois_are_small_and_not_above_liver():
    """Dropped: < 0.5 mL with SUVmax <= liver SUVmean (5). Kept: small but hot, large but faint; relabelled 1..N."""
    shape = (48, 48, 48)
    suv = np.ones(shape)
    small_faint, small_hot = _ball(shape, (10, 10, 10), 4), _ball(shape, (10, 36, 10), 4)  # 0.27 mL each
    large_faint = _ball(shape, (32, 24, 30), 9)  # 3.1 mL
    suv[small_faint], suv[small_hot], suv[large_faint] = 4.5, 12.0, 4.0
    labels = label_rois(_image(small_faint | small_hot | large_faint), _image(suv), split_touching=False)
    assert sitk.GetArrayViewFromImage(labels).max() == 3
    kept = sitk.GetArrayFromImage(drop_equivocal_rois(labels, _image(suv), liver_suv=5.0))
    assert kept.max() == 2 and not kept[small_faint].any()
    assert kept[small_hot].min() == 1 and kept[large_faint].min() == 2  # by descending SUVmax
    same = drop_equivocal_rois(labels, _image(suv), liver_suv=5.0, max_volume_ml=0.0)
    assert np.array_equal(sitk.GetArrayViewFromImage(same), sitk.GetArrayViewFromImage(labels))


def test_rois_lying_on_the_models_physiological_output_are_dropped():
    """A ROI with most of its voxels at or above the model's physiological threshold is dropped; a lesion
    beside the organ (a third of its voxels on it) and one far from it stay, relabelled by SUVmax."""
    from LesionResponseLib.segmentation.components import drop_physiological_rois

    shape = (40, 40, 40)
    adrenal, beside, far = _ball(shape, (10, 10, 10), 5), _ball(shape, (10, 10, 22), 5), _ball(shape, (30, 30, 30), 5)
    suv = np.ones(shape)
    suv[adrenal], suv[beside], suv[far] = 30.0, 20.0, 10.0
    labels = label_rois(_image(adrenal | beside | far), _image(suv), split_touching=False)
    organ = np.zeros(shape, np.float32)
    organ[adrenal] = 0.45  # under 0.5, at or above a calibrated 0.4
    edge = np.argwhere(beside)
    organ[tuple(edge[: len(edge) // 3].T)] = 0.9
    kept, dropped = drop_physiological_rois(labels, _image(suv), _image(organ), threshold=0.4)
    out = sitk.GetArrayFromImage(kept)
    assert dropped == 1 and out.max() == 2
    assert not out[adrenal].any() and (out[beside] == 1).all() and (out[far] == 2).all()
    same, none = drop_physiological_rois(labels, _image(suv), _image(organ), threshold=0.5)
    assert none == 0 and sitk.GetArrayFromImage(same).max() == 3  # at 0.5 the adrenal is no organ voxel


def test_rois_lying_mostly_in_a_region_are_dropped():
    """drop_rois_in: a ROI with at least the given share of its voxels in the region goes, the others stay,
    relabelled by descending SUVmax; an empty region changes nothing."""
    from LesionResponseLib.segmentation.components import drop_rois_in

    shape = (30, 30, 30)
    inside, half, outside = _ball(shape, (8, 8, 8), 4), _ball(shape, (8, 8, 20), 4), _ball(shape, (22, 22, 22), 4)
    suv = np.ones(shape)
    suv[inside], suv[half], suv[outside] = 30.0, 20.0, 10.0
    labels = label_rois(_image(inside | half | outside), _image(suv), split_touching=False)
    region = np.zeros(shape, bool)
    region[:, :, :20] = True  # all of ``inside``, less than half of ``half`` (its centre column is x = 20)
    kept, dropped = drop_rois_in(labels, _image(suv), region, share=0.5)
    out = sitk.GetArrayFromImage(kept)
    assert dropped == 1 and not out[inside].any() and (out[half] == 1).all() and (out[outside] == 2).all()
    same, none = drop_rois_in(labels, _image(suv), np.zeros(shape, bool), share=0.5)
    assert none == 0 and np.array_equal(sitk.GetArrayViewFromImage(same), sitk.GetArrayViewFromImage(labels))
