"""The cranial cavity from CT (segmentation.anatomy): on synthetic rings with known truth and on the phantom's CT.

Synthetic CT (2 mm pixels, 4 mm slices, air −1000 HU): a skull (an ellipsoidal 6 mm bone shell, 1000 HU, around
brain at 35 HU with a 40 HU pituitary), a vertebra (a bony ring around a 15 mm spinal canal), and a "pelvis"
(a closed bony ring around fat and bowel). Only the skull's inside is cranial.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.segmentation.anatomy import cranial_cavity

SPACING = (2.0, 2.0, 4.0)  # x, y, z mm
SHAPE = (100, 120, 120)  # z, y, x


def _ellipsoid(zz, yy, xx, centre, axes) -> np.ndarray:
    return sum(((c - m) / a) ** 2 for c, m, a in zip((zz, yy, xx), centre, axes, strict=True)) <= 1.0


def _synthetic_ct(with_head: bool = True) -> tuple[sitk.Image, dict[str, np.ndarray]]:
    zz, yy, xx = np.indices(SHAPE).astype(float)
    zz, yy, xx = zz * SPACING[2], yy * SPACING[1], xx * SPACING[0]  # mm
    ct = np.full(SHAPE, -1000.0, np.float32)
    parts: dict[str, np.ndarray] = {}
    # body below the head: fat with a closed bony "pelvic" ring around fat + bowel, and a vertebra
    body = _ellipsoid(zz, yy, xx, (100, 120, 120), (60, 90, 110))
    ct[body] = -100.0
    ring = _ellipsoid(zz, yy, xx, (100, 120, 120), (40, 60, 80)) & ~_ellipsoid(zz, yy, xx, (100, 120, 120),
                                                                               (40, 54, 74))
    ct[ring] = 800.0
    parts["pelvis"] = _ellipsoid(zz, yy, xx, (100, 120, 120), (36, 50, 70))
    ct[parts["pelvis"] & (xx < 155)] = 20.0  # bowel and bladder (~75 %) beside pelvic fat: brain-like HU but fat
    vertebra = (np.hypot(yy - 180, xx - 120) <= 14) & (np.abs(zz - 100) <= 40)
    parts["canal"] = (np.hypot(yy - 180, xx - 120) <= 7.5) & (np.abs(zz - 100) <= 40)
    ct[vertebra] = 600.0
    ct[parts["canal"]] = 15.0
    if with_head:
        skull = _ellipsoid(zz, yy, xx, (300, 120, 120), (90, 80, 70))
        parts["brain"] = _ellipsoid(zz, yy, xx, (300, 120, 120), (84, 74, 64))
        ct[skull] = 1000.0
        ct[parts["brain"]] = 35.0
        parts["pituitary"] = _ellipsoid(zz, yy, xx, (250, 130, 120), (4, 5, 5))
        ct[parts["pituitary"]] = 40.0
    image = sitk.GetImageFromArray(ct)
    image.SetSpacing(SPACING)
    return image, parts


def test_the_skull_inside_is_cranial_the_canal_and_a_bony_ring_around_the_pelvis_are_not() -> None:
    ct, parts = _synthetic_ct()
    cavity = cranial_cavity(ct)
    assert cavity[parts["pituitary"]].all()
    assert cavity[parts["brain"]].mean() > 0.9  # the vault's top and bottom caps are not closed rings
    assert not cavity[parts["pelvis"]].any() and not cavity[parts["canal"]].any()
    assert not (cavity & ~parts["brain"]).sum() > 0.02 * cavity.sum()


def test_no_head_in_the_field_of_view_no_cavity_and_the_pet_grid_is_honoured() -> None:
    ct, _ = _synthetic_ct(with_head=False)
    assert not cranial_cavity(ct).any()
    ct, parts = _synthetic_ct()
    pet = sitk.Image([60, 60, 100], sitk.sitkFloat32)
    pet.SetSpacing((4.0, 4.0, 4.0))
    cavity = cranial_cavity(ct, pet)
    assert cavity.shape == (100, 60, 60)
    centre = pet.TransformPhysicalPointToIndex((120.0, 130.0, 250.0))  # the pituitary (x, y, z mm)
    assert cavity[centre[2], centre[1], centre[0]]


def test_the_phantoms_pituitary_is_in_the_cavity_and_no_lesion_or_body_organ_is(make_phantom) -> None:
    from LesionResponseLib.dicomio import find_timepoints, load_timepoint
    from LesionResponseLib.phantom import ORGAN_LABELS

    phantom = make_phantom(seed=1, timepoints=3)
    info = find_timepoints(phantom / "dicom").timepoints[0]
    loaded = load_timepoint(info)
    cavity = cranial_cavity(loaded.ct, loaded.pet_suv)
    organs = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom / "truth" / "tp0_organs.nii.gz")))
    lesions = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom / "truth" / "tp0_lesions.nii.gz")))
    assert cavity[organs == ORGAN_LABELS["pituitary"]].all()
    inside = set(np.unique(organs[cavity]).tolist())
    assert inside <= {ORGAN_LABELS["brain"], ORGAN_LABELS["pituitary"], ORGAN_LABELS["bone"]}, inside
    assert not (cavity & (lesions > 0)).any()


def test_a_models_roi_in_the_cranial_cavity_is_dropped_and_one_in_the_body_kept(tmp_path) -> None:
    """segment(): a model ROI lying in the cranial cavity of the time point's CT (the pituitary's place) is not a
    lesion-ROI by default; one in the body is; --keep-intracranial (drop_intracranial=False) keeps both. The
    "model" is a TorchScript file thresholding log1p(SUV) at 2 (SUV 6.4), so its ROIs are the hot spots."""
    import json
    from dataclasses import asdict

    import torch

    from LesionResponseLib.segmentation import ModelConfig, segment

    class HotSpots(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 20.0 * (x - 2.0)

    torch.jit.save(torch.jit.trace(HotSpots(), torch.zeros(1, 1, 32, 32, 32)), str(tmp_path / "hot.ts"))
    (tmp_path / "hot.json").write_text(json.dumps(asdict(ModelConfig(init_filters=8, patch_size=(32, 32, 32)))))
    ct, _ = _synthetic_ct()
    suv = np.full((100, 60, 60), 0.5, np.float32)
    for x, y, z in ((120.0, 130.0, 250.0), (120.0, 60.0, 100.0)):  # the pituitary; fat in the body
        suv[int(z / 4) - 1:int(z / 4) + 2, int(y / 4) - 1:int(y / 4) + 2, int(x / 4) - 1:int(x / 4) + 2] = 50.0
    pet = sitk.GetImageFromArray(suv)
    pet.SetSpacing((4.0, 4.0, 4.0))

    def roi_at(labels: sitk.Image, x: float, y: float, z: float) -> int:
        return int(sitk.GetArrayViewFromImage(labels)[int(z / 4), int(y / 4), int(x / 4)])

    dropped = segment(pet, ct, method=str(tmp_path / "hot.ts"))
    assert int(sitk.GetArrayViewFromImage(dropped).max()) == 1
    assert roi_at(dropped, 120.0, 60.0, 100.0) == 1 and roi_at(dropped, 120.0, 130.0, 250.0) == 0
    kept = segment(pet, ct, method=str(tmp_path / "hot.ts"), drop_intracranial=False)
    assert int(sitk.GetArrayViewFromImage(kept).max()) == 2 and roi_at(kept, 120.0, 130.0, 250.0) > 0
    without_ct = segment(pet, None, method=str(tmp_path / "hot.ts"))
    assert int(sitk.GetArrayViewFromImage(without_ct).max()) == 2  # no CT, no cavity: nothing dropped
