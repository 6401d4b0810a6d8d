"""register_pair on a synthetic CT body with a known rigid + smooth motion; failure detection; transform files."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from LesionResponseLib.tracking.registration import (
    RegistrationError,
    load_transform,
    register_pair,
    save_transform,
    transform_filename,
)

PROBES = [(-60.0, -20.0, -40.0), (50.0, 10.0, 0.0), (0.0, -40.0, 50.0), (20.0, 30.0, -60.0), (-30.0, 20.0, 30.0)]


def phantom_ct(size=(64, 56, 48), spacing=4.0) -> sitk.Image:
    """Body (40 HU) with lungs (-800), spine (700), liver-like block (70) and bony spheres, in air."""
    nx, ny, nz = size
    z, y, x = np.meshgrid(*[(np.arange(n) - n / 2 + 0.5) * spacing for n in (nz, ny, nx)], indexing="ij")
    hu = np.full(x.shape, -1000.0, np.float32)
    hu[(x / 110) ** 2 + (y / 80) ** 2 <= 1] = 40.0
    hu[((x + 45) / 35) ** 2 + (y / 40) ** 2 + ((z - 40) / 45) ** 2 <= 1] = -800.0
    hu[((x - 45) / 35) ** 2 + (y / 40) ** 2 + ((z - 40) / 45) ** 2 <= 1] = -800.0
    hu[(x / 14) ** 2 + ((y + 55) / 14) ** 2 <= 1] = 700.0
    hu[((x - 40) / 40) ** 2 + ((y - 10) / 35) ** 2 + ((z + 40) / 35) ** 2 <= 1] = 70.0
    for cx, cy, cz in [(-70, 20, -60), (30, -30, 10), (-20, 40, -20), (80, -10, 60)]:
        hu[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= 12**2] = 400.0
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((spacing,) * 3)
    image.SetOrigin(tuple(-n * spacing / 2 + spacing / 2 for n in size))
    return image


def true_motion() -> sitk.Transform:
    """Fixed -> moving points: a 4 degree rotation and a (12, -8, 15) mm shift."""
    return sitk.Euler3DTransform((0.0, 0.0, 0.0), 0.02, -0.03, np.deg2rad(4.0), (12.0, -8.0, 15.0))


def moved(image: sitk.Image, motion: sitk.Transform) -> sitk.Image:
    """The scan of the same body after ``motion`` (fixed -> moving points)."""
    return sitk.Resample(image, image, motion.GetInverse(), sitk.sitkLinear, -1000.0)


def probe_error(transform: sitk.Transform, truth: sitk.Transform) -> float:
    return max(float(np.linalg.norm(np.subtract(transform.TransformPoint(p), truth.TransformPoint(p))))
               for p in PROBES)


@pytest.mark.parametrize("method", ["sitk-rigid", "sitk-bspline"])
def test_recovers_known_motion_and_reports_quality(method: str) -> None:
    fixed = phantom_ct()
    transform, result = register_pair(fixed, moved(fixed, true_motion()), method=method, fixed_timepoint=0,
                                      moving_timepoint=2)
    assert result.ok, result.message
    assert (result.fixed_timepoint, result.moving_timepoint, result.method) == (0, 2, method)
    assert probe_error(transform, true_motion()) < 2.0  # half a voxel of the 4 mm grid
    assert result.quality["ncc_after"] > 0.9 > result.quality["ncc_before"]
    assert result.quality["body_dice_after"] > 0.9  # the shifted body leaves 15 mm air slabs at the ends
    if method == "sitk-bspline":
        assert result.quality["fold_fraction"] == 0.0


def test_unrelated_scan_is_flagged_not_silently_used() -> None:
    fixed = phantom_ct()
    rng = np.random.default_rng(0)
    other = sitk.GetImageFromArray(rng.uniform(-1000, 1000, (48, 56, 64)).astype(np.float32))
    other.CopyInformation(fixed)
    _, result = register_pair(fixed, other, method="sitk-rigid")
    assert not result.ok
    assert "Dice" in result.message or "NCC" in result.message


def test_empty_scan_is_reported_not_raised() -> None:
    fixed = phantom_ct()
    air = sitk.Image(fixed.GetSize(), sitk.sitkFloat32) - 1000.0
    air.CopyInformation(fixed)
    transform, result = register_pair(fixed, air, method="sitk-bspline")
    assert not result.ok and result.message
    assert transform.TransformPoint((1.0, 2.0, 3.0)) == (1.0, 2.0, 3.0)


def test_unknown_method_is_an_error() -> None:
    with pytest.raises(RegistrationError, match="sitk-bspline"):
        register_pair(phantom_ct(), phantom_ct(), method="magic")


@pytest.mark.parametrize("kind", ["composite", "field"])
def test_transform_files_round_trip(tmp_path, kind: str) -> None:
    grid = phantom_ct(size=(16, 16, 16), spacing=16.0)
    if kind == "composite":
        bspline = sitk.BSplineTransformInitializer(grid, [3, 3, 3], 3)
        bspline.SetParameters(tuple(np.random.default_rng(1).normal(0, 2, len(bspline.GetParameters()))))
        transform = sitk.CompositeTransform([true_motion(), bspline])
        path = tmp_path / "tp0_to_tp1.tfm"
    else:
        field = sitk.TransformToDisplacementField(true_motion(), sitk.sitkVectorFloat64, grid.GetSize(),
                                                  grid.GetOrigin(), grid.GetSpacing(), grid.GetDirection())
        transform = sitk.DisplacementFieldTransform(field)
        path = tmp_path / "tp0_to_tp1.h5"
    assert transform_filename(0, 1, transform) == f"transforms/tp0_to_tp1{path.suffix}"
    loaded = load_transform(save_transform(transform, path))
    assert probe_error(loaded, transform) < 1e-6
    with pytest.raises(RegistrationError, match="not found"):
        load_transform(tmp_path / "missing.tfm")
