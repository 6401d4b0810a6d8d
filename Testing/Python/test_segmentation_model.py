"""The shipped model and the threshold baseline on a phantom slab, training, pluggable formats, input checks."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict

import numpy as np
import pytest
import SimpleITK as sitk

from LesionResponseLib.segmentation import (
    DEFAULT_MODEL_PATH,
    ModelConfig,
    SegmentationError,
    load_model,
    save_model,
    segment,
    train,
)
from LesionResponseLib.segmentation.metrics import evaluate, organ_voxels
from LesionResponseLib.segmentation.model import build_network
from LesionResponseLib.segmentation.training import harder_patient, phantom_scan, physiological_labels

TINY = ModelConfig(init_filters=8, patch_size=(32, 32, 32))  # GroupNorm needs >= 8 filters
HOT_ORGANS = ("spleen", "kidney", "adrenal", "pituitary", "bladder")


@pytest.fixture(scope="module")
def small_scan():
    """A 200 mm upper-abdomen slab (liver, spleen, kidneys, adrenals) of test seed 7, never trained on."""
    return phantom_scan(7, axial_extent_mm=200)


def _organ_names() -> dict[int, str]:
    from LesionResponseLib.phantom import ORGAN_LABELS

    return {v: k for k, v in ORGAN_LABELS.items() if v in physiological_labels()}


def test_shipped_model_finds_phantom_lesions(small_scan):
    model = load_model()
    assert model.path == DEFAULT_MODEL_PATH and model.config.spacing_mm == (4.0, 4.0, 4.0)
    assert DEFAULT_MODEL_PATH.stat().st_size < 20e6
    labels = segment(small_scan.pet_suv)
    assert labels.GetPixelID() == sitk.sitkUInt16 and labels.GetSize() == small_scan.pet_suv.GetSize()
    values = np.unique(sitk.GetArrayFromImage(labels))
    assert list(values) == list(range(len(values)))  # 0..N consecutive
    m = evaluate(labels, small_scan.lesions)
    assert m.n_true >= 8  # the slab holds enough lesions >= 0.5 mL for the ratio to mean something
    # 12 lesions >= 0.5 mL here, so one lesion is 8 %: v6 found 11, v9 finds 10 (a 0.5 mL liver lesion at
    # SUVmax 6.3 both miss, and one more); the sensitivity target is the benchmark's (158 lesions: both 0.924)
    assert m.n_detected / m.n_true >= 0.8
    assert m.false_positive_rois <= 2
    assert np.median(m.dice) >= 0.6
    spill = organ_voxels(labels, small_scan.lesions, small_scan.organs, _organ_names())
    assert sum(spill[o] for o in HOT_ORGANS) <= 30  # <= ~2 mL of hot organ labelled, away from lesions


def test_threshold_baseline_on_phantom(small_scan):
    labels = segment(small_scan.pet_suv, method="threshold")
    m = evaluate(labels, small_scan.lesions)
    assert m.n_detected / m.n_true >= 0.8
    assert np.median(m.dice) >= 0.6
    spill = organ_voxels(labels, small_scan.lesions, small_scan.organs, _organ_names())
    assert spill["spleen"] == 0  # > 100 mL components (spleen) are dropped by the baseline
    from LesionResponseLib.phantom import ORGAN_LABELS

    hot = np.isin(sitk.GetArrayFromImage(small_scan.organs), [ORGAN_LABELS[o] for o in HOT_ORGANS])
    hot_map = sitk.GetImageFromArray(hot.astype(np.uint8))
    hot_map.CopyInformation(small_scan.organs)
    with_organs = segment(small_scan.pet_suv, method="threshold", organs=hot_map)
    spill = organ_voxels(with_organs, small_scan.lesions, small_scan.organs, _organ_names())
    assert sum(spill[o] for o in HOT_ORGANS) == 0  # the organ map removes physiological uptake ...
    assert evaluate(with_organs, small_scan.lesions).n_detected == m.n_detected  # ... and no lesion


@pytest.mark.slow
def test_two_step_training_writes_loadable_model(tmp_path):
    out = train(tmp_path / "tiny.pt", seeds=[1000], steps=2, val_seeds=[1990], eval_every=1, config=TINY,
                axial_extent_mm=120, harder_share=1.0)
    rows = list(csv.DictReader(open(out.with_suffix(".log.csv"))))
    assert [int(r["step"]) for r in rows] == [1, 2] and all(np.isfinite(float(r["loss"])) for r in rows)
    assert rows[-1]["val_dice"] != ""
    model = load_model(out)
    assert model.config.patch_size == (32, 32, 32) and model.config.trained_on["steps"] == 2
    assert model.config.trained_on["generator"] == "LesionResponseLib.phantom.simulate_patient"
    assert model.config.trained_on["harder_share"] == 1.0
    assert model.config.threshold in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # calibrated on seed 1990
    assert "threshold_score" in model.config.trained_on
    image = _small_image()
    labels = segment(image, method=str(out))
    assert labels.GetSize() == image.GetSize() and labels.GetPixelID() == sitk.sitkUInt16


def _lesion_models(seed: int, **harder) -> list[tuple[float, float]]:
    """(volume mL, mean SUV) of the lesion models of ``seed`` (whole body, whatever the 40 mm slab rendered),
    split/merge lesions left out: their 22-32 mm size does not follow the options, by design."""
    from LesionResponseLib.phantom import simulate_patient

    lesions = simulate_patient(seed, timepoints=1, with_ct=False, axial_extent_mm=40, **harder).lesions
    return [(4 / 3 * np.pi * np.prod(x.radii) / 1000, x.suv) for x in lesions if x.kind not in ("split", "merge")]


def test_harder_training_patients_are_reproducible_and_harder():
    draws = [harder_patient(seed) for seed in range(1000, 1200)]
    assert draws[80] == harder_patient(1080)  # each seed's own stream: the same scans on every run
    assert 0.4 < np.mean([d["small_lesions"] for d in draws]) < 0.6
    assert 0.4 < np.mean([d["low_contrast"] for d in draws]) < 0.6
    assert all(0.0 <= d["near_organs"] <= 0.5 and 12 <= d["n_lesions"] <= 60 for d in draws)
    seed = next(s for s, d in zip(range(1000, 1200), draws, strict=True) if d["small_lesions"] and d["low_contrast"])
    (volume, suv), (volume_default, suv_default) = (np.array(_lesion_models(seed, **harder_patient(seed))).T,
                                                    np.array(_lesion_models(seed)).T)
    assert volume.size >= 10
    assert volume.max() <= 4 * 1.15**3 < volume_default.max()  # 0.1-4 mL spheres, radii +-15 %
    assert suv.max() <= 18 < suv_default.max()  # SUVmean 6-18 instead of 8-45


def _small_image() -> sitk.Image:
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray((rng.random((24, 30, 28)) * 3).astype(np.float32))
    image.SetSpacing((4.0, 4.0, 4.0))
    return image


def test_torchscript_and_bundle_give_the_same_probabilities(tmp_path):
    import torch

    network = build_network(TINY).eval()
    reference = load_model(save_model(network, TINY, tmp_path / "ref.pt"))
    traced = torch.jit.trace(network, torch.zeros(1, 1, 32, 32, 32))
    torch.jit.save(traced, str(tmp_path / "user.ts"))
    (tmp_path / "user.json").write_text(json.dumps(asdict(TINY)))
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "inference.json").write_text(json.dumps({"network_def": {
        "_target_": "monai.networks.nets.SegResNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 1,
        "init_filters": 8, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1]}}))
    (bundle / "configs" / "lesion_response.json").write_text(json.dumps(asdict(TINY)))
    torch.save(network.state_dict(), bundle / "models" / "model.pt")
    image = _small_image()
    expected = sitk.GetArrayFromImage(reference.probability(image))
    assert expected.std() > 0  # the random network does respond to the image
    for source in (tmp_path / "user.ts", bundle):
        model = load_model(source)
        assert model.config.patch_size == (32, 32, 32)
        np.testing.assert_allclose(sitk.GetArrayFromImage(model.probability(image)), expected, atol=1e-5)
        labels = segment(image, method=str(source))
        assert labels.GetSize() == image.GetSize()


def test_unusable_model_sources_raise_clear_errors(tmp_path):
    with pytest.raises(SegmentationError, match="not found"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "nnunet").mkdir()
    (tmp_path / "nnunet" / "plans.json").write_text("{}")
    with pytest.raises(SegmentationError, match="nnU-Net"):
        load_model(tmp_path / "nnunet")
    (tmp_path / "junk.pt").write_text("not a model")
    with pytest.raises(SegmentationError, match="TorchScript"):
        segment(_small_image(), method=str(tmp_path / "junk.pt"))


def test_wrong_modality_and_empty_inputs_raise_clear_errors():
    hu = np.full((20, 20, 20), -1000, np.int16)  # air
    hu[5:15, 5:15, 5:15] = 40  # soft tissue
    ct = sitk.GetImageFromArray(hu)
    with pytest.raises(SegmentationError, match=r"CT in HU\?.*not the CT"):
        segment(ct)
    bq_ml = sitk.GetImageFromArray(np.full((20, 20, 20), 2.5e4, np.float32))  # Bq/mL, not SUV
    with pytest.raises(SegmentationError, match="SUV factor"):
        segment(bq_ml, method="threshold")
    with pytest.raises(SegmentationError, match="empty or all zero"):
        segment(sitk.Image(20, 20, 20, sitk.sitkFloat32))
    with pytest.raises(SegmentationError, match="2 dimensions"):
        segment(sitk.Image(20, 20, sitk.sitkFloat32))


@pytest.mark.slow
def test_train_command_logs_and_writes_model(tmp_path, monkeypatch):
    from functools import partial

    from typer.testing import CliRunner

    from LesionResponseLib.cli import app
    from LesionResponseLib.segmentation import training

    # The command's plumbing is under test (train() itself: test_two_step_training_writes_loadable_model): validate
    # and calibrate on one phantom seed instead of train()'s default two, whose threshold sweeps on the untrained
    # model's noisy maps were 2/3 of the test's time
    monkeypatch.setattr(training, "train", partial(training.train, val_seeds=[1990]))
    out = tmp_path / "cli.pt"
    result = CliRunner().invoke(app, ["train", "--out", str(out), "--seeds", "1000", "--steps", "2", "--patch", "32",
                                      "--eval-every", "1", "--axial-extent-mm", "120"])
    assert result.exit_code == 0, result.output
    assert "validation Dice" in result.output and out.exists()
    assert len(list(csv.DictReader(open(out.with_suffix(".log.csv"))))) == 2
    bad = CliRunner().invoke(app, ["train", "--out", str(out), "--patch", "30"])
    assert bad.exit_code == 2 and "multiple of 8" in re.sub(r"[\s│]+", " ", bad.output)
