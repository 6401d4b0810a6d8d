"""The shipped model, pluggable model formats and a two-step training run."""

from __future__ import annotations

import csv
import json
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
from LesionResponseLib.segmentation.metrics import evaluate
from LesionResponseLib.segmentation.model import build_network
from LesionResponseLib.segmentation.synthetic import ORGAN_LABELS, synthetic_scan

TINY = ModelConfig(init_filters=8, patch_size=(32, 32, 32))  # GroupNorm needs >= 8 filters


@pytest.fixture(scope="module")
def small_scan():
    """A held-out synthetic patient (test seeds 1-99 are never used in training)."""
    return synthetic_scan(7)


def test_shipped_model_finds_lesions(small_scan):
    model = load_model()
    assert model.path == DEFAULT_MODEL_PATH and model.config.spacing_mm == (4.0, 4.0, 4.0)
    assert DEFAULT_MODEL_PATH.stat().st_size < 20e6
    labels = segment(small_scan.pet_suv)
    assert labels.GetPixelID() == sitk.sitkUInt16 and labels.GetSize() == small_scan.pet_suv.GetSize()
    values = np.unique(sitk.GetArrayFromImage(labels))
    assert list(values) == list(range(len(values)))  # 0..N consecutive
    m = evaluate(labels, small_scan.lesions, small_scan.organs, {v: k for k, v in ORGAN_LABELS.items()})
    assert m.n_true >= 3
    assert m.n_detected / m.n_true >= 0.8
    assert m.false_positive_rois <= 2
    assert not set(m.fp_by_organ) & {"spleen", "kidney", "bladder", "liver", "pituitary", "adrenal"}
    assert np.median(m.dice) >= 0.6


def test_two_step_training_writes_loadable_model(tmp_path):
    out = train(tmp_path / "tiny.pt", seeds=[1000], steps=2, val_seeds=[1990], eval_every=1, config=TINY)
    rows = list(csv.DictReader(open(out.with_suffix(".log.csv"))))
    assert [int(r["step"]) for r in rows] == [1, 2] and all(np.isfinite(float(r["loss"])) for r in rows)
    assert rows[-1]["val_dice"] != ""
    model = load_model(out)
    assert model.config.patch_size == (32, 32, 32) and model.config.trained_on["steps"] == 2
    assert model.config.threshold in (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)  # calibrated on seed 1990
    assert "threshold_dice" in model.config.trained_on
    image = _small_image()
    labels = segment(image, method=str(out))
    assert labels.GetSize() == image.GetSize() and labels.GetPixelID() == sitk.sitkUInt16


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
    for source in (tmp_path / "user.ts", bundle):
        model = load_model(source)
        assert model.config.patch_size == (32, 32, 32)
        np.testing.assert_allclose(sitk.GetArrayFromImage(model.probability(image)), expected, atol=1e-5)


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


def test_train_command_logs_and_writes_model(tmp_path):
    from typer.testing import CliRunner

    from LesionResponseLib.cli import app

    out = tmp_path / "cli.pt"
    result = CliRunner().invoke(app, ["train", "--out", str(out), "--n-scans", "1", "--steps", "2",
                                      "--eval-every", "1"])
    assert result.exit_code == 0, result.output
    assert "validation Dice" in result.output and out.exists()
    assert len(list(csv.DictReader(open(out.with_suffix(".log.csv"))))) == 2
