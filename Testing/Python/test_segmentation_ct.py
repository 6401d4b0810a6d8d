"""CT as a second input channel: the CT channel's values, warm start from a PET-only model, missing CT,
training a PET+CT model; and the analytic recovery coefficient the segmentation benchmark prints."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from LesionResponseLib.segmentation import (
    DEFAULT_MODEL_PATH,
    ModelConfig,
    SegmentationError,
    load_model,
    segment,
    train,
)
from LesionResponseLib.segmentation.metrics import sphere_recovery
from LesionResponseLib.segmentation.model import SegmentationModel, ct_channel, resample_to_spacing, uses_ct
from LesionResponseLib.segmentation.training import _initial_network

PET_CT = ModelConfig(channels=("pet_suv", "ct_hu"))


def _image(array: np.ndarray, spacing, origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def _pet_and_ct() -> tuple[sitk.Image, sitk.Image]:
    """A 4 mm PET with a hot sphere in warm tissue, and its 2 x 2 x 4 mm CT (soft tissue in fat, noisy)."""
    rng = np.random.default_rng(3)
    z, y, x = np.mgrid[:24, :32, :32]
    body = (y - 16) ** 2 + (x - 16) ** 2 < 13**2
    suv = np.where(body, 1.0, 0.0) + 12.0 * (((z - 12) ** 2 + (y - 16) ** 2 + (x - 16) ** 2) < 9)
    pet = _image((suv + 0.1 * rng.standard_normal(suv.shape)).clip(0).astype(np.float32), (4.0, 4.0, 4.0))
    hu = np.where(np.repeat(np.repeat(body, 2, 1), 2, 2), 40.0, -100.0) + rng.normal(0, 12, (24, 64, 64))
    return pet, _image(hu.astype(np.int16), (2.0, 2.0, 4.0), (-1.0, -1.0, 0.0))  # same voxel corners


def test_ct_channel_is_a_clipped_soft_tissue_window_on_the_model_grid():
    low, high = PET_CT.ct_window_hu
    scale = lambda hu: 2 * (np.clip(hu, low, high) - low) / (high - low) - 1  # noqa: E731
    hu = np.full((8, 40, 40), -100, np.int16)  # fat ...
    hu[:, 8:32, 8:32] = 1000  # ... around cortical bone (saturates at +1) ...
    hu[:, 16:24, 16:24] = 40  # ... around soft tissue
    hu[:, 0:8, 0:8] = np.indices((8, 8, 8)).sum(0) % 2 * 100  # 1 mm checkerboard 0 / 100 HU, averages to 50
    ct = _image(hu, (1.0, 1.0, 4.0))
    grid = _image(np.zeros((8, 12, 12), np.float32), (4.0, 4.0, 4.0), (-0.5 + 2.0, -0.5 + 2.0, 0.0))
    channel = ct_channel(ct, grid, PET_CT)
    assert channel.shape == (8, 12, 12)
    np.testing.assert_allclose(channel[4, 4:6, 4:6], scale(40), atol=1e-5)  # soft tissue: block centres
    np.testing.assert_allclose(channel[4, 2, 2], 1.0)  # bone clipped
    np.testing.assert_allclose(channel[4, 9, 1], scale(-100), atol=1e-5)  # fat
    np.testing.assert_allclose(channel[4, 0, 0], scale(50), atol=0.02)  # block-averaged, not point-sampled
    np.testing.assert_allclose(channel[4, 11, 11], -1.0)  # outside the CT's field of view: air
    np.testing.assert_array_equal(ct_channel(None, grid, PET_CT), 0.0)  # missing CT value


def test_warm_start_from_pet_only_model_keeps_its_output_and_uses_ct_after_a_weight_change():
    pet, ct = _pet_and_ct()
    pet_only = load_model(DEFAULT_MODEL_PATH)
    assert not uses_ct(pet_only.config)
    network = _initial_network(replace(pet_only.config, channels=PET_CT.channels), DEFAULT_MODEL_PATH)
    model = SegmentationModel(network.eval(), replace(pet_only.config, channels=PET_CT.channels))
    expected = sitk.GetArrayFromImage(pet_only.probability(pet))
    assert expected.max() > 0.5  # the hot sphere is found
    np.testing.assert_allclose(sitk.GetArrayFromImage(model.probability(pet, ct=ct)), expected, atol=1e-5)
    first = next(k for k, v in network.state_dict().items() if v.dim() == 5)
    network.state_dict()[first][:, 1] += 0.5  # the CT weights now matter ...
    changed = sitk.GetArrayFromImage(model.probability(pet, ct=ct))
    assert np.abs(changed - expected).max() > 1e-3  # ... so the CT does reach the network


def test_ct_model_without_ct_refuses_or_falls_back_as_configured():
    pet, ct = _pet_and_ct()
    network = _initial_network(replace(PET_CT, patch_size=(32, 32, 32)), None).eval()
    strict = SegmentationModel(network, replace(PET_CT, patch_size=(32, 32, 32)))
    with pytest.raises(SegmentationError, match="CT input channel but the time point has no CT"):
        strict.probability(pet)
    lenient = SegmentationModel(network, replace(strict.config, missing_ct="zeros"))
    blank = lenient.probability(pet)
    assert blank.GetSize() == resample_to_spacing(pet, PET_CT.spacing_mm).GetSize()
    assert not np.allclose(sitk.GetArrayFromImage(blank), sitk.GetArrayFromImage(lenient.probability(pet, ct=ct)))
    with pytest.raises(SegmentationError, match="2 dimensions"):
        strict.probability(pet, ct=sitk.Image(20, 20, sitk.sitkInt16))


@pytest.mark.slow
def test_pet_ct_training_warm_started_from_the_shipped_model(tmp_path):
    config = replace(PET_CT, patch_size=(32, 32, 32), outputs=load_model(DEFAULT_MODEL_PATH).config.outputs)
    out = train(tmp_path / "petct.pt", seeds=[1000], steps=2, val_seeds=[1990], eval_every=1, config=config,
                axial_extent_mm=120, init_from=DEFAULT_MODEL_PATH, ct_dropout=0.2, calibrate=False)
    model = load_model(out)
    assert model.config.channels == ("pet_suv", "ct_hu") and model.config.missing_ct == "zeros"
    assert model.config.trained_on["ct_dropout"] == 0.2 and model.config.trained_on["steps"] == 2
    pet, ct = _pet_and_ct()
    labels = segment(pet, ct, method=str(out))
    assert labels.GetSize() == pet.GetSize() and sitk.GetArrayViewFromImage(labels).max() >= 1  # the hot sphere


@pytest.mark.parametrize("volume_ml, fwhm_mm", [(0.1, 6.0), (0.5, 6.0), (2.0, 8.1)])
def test_sphere_recovery_matches_a_numerically_blurred_sphere(volume_ml, fwhm_mm):
    from scipy import ndimage

    step = 0.25  # mm
    radius = (3 * volume_ml * 1000 / (4 * np.pi)) ** (1 / 3)
    n = int(np.ceil((radius + 4 * fwhm_mm / 2.3548) / step))  # 4 sigma beyond the surface
    axis = (np.arange(2 * n + 1) - n) * step
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij", sparse=True)
    sphere = (x**2 + y**2 + z**2 <= radius**2).astype(np.float32)
    blurred = ndimage.gaussian_filter(sphere, fwhm_mm / 2.3548 / step, mode="constant")
    assert sphere_recovery(volume_ml, fwhm_mm) == pytest.approx(float(blurred[n, n, n]), abs=0.01)


def _lesion_only_copy(path):
    """The shipped model with its lesion output only (a PET-only, one-output model like v6), written to ``path``."""
    from LesionResponseLib.segmentation import save_model
    from LesionResponseLib.segmentation.training import OUTPUT_LAYER_KEYS

    shipped = load_model(DEFAULT_MODEL_PATH)
    config = replace(shipped.config, outputs=("lesion",))
    network = _initial_network(config, None)
    state = {k: (v[:1] if k in OUTPUT_LAYER_KEYS else v) for k, v in shipped.network.state_dict().items()}
    network.load_state_dict(state)
    save_model(network, config, path)
    return path


@pytest.mark.slow
def test_warm_start_with_an_added_physiological_output_keeps_the_lesion_output(tmp_path):
    """A model given the ``physiological`` output (v8) starts from the PET-only model's lesion output exactly,
    returns both maps from one inference, and short training on phantom organs writes a loadable two-output
    model whose physiological map the segmentation hands on (``SegmentationOutput.physiological``)."""
    from LesionResponseLib.segmentation import segment_with_evidence
    from LesionResponseLib.segmentation.training import (
        calibrate_physiological_threshold,
        calibrate_threshold,
        physiological_organ_index,
        physiological_target,
    )

    pet, _ct = _pet_and_ct()
    lesion_only = _lesion_only_copy(tmp_path / "lesion_only.pt")
    pet_only = load_model(lesion_only)
    config = replace(pet_only.config, outputs=("lesion", "physiological"))
    model = SegmentationModel(_initial_network(config, lesion_only).eval(), config)
    maps = model.probabilities(pet)
    assert set(maps) == {"lesion", "physiological"}
    np.testing.assert_allclose(sitk.GetArrayFromImage(maps["lesion"]),
                               sitk.GetArrayFromImage(pet_only.probability(pet)), atol=1e-5)
    with pytest.raises(SegmentationError, match="'lesion' first"):
        _initial_network(replace(config, outputs=("physiological",)), None)
    organs = np.array([[[5, 7, 4, 7]]])  # spleen, adrenal, liver, adrenal; the last voxel is a lesion
    np.testing.assert_array_equal(physiological_target(organs, np.array([[[0, 0, 0, 1]]])), [[[1, 1, 0, 0]]])
    index = physiological_organ_index(organs, np.array([[[0, 0, 0, 1]]]))
    np.testing.assert_array_equal(index, [[[1, 3, 0, 0]]])  # spleen 1st, adrenal 3rd of the output's organs
    out = train(tmp_path / "two_outputs.pt", seeds=[1000], steps=2, val_seeds=[1990], eval_every=1,
                config=replace(config, patch_size=(32, 32, 32)), axial_extent_mm=120,
                init_from=lesion_only, calibrate=False)
    # two steps leave the new organ output near 0.5 everywhere, so its ROI filter is off for the lesion check
    output = segment_with_evidence(pet, method=str(out), drop_physiological=False)
    assert load_model(out).config.outputs == ("lesion", "physiological")
    assert output.physiological is not None and output.physiological.GetSize() == pet.GetSize()
    assert sitk.GetArrayViewFromImage(output.labels).max() >= 1  # the hot sphere is still a lesion
    best = calibrate_physiological_threshold(out, val_seeds=[1990], axial_extent_mm=120)
    config = load_model(out).config
    scores = config.trained_on["physiological_threshold_scores"]
    fewest = min(s["true_lesions_on_it"] for s in scores.values())
    allowed = {float(t): s["mean_organ_dice"] for t, s in scores.items() if s["true_lesions_on_it"] == fewest}
    assert config.physiological_threshold == best and best in allowed  # never more lesions on it than needed
    assert allowed[best] == max(allowed.values())  # then the best mean organ Dice
    lesion = calibrate_threshold(out, val_seeds=[1990], axial_extent_mm=120, with_harder=True)
    trained_on = load_model(out).config.trained_on
    assert trained_on["threshold_calibration"] == "default and harder patients"
    assert trained_on["threshold_score"][str(lesion)] == max(trained_on["threshold_score"].values())
    with pytest.raises(SegmentationError, match="no physiological output"):
        calibrate_physiological_threshold(lesion_only, val_seeds=[1990], axial_extent_mm=120)


def test_organ_balance_weighs_each_physiological_organ_alike():
    """A 1000-voxel spleen and a 10-voxel adrenal in one batch: each gets half the positive voxels' weight (the
    adrenal's 50-per-voxel capped at MAX_ORGAN_VOXEL_WEIGHT); background weighs 1; one organ alone weighs 1."""
    import torch

    from LesionResponseLib.segmentation.training import MAX_ORGAN_VOXEL_WEIGHT, _organ_balance

    organ = torch.zeros(2000)
    organ[:1000], organ[1000:1010] = 1.0, 3.0
    weight = _organ_balance(organ)
    assert float(weight[:1000].sum()) == pytest.approx(1010 / 2)
    assert float(weight[1000:1010].max()) == MAX_ORGAN_VOXEL_WEIGHT  # 1010 / (2 x 10) = 50.5, capped
    assert bool((weight[1010:] == 1).all())
    assert bool((_organ_balance(organ.clamp(max=1)) == 1).all())
