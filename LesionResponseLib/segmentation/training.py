"""Training of the lesion segmentation model on synthetic patients (seeds 1000-1999 are reserved for it)."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.segmentation.model import (
    ModelConfig,
    build_network,
    normalise,
    resample_to_spacing,
    save_model,
)
from LesionResponseLib.segmentation.synthetic import synthetic_scan

TRAIN_SEEDS = range(1000, 2000)  # never used by tests (1-99) or benchmarks (101-199)


def make_sample(seed: int, config: ModelConfig) -> dict[str, np.ndarray]:
    """One training scan on the model grid: SUV (1, z, y, x), lesion mask and sampling classes.

    Sampling classes: 0 background, 1 lesion, 2 physiological organ - so crops are drawn around hot organs
    (hard negatives) as often as around lesions.
    """
    scan = synthetic_scan(seed)
    pet = resample_to_spacing(scan.pet_suv, config.spacing_mm)
    lesions = resample_to_spacing(scan.lesions, config.spacing_mm, sitk.sitkNearestNeighbor)
    organs = resample_to_spacing(scan.organs, config.spacing_mm, sitk.sitkNearestNeighbor)
    label = (sitk.GetArrayFromImage(lesions) > 0).astype(np.float32)
    classes = np.where(label > 0, 1, np.where(sitk.GetArrayFromImage(organs) > 0, 2, 0)).astype(np.int64)
    return {"image": sitk.GetArrayFromImage(pet)[None].astype(np.float32), "label": label[None],
            "classes": classes[None]}


def _transforms(config: ModelConfig, samples_per_scan: int):
    from monai.transforms import (
        Compose,
        Lambdad,
        RandCropByLabelClassesd,
        RandGaussianNoised,
        RandScaleIntensityd,
        SpatialPadd,
    )

    return Compose([
        SpatialPadd(["image", "label", "classes"], config.patch_size),
        RandCropByLabelClassesd(["image", "label"], label_key="classes", spatial_size=config.patch_size,
                                ratios=[1, 2, 2], num_classes=3, num_samples=samples_per_scan),
        RandScaleIntensityd("image", factors=0.2, prob=0.8),  # SUV calibration / weight errors +-20 %
        Lambdad("image", lambda x: normalise(np.asarray(x), config)),
        RandGaussianNoised("image", prob=0.3, std=0.05),
    ])


def _dice(prob: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    pred = prob > threshold
    denom = pred.sum() + truth.sum()
    return float(2 * (pred & (truth > 0)).sum() / denom) if denom else 1.0


def train(out_path: str | Path, seeds: Sequence[int] = range(1000, 1032), steps: int = 2000,
          batch_scans: int = 1, samples_per_scan: int = 2, learning_rate: float = 2e-3,
          config: ModelConfig | None = None, val_seeds: Sequence[int] = (1990, 1991), eval_every: int = 100,
          max_minutes: float | None = None, log_path: str | Path | None = None, num_threads: int = 2,
          on_step: Callable[[int, dict], None] | None = None) -> Path:
    """Train a SegResNet on synthetic scans of ``seeds`` and write the model file ``out_path``.

    ``steps`` optimiser steps, each on ``batch_scans * samples_per_scan`` crops of ``config.patch_size``;
    Dice+CE loss, AdamW with cosine decay. Losses per step go to ``<out>.log.csv``; every ``eval_every``
    steps the Dice on crops of ``val_seeds`` is logged and a checkpoint saved. ``max_minutes`` stops early.
    """
    import torch
    from monai.losses import DiceCELoss

    torch.manual_seed(0)
    torch.set_num_threads(num_threads)
    config = config or ModelConfig()
    out_path = Path(out_path)
    log_path = Path(log_path) if log_path else out_path.with_suffix(".log.csv")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pool = [make_sample(s, config) for s in seeds]
    val = _validation_crops([make_sample(s, config) for s in val_seeds], config)
    transform = _transforms(config, samples_per_scan)
    network = build_network(config)
    optimiser = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, steps))
    loss_fn = DiceCELoss(sigmoid=True, squared_pred=True, batch=True)  # batch Dice: crops may hold no lesion
    rng = np.random.default_rng(0)
    start, history = time.time(), []
    config = replace(config, trained_on={"generator": "LesionResponseLib.segmentation.synthetic",
                                         "seeds": [int(min(seeds)), int(max(seeds))], "n_scans": len(pool)})
    with open(log_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["step", "loss", "lr", "val_dice", "elapsed_s"])
        writer.writeheader()
        for step in range(1, steps + 1):
            crops = [c for i in rng.integers(0, len(pool), batch_scans) for c in transform(dict(pool[i]))]
            images = torch.stack([torch.as_tensor(np.asarray(c["image"])) for c in crops]).float()
            labels = torch.stack([torch.as_tensor(np.asarray(c["label"])) for c in crops]).float()
            network.train()
            optimiser.zero_grad()
            loss = loss_fn(network(images), labels)
            loss.backward()
            optimiser.step()
            schedule.step()
            row = {"step": step, "loss": round(float(loss.detach()), 5), "lr": schedule.get_last_lr()[0], "val_dice": "",
                   "elapsed_s": round(time.time() - start, 1)}
            out_of_time = max_minutes is not None and time.time() - start > 60 * max_minutes
            if step % eval_every == 0 or step == steps or out_of_time:
                row["val_dice"] = round(_evaluate(network, val, config), 4)
                save_model(network, replace(config, trained_on={**config.trained_on, "steps": step}), out_path)
            writer.writerow(row)
            handle.flush()
            history.append(row)
            if on_step:
                on_step(step, row)
            if out_of_time:
                break
    out_path.with_suffix(".history.json").write_text(json.dumps(history[-50:], indent=1))
    calibrate_threshold(out_path, val_seeds)
    return out_path


def calibrate_threshold(model_path: str | Path, val_seeds: Sequence[int] = (1990, 1991),
                        candidates: Sequence[float] = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)) -> float:
    """Set the model file's probability threshold to the candidate with the best whole-scan Dice on
    ``val_seeds`` (training-reserved seeds, never benchmark seeds); returns it."""
    import torch

    from LesionResponseLib.segmentation.model import load_model

    model = load_model(model_path)
    scans = [synthetic_scan(seed) for seed in val_seeds]
    truths, probs = [], []
    for scan in scans:
        prob = model.probability(scan.pet_suv)
        truths.append(sitk.GetArrayFromImage(sitk.Resample(scan.lesions, prob, sitk.Transform(),
                                                           sitk.sitkNearestNeighbor, 0)) > 0)
        probs.append(sitk.GetArrayFromImage(prob))
    scores = {t: float(np.mean([_dice(p, y, t) for p, y in zip(probs, truths, strict=True)])) for t in candidates}
    best = max(scores, key=scores.get)
    payload = torch.load(model_path, map_location="cpu", weights_only=True)
    config = replace(ModelConfig.from_dict(payload["config"]), threshold=best)
    config.trained_on["threshold_dice"] = {str(k): round(v, 4) for k, v in scores.items()}
    model.network.load_state_dict(payload["state_dict"])
    save_model(model.network, config, model_path)
    return best


def _validation_crops(samples: list[dict], config: ModelConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed crops (normalised image, label) centred on the first lesion and on the hottest organ voxel."""
    crops = []
    half = np.array(config.patch_size) // 2
    for sample in samples:
        image, label, classes = sample["image"][0], sample["label"][0], sample["classes"][0]
        for target in (classes == 1, classes == 2):
            if not target.any():
                continue
            centre = np.argwhere(target)[len(np.argwhere(target)) // 2]
            lo = np.clip(centre - half, 0, np.maximum(np.array(image.shape) - 2 * half, 0))
            sl = tuple(slice(a, a + 2 * h) for a, h in zip(lo, half, strict=True))
            crops.append((normalise(image[sl], config), label[sl]))
    return crops


def _evaluate(network, crops, config: ModelConfig) -> float:
    """Mean Dice over the validation crops (empty-vs-empty counts as 1)."""
    import torch

    network.eval()
    scores = []
    with torch.inference_mode():
        for image, label in crops:
            prob = torch.sigmoid(network(torch.from_numpy(np.ascontiguousarray(image))[None, None]))[0, 0].numpy()
            scores.append(_dice(prob, label, config.threshold))
    return float(np.mean(scores)) if scores else float("nan")
