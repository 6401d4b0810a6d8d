"""Training of the lesion segmentation model on the project phantom (seeds 1000-1999 are reserved for it).

Seed ranges: 1-99 tests and demos, 100-199 benchmark, 1000-1999 training and threshold calibration.
Each training scan is one ``LesionResponseLib.phantom.simulate_patient`` time point (whole body; with its CT
when the model has a ``ct_hu`` channel) with its own noise level (``noise_range``) and patient motion; vendors
differ only in DICOM storage, which the loader turns into the same SUV image, so the in-memory SUV covers them.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.errors import describe
from LesionResponseLib.segmentation.model import (
    PHYSIOLOGICAL_OUTPUT_ORGANS,
    ModelConfig,
    SegmentationError,
    build_network,
    ct_channel,
    normalise,
    resample_to_spacing,
    save_model,
    uses_ct,
)

TRAIN_SEEDS = range(1000, 2000)  # never used by tests (1-99) or benchmarks (100-199)
CROP_KEYS = ("image", "ct", "label", "hard", "organ", "classes_cls_indices")  # only these reach the cropper (it
# deep-copies extras); "ct" only in samples of CT-channel models, "organ" in those of models with a physiological output


@dataclass
class PhantomScan:
    """One phantom time point: SUV PET, true lesion labels and organ labels on the PET grid; CT (HU) if asked."""

    pet_suv: sitk.Image
    lesions: sitk.Image
    organs: sitk.Image
    ct: sitk.Image | None = None


def phantom_scan(seed: int, noise_scale: float = 1.0, axial_extent_mm: float | None = None,
                 with_ct: bool = False, harder: dict | None = None) -> PhantomScan:
    """The baseline scan of phantom patient ``seed`` (``axial_extent_mm`` for a short slab; CT if ``with_ct``;
    ``harder``: ``simulate_patient`` keyword arguments of a harder patient, see ``harder_patient``)."""
    from LesionResponseLib.phantom import simulate_patient

    tp = simulate_patient(seed, timepoints=1, with_ct=with_ct, noise_scale=noise_scale,
                          axial_extent_mm=axial_extent_mm, **(harder or {})).timepoints[0]
    return PhantomScan(tp.pet_suv, tp.lesion_labels, tp.organ_labels, tp.ct)


HARDER_MAX_NEAR_ORGANS = 0.5  # at most half the lesions 2-6 mm from a spleen, kidney or adrenal
HARDER_MAX_LESIONS = 60  # a high-burden patient (the paper's patients carry tens to hundreds of lesions)


def harder_patient(seed: int) -> dict:
    """``simulate_patient`` options of a harder training patient, drawn from ``seed`` (its own stream, so the
    scan's noise draw is unchanged): small lesions (0.1-4 mL) and low contrast (1.2-4x liver) each with
    probability 1/2, a share of lesions next to hot organs uniform in [0, 0.5], and 12-60 lesions.

    Why: the phantom's default lesions (5-40 mm across by site, SUVmean 8-45) stand for an untreated baseline,
    where most lesions are well above the liver. After therapy lesions shrink and cool, and the longitudinal
    analysis must find them at follow-up; a model that rarely saw a 0.3 mL lesion at twice the liver uptake,
    or one touching a kidney, misses them.
    """
    rng = np.random.default_rng([seed, 17])
    return {"small_lesions": bool(rng.random() < 0.5), "low_contrast": bool(rng.random() < 0.5),
            "near_organs": round(float(rng.uniform(0.0, HARDER_MAX_NEAR_ORGANS)), 2),
            "n_lesions": int(rng.integers(12, HARDER_MAX_LESIONS + 1))}


HARD_NEGATIVE_EXTRA = ("thyroid",)  # physiological DOTATATE uptake outside DOMAIN §5's list (thyroid SUV 2-4)
LESION_CROP_WEIGHT = 2.0  # crop-centre weights: background 1, lesion 2, all hard-negative organs together 3
ORGAN_CROP_WEIGHT = 3.0


def physiological_labels() -> list[int]:
    """Organ-label values of the hard negatives: the physiological-uptake organs and the thyroid."""
    from LesionResponseLib.phantom import ORGAN_LABELS, PHYSIOLOGICAL_ORGANS

    return [ORGAN_LABELS[name] for name in (*PHYSIOLOGICAL_ORGANS, *HARD_NEGATIVE_EXTRA) if name in ORGAN_LABELS]


def crop_ratios() -> list[float]:
    """Crop-centre weights per sampling class: background, lesion, then one class per hard-negative organ.

    The organ weight is shared equally between organs, so a 1 mL pituitary or adrenal is drawn as often as
    the liver; sampling organ voxels uniformly (v1, v2) put almost every organ crop in liver, bowel or bladder.
    """
    organs = physiological_labels()
    return [1.0, LESION_CROP_WEIGHT] + [ORGAN_CROP_WEIGHT / len(organs)] * len(organs)


def make_sample(scan: PhantomScan, config: ModelConfig, max_per_class: int = 20000) -> dict[str, np.ndarray]:
    """One training scan on the model grid: SUV (1, z, y, x), lesion mask and sampling classes, and for
    CT-channel models the normalised CT channel ``ct`` (1, z, y, x; end padding is air, -1).

    Sampling classes: 0 background, 1 lesion, 2 + j the j-th hard-negative organ of ``physiological_labels``
    (spleen, kidneys, adrenals, pituitary, liver, uncinate, bowel, bladder, thyroid) - so crops are drawn
    around each hot organ too. Arrays are end-padded to at least ``config.patch_size``; class indices are
    precomputed (see ``_with_class_indices``).
    """
    pet = resample_to_spacing(scan.pet_suv, config.spacing_mm)
    lesions = resample_to_spacing(scan.lesions, config.spacing_mm, sitk.sitkNearestNeighbor)
    organs = resample_to_spacing(scan.organs, config.spacing_mm, sitk.sitkNearestNeighbor)
    label = (sitk.GetArrayFromImage(lesions) > 0).astype(np.float32)
    organ_map = sitk.GetArrayFromImage(organs)
    classes = np.zeros(label.shape, np.int64)
    for j, organ in enumerate(physiological_labels()):
        classes[organ_map == organ] = 2 + j
    classes[label > 0] = 1
    organ = physiological_organ_index(organ_map, label) if "physiological" in config.outputs else None
    if uses_ct(config) and scan.ct is None:
        raise SegmentationError("a CT-channel model needs training scans with CT (phantom_scan(with_ct=True))")
    return assemble_sample(pet, label, classes, organ, scan.ct, config, len(crop_ratios()), max_per_class)


def assemble_sample(pet: sitk.Image, label: np.ndarray, classes: np.ndarray, organ: np.ndarray | None,
                    ct: sitk.Image | None, config: ModelConfig, n_classes: int,
                    max_per_class: int = 20000) -> dict[str, np.ndarray]:
    """A training sample from arrays on the model grid of ``pet`` (the SUV resampled to ``config.spacing_mm``):
    ``label`` (lesion 0/1), ``classes`` (sampling class per voxel: 0 background, 1 lesion, >= 2 hard negatives),
    ``organ`` (the physiological output's target, or None) and the CT (HU, any grid; used by CT-channel models).
    Arrays are end-padded to at least ``config.patch_size``; class indices are precomputed."""
    pad = [(0, max(0, p - n)) for p, n in zip(config.patch_size, label.shape, strict=True)]  # crops fit
    sample = {"image": np.pad(sitk.GetArrayFromImage(pet), pad)[None].astype(np.float32),
              "label": np.pad(label.astype(np.float32), pad)[None], "classes": np.pad(classes, pad)[None]}
    sample["hard"] = (sample["classes"] >= 2).astype(np.uint8)  # hard-negative voxels (loss weight)
    if organ is not None:
        sample["organ"] = np.pad(organ.astype(np.float32), pad)[None]
    if uses_ct(config):
        sample["ct"] = np.pad(ct_channel(ct, pet, config), pad, constant_values=-1.0)[None]
    return _with_class_indices(sample, max_per_class, n_classes)


def physiological_target(organ_map: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """Target of the ``physiological`` output (float32 0/1): voxels of ``PHYSIOLOGICAL_OUTPUT_ORGANS`` in the
    organ-label map that are not lesion (a lesion inside the spleen is lesion, not spleen)."""
    return (physiological_organ_index(organ_map, lesion) > 0).astype(np.float32)


def physiological_organ_index(organ_map: np.ndarray, lesion: np.ndarray) -> np.ndarray:
    """The ``physiological`` target with each organ told apart (float32): 1 + the organ's position in
    ``PHYSIOLOGICAL_OUTPUT_ORGANS`` on its voxels that are not lesion, 0 elsewhere; the loss reads the target as
    ``> 0`` and, with organ balance, weighs each organ alike (see ``_loss_function``)."""
    from LesionResponseLib.phantom import ORGAN_LABELS

    index = np.zeros(organ_map.shape, np.float32)
    for position, name in enumerate(PHYSIOLOGICAL_OUTPUT_ORGANS):
        if name in ORGAN_LABELS:
            index[organ_map == ORGAN_LABELS[name]] = position + 1
    index[lesion > 0] = 0
    return index


def _with_class_indices(sample: dict[str, np.ndarray], max_per_class: int, n_classes: int,
                        ) -> dict[str, np.ndarray]:
    """Add ``classes_cls_indices``: voxel indices per sampling class, computed once per scan instead of at
    every crop (a whole-body scan has ~4 M voxels); ``max_per_class`` random indices are kept per class."""
    from monai.transforms import ClassesToIndicesd

    return dict(ClassesToIndicesd("classes", num_classes=n_classes, max_samples_per_class=max_per_class)(sample))


def training_pool(seeds: Sequence[int], config: ModelConfig, *, noise_range: tuple[float, float] = (0.6, 1.6),
                  axial_extent_mm: float | None = None, on_scan: Callable[[int], None] | None = None,
                  harder_share: float = 0.0) -> list[dict[str, np.ndarray]]:
    """Samples of ``seeds``, each with a noise scale drawn uniformly from ``noise_range`` (1 = clinical).

    ``harder_share``: the share of seeds simulated as harder patients (``harder_patient``); which seeds is
    drawn from each seed's own stream, so the same seeds always give the same scans.
    """
    rng = np.random.default_rng(list(seeds)[:1] or [0])
    pool = []
    for seed in seeds:
        harder = harder_patient(seed) if np.random.default_rng([seed, 18]).random() < harder_share else None
        scan = phantom_scan(seed, float(rng.uniform(*noise_range)), axial_extent_mm, with_ct=uses_ct(config),
                            harder=harder)
        pool.append(make_sample(scan, config))
        if on_scan:
            on_scan(seed)
    return pool


def _transforms(config: ModelConfig, samples_per_scan: int, ct_dropout: float = 0.0,
                ratios: Sequence[float] | None = None):
    """Random crops and augmentation; the network input ends up in ``image`` (PET channel, then CT if any).

    ``ct_dropout``: probability that a crop's CT channel is replaced by the missing-CT value 0, so the model
    also learns to segment from the PET alone (modality dropout; the fallback for a time point without CT).
    ``ratios``: crop-centre weight per sampling class (default :func:`crop_ratios`, the phantom's classes).
    """
    from monai.transforms import (
        Compose,
        ConcatItemsd,
        Lambdad,
        RandCropByLabelClassesd,
        RandGaussianNoised,
        RandLambdad,
        RandScaleIntensityd,
    )

    with_ct = uses_ct(config)
    ratios = list(ratios or crop_ratios())
    keys = ["image", *(["ct"] if with_ct else []), "label", "hard",
            *(["organ"] if "physiological" in config.outputs else [])]
    steps = [
        RandCropByLabelClassesd(keys, label_key="classes", spatial_size=config.patch_size,
                                ratios=ratios, num_classes=len(ratios),
                                num_samples=samples_per_scan, warn=False,
                                indices_key="classes_cls_indices", image_key="image"),
        RandScaleIntensityd("image", factors=0.2, prob=0.8),  # SUV calibration / weight errors +-20 %
        Lambdad("image", lambda x: normalise(np.asarray(x), config)),
        RandGaussianNoised("image", prob=0.3, std=0.05),
    ]
    if with_ct:
        steps += [RandLambdad("ct", lambda x: x * 0, prob=ct_dropout),
                  ConcatItemsd(["image", "ct"], "image")]
    return Compose(steps)


def _dice(prob: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    pred = prob > threshold
    denom = pred.sum() + truth.sum()
    return float(2 * (pred & (truth > 0)).sum() / denom) if denom else 1.0


def train(out_path: str | Path, *, seeds: Sequence[int] = range(1000, 1024), steps: int = 1600,
          batch_scans: int = 1, samples_per_scan: int = 2, learning_rate: float = 1e-3,
          config: ModelConfig | None = None, val_seeds: Sequence[int] = (1990, 1991), eval_every: int = 100,
          max_minutes: float | None = None, log_path: str | Path | None = None, num_threads: int = 2,
          init_from: str | Path | None = None, noise_range: tuple[float, float] = (0.6, 1.6),
          axial_extent_mm: float | None = None, calibrate: bool = True, organ_loss_weight: float = 1.0,
          ct_dropout: float = 0.0, on_step: Callable[[int, dict], None] | None = None,
          on_scan: Callable[[int], None] | None = None, harder_share: float = 0.0,
          balance_organs: bool = False) -> Path:
    """Train a SegResNet on phantom scans of ``seeds`` and write the model file ``out_path``.

    ``steps`` optimiser steps, each on ``batch_scans * samples_per_scan`` crops of ``config.patch_size``
    (64^3 voxels of 4 mm = 256 mm, a whole spleen or kidney in view), drawn 1:2:3 from background, lesion and
    hard-negative organ voxels (the organ share split equally between organs, see ``crop_ratios``). Dice+CE loss (batch Dice: a crop may hold no lesion), AdamW with cosine decay
    from ``learning_rate``. ``init_from``: warm start from a model file with the same architecture.
    Losses per step go to ``log_path`` (default ``<out>.log.csv``); every ``eval_every`` steps the Dice on
    fixed crops of ``val_seeds`` is logged and a checkpoint saved. ``max_minutes`` stops early (checkpointed).
    ``calibrate``: afterwards pick the probability threshold on ``val_seeds`` (see ``calibrate_threshold``).
    ``organ_loss_weight``: weight of hard-negative organ voxels in the cross-entropy term (1 = plain Dice+CE).
    CT-channel models (``config.channels`` with ``ct_hu``) train on the phantom's CT too; ``ct_dropout`` > 0
    blanks the CT of that share of crops and marks the model ``missing_ct="zeros"`` (runs without CT).
    ``init_from`` may have fewer input channels: the added channels' first-layer weights start at zero, so
    training starts from that model's behaviour; or fewer outputs (``config.outputs`` adds ``physiological``):
    the added output channel starts from the fresh initialisation, trained with Dice + CE on the organs of
    ``PHYSIOLOGICAL_OUTPUT_ORGANS`` (weight 1, beside the lesion loss). ``harder_share``: share of training scans from harder
    patients (small, faint, high-burden lesions, lesions next to hot organs; ``harder_patient``).
    ``balance_organs``: each physiological organ weighs alike in that output's cross-entropy (``_loss_function``).
    """
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(num_threads)
    config = config or ModelConfig()
    if uses_ct(config):
        config = replace(config, missing_ct="zeros" if ct_dropout > 0 else "error")
    out_path = Path(out_path)
    log_path = Path(log_path) if log_path else out_path.with_suffix(".log.csv")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pool = training_pool(seeds, config, noise_range=noise_range, axial_extent_mm=axial_extent_mm,
                         on_scan=on_scan, harder_share=harder_share)
    val = _validation_crops(training_pool(val_seeds, config, noise_range=(1.0, 1.0),
                                          axial_extent_mm=axial_extent_mm), config)
    network = _initial_network(config, init_from)
    optimiser = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, steps))
    loss_fn = _loss_function(organ_loss_weight, balance_organs)
    transform = _transforms(config, samples_per_scan, ct_dropout)
    rng = np.random.default_rng(0)
    step_fn = _step_function(network, optimiser, schedule, loss_fn=loss_fn, transform=transform, pool=pool,
                             batch_scans=batch_scans, rng=rng)
    config = replace(config, trained_on={
        "generator": "LesionResponseLib.phantom.simulate_patient", "seeds": [int(min(seeds)), int(max(seeds))],
        "n_scans": len(pool), "noise_range": list(noise_range), "init_from": str(init_from or ""),
        "learning_rate": learning_rate, "crops_per_step": batch_scans * samples_per_scan,
        "crop_ratios": crop_ratios(), "organ_loss_weight": organ_loss_weight,
        **({"harder_share": harder_share} if harder_share else {}),
        **({"balance_organs": True} if balance_organs else {}),
        **({"ct_dropout": ct_dropout} if uses_ct(config) else {})})
    run_steps(Trainer(network, optimiser, schedule, step_fn, rng, transform), steps=steps, config=config,
              out_path=out_path, log_path=log_path, val=val, eval_every=eval_every, max_minutes=max_minutes,
              on_step=on_step)
    if calibrate:
        calibrate_threshold(out_path, val_seeds, axial_extent_mm=axial_extent_mm)
        if "physiological" in config.outputs:
            calibrate_physiological_threshold(out_path, val_seeds, axial_extent_mm=axial_extent_mm)
    return out_path


@dataclass
class Trainer:
    """What one optimiser step needs and what a checkpoint keeps: the network, optimiser and schedule, the step
    closure (:func:`_step_function`), its random stream of scans and its transforms (random crops)."""

    network: Any
    optimiser: Any
    schedule: Any
    step: Callable[[], float]
    rng: np.random.Generator
    transform: Any


@dataclass
class Checkpointing:
    """A resumable run: every ``every`` steps the whole training state goes to ``path`` (network, optimiser,
    schedule, the random streams, the step, wall and CPU seconds so far); ``resume`` continues from it. ``identity``
    says what the run trains on (data, settings); a checkpoint of another run is refused."""

    path: Path
    every: int = 10
    resume: bool = False
    identity: dict[str, Any] = field(default_factory=dict)


LOG_COLUMNS = ("step", "loss", "lr", "val_dice", "elapsed_s")


def run_steps(trainer: Trainer, *, steps: int, config: ModelConfig, out_path: Path, log_path: Path, val: list,
              eval_every: int, max_minutes: float | None = None, on_step: Callable[[int, dict], None] | None = None,
              checkpoint: Checkpointing | None = None) -> dict[str, float]:
    """Run the optimiser steps up to ``steps``: one CSV row per step in ``log_path`` (:data:`LOG_COLUMNS`);
    every ``eval_every`` steps (and at the end) the validation Dice of ``val`` crops is logged and the model saved
    to ``out_path`` with ``trained_on["steps"]``. ``max_minutes`` stops early (saved). With ``checkpoint`` the run
    is resumable (:class:`Checkpointing`): a resumed run continues from the checkpoint's step and appends to the
    log (dropping rows the killed run wrote after it); the crops it draws from then on are not those an
    uninterrupted run would have drawn (the transforms are re-seeded from the step). Returns the last ``step``,
    ``seconds`` (wall) and ``cpu_seconds`` (this process, every thread) of the whole run, resumed parts included."""
    done, seconds, cpu = 0, 0.0, 0.0
    if checkpoint is not None and checkpoint.resume:
        done, seconds, cpu = _restore(checkpoint, trainer)
        _truncate_log(log_path, done)
    start, cpu_start = time.time() - seconds, time.process_time() - cpu
    step = done
    with open(log_path, "a" if done else "w", newline="") as handle:
        writer = csv.DictWriter(handle, LOG_COLUMNS)
        if not done:
            writer.writeheader()
        for step in range(done + 1, steps + 1):
            row = {"step": step, "loss": round(trainer.step(), 5), "lr": trainer.schedule.get_last_lr()[0],
                   "val_dice": "", "elapsed_s": round(time.time() - start, 1)}
            out_of_time = max_minutes is not None and time.time() - start > 60 * max_minutes
            if step % eval_every == 0 or step == steps or out_of_time:
                row["val_dice"] = round(_evaluate(trainer.network, val, config), 4)
                save_model(trainer.network, replace(config, trained_on={**config.trained_on, "steps": step}),
                           out_path)
            writer.writerow(row)
            handle.flush()
            if checkpoint is not None and step % checkpoint.every == 0 and step < steps and not out_of_time:
                _save_checkpoint(checkpoint, trainer, step, time.time() - start, time.process_time() - cpu_start)
            if on_step:
                on_step(step, row)
            if out_of_time:
                break
    return {"steps": step, "seconds": time.time() - start, "cpu_seconds": time.process_time() - cpu_start}


def _save_checkpoint(checkpoint: Checkpointing, trainer: Trainer, step: int, seconds: float, cpu: float) -> None:
    """Write the training state atomically (a kill during the write leaves the previous checkpoint)."""
    import os

    import torch

    state = {"identity": checkpoint.identity, "step": step, "seconds": seconds, "cpu_seconds": cpu,
             "network": trainer.network.state_dict(), "optimiser": trainer.optimiser.state_dict(),
             "schedule": trainer.schedule.state_dict(), "rng": trainer.rng.bit_generator.state,
             "torch_rng": torch.get_rng_state()}
    temporary = checkpoint.path.with_name(checkpoint.path.name + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, checkpoint.path)


def _restore(checkpoint: Checkpointing, trainer: Trainer) -> tuple[int, float, float]:
    """Load ``checkpoint.path`` into ``trainer``; (step, wall seconds, CPU seconds) it had reached."""
    import torch

    if not checkpoint.path.is_file():
        raise SegmentationError(describe("no checkpoint to resume from", path=checkpoint.path,
                                         fix="Run the training without --resume to start it."))
    state = torch.load(checkpoint.path, map_location="cpu", weights_only=False)
    if state.get("identity") != checkpoint.identity:
        raise SegmentationError(describe(
            "the checkpoint belongs to a run on other data or settings", path=checkpoint.path,
            fix="Resume with the same analyses and options, or delete the checkpoint to start again."))
    trainer.network.load_state_dict(state["network"])
    trainer.optimiser.load_state_dict(state["optimiser"])
    trainer.schedule.load_state_dict(state["schedule"])
    trainer.rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    trainer.transform.set_random_state(seed=int(state["step"]))
    return int(state["step"]), float(state["seconds"]), float(state["cpu_seconds"])


def _truncate_log(log_path: Path, step: int) -> None:
    """Keep the header and the rows of steps up to ``step`` (a killed run may have logged steps after its last
    checkpoint, which the resumed run does again)."""
    rows = list(csv.DictReader(open(log_path, newline=""))) if log_path.is_file() else []
    with open(log_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(row for row in rows if int(row["step"]) <= step)


def _loss_function(organ_loss_weight: float, balance_organs: bool = False) -> Callable:
    """``loss(logits, labels, hard, organ=None)``: batch Dice + binary cross-entropy of the lesion channel (0),
    hard-negative organ voxels (``hard`` = 1) weighted ``organ_loss_weight`` in the cross-entropy (a lesion
    called in an adrenal costs that many background voxels); with ``organ`` (models with a physiological
    output; ``physiological_organ_index``), plus Dice + CE of channel 1 against ``organ > 0``. Unweighted, that
    term is the spleen's and the kidneys' (~200 mL each against a 5 mL adrenal or a 0.5 mL pituitary);
    ``balance_organs`` gives each organ in the batch the same total weight in the cross-entropy's positive voxels
    (see ``_organ_balance``)."""
    import torch
    from monai.losses import DiceLoss

    dice = DiceLoss(sigmoid=True, squared_pred=True, batch=True)

    def loss(logits, labels, hard, organ=None):
        lesion = logits[:, :1]
        weight = 1.0 + (organ_loss_weight - 1.0) * hard.float()
        total = dice(lesion, labels) + torch.nn.functional.binary_cross_entropy_with_logits(lesion, labels,
                                                                                             weight=weight)
        if organ is not None:
            physiological, target = logits[:, 1:2], (organ > 0).float()
            weight = _organ_balance(organ) if balance_organs else None
            total = total + dice(physiological, target) + \
                torch.nn.functional.binary_cross_entropy_with_logits(physiological, target, weight=weight)
        return total

    return loss


#: Largest cross-entropy weight of one organ voxel under organ balance: a pituitary is 1-2 voxels of 4 mm, and an
#: uncapped weight (thousands) would let two voxels' noise drive a step.
MAX_ORGAN_VOXEL_WEIGHT = 20.0


def _organ_balance(organ):
    """Cross-entropy weights (torch, like ``organ``) giving each organ present in the batch the same total weight:
    voxels of organ j weigh n_organ / (k x n_j) (n_organ organ voxels in all, k organs present), capped at
    :data:`MAX_ORGAN_VOXEL_WEIGHT`; background voxels weigh 1."""
    import torch

    weight = torch.ones_like(organ)
    values = [v for v in torch.unique(organ).tolist() if v > 0]
    total = float((organ > 0).sum())
    for value in values:
        voxels = organ == value
        weight[voxels] = min(MAX_ORGAN_VOXEL_WEIGHT, total / (len(values) * float(voxels.sum())))
    return weight


def _initial_network(config: ModelConfig, init_from: str | Path | None):
    """A fresh network for ``config``, or the weights of ``init_from`` (same architecture; it may have fewer
    input channels, whose missing first-layer weights are set to 0 so the new channel starts switched off, or
    fewer output channels, whose missing last-layer weights keep their fresh initialisation)."""
    network = build_network(config)
    if init_from is not None:
        import torch

        from LesionResponseLib.segmentation.model import load_model

        target = network.state_dict()
        source = load_model(init_from).network.state_dict()
        for key, value in source.items():
            wanted = target.get(key)
            if wanted is not None and wanted.shape != value.shape and _added_outputs(key, value, wanted):
                grown = wanted.clone()
                grown[:value.shape[0]] = value
                source[key] = grown
            elif wanted is not None and wanted.shape != value.shape:
                if value.dim() < 2 or value.shape[:1] + value.shape[2:] != wanted.shape[:1] + wanted.shape[2:] \
                        or value.shape[1] > wanted.shape[1]:
                    raise SegmentationError(f"{init_from}: weight {key} has shape {tuple(value.shape)}, the new "
                                            f"network {tuple(wanted.shape)}; only added input channels or "
                                            f"outputs can differ")
                padded = torch.zeros_like(wanted)
                padded[:, :value.shape[1]] = value
                source[key] = padded
        network.load_state_dict(source)
    return network


#: State-dict keys of SegResNet's last convolution, whose rows are the output channels.
OUTPUT_LAYER_KEYS = ("conv_final.2.conv.weight", "conv_final.2.conv.bias")


def _added_outputs(key: str, value, wanted) -> bool:
    """Whether ``wanted`` is the last layer's ``value`` with more output channels (rows)."""
    return key in OUTPUT_LAYER_KEYS and value.shape[1:] == wanted.shape[1:] and value.shape[0] < wanted.shape[0]


def _step_function(network, optimiser, schedule, *, loss_fn, transform, pool, batch_scans: int,
                   rng: np.random.Generator) -> Callable[[], float]:
    """A closure running one optimiser step on fresh random crops (scans drawn from ``rng``); returns the loss."""
    import torch

    def step() -> float:
        picked = [{k: pool[i][k] for k in CROP_KEYS if k in pool[i]}
                  for i in rng.integers(0, len(pool), batch_scans)]
        crops = [c for sample in picked for c in transform(sample)]
        images = torch.stack([torch.as_tensor(np.asarray(c["image"])) for c in crops]).float()
        labels = torch.stack([torch.as_tensor(np.asarray(c["label"])) for c in crops]).float()
        hard = torch.stack([torch.as_tensor(np.asarray(c["hard"])) for c in crops])
        organ = torch.stack([torch.as_tensor(np.asarray(c["organ"])) for c in crops]).float() \
            if "organ" in crops[0] else None
        network.train()
        optimiser.zero_grad()
        loss = loss_fn(network(images), labels, hard, organ)
        loss.backward()
        optimiser.step()
        schedule.step()
        return float(loss.detach())

    return step


#: The harder validation patients of ``calibrate_threshold(with_harder=True)``: the two kinds of follow-up scan the
#: longitudinal analysis must read (``harder_patient``'s options at their hard ends).
HARDER_VALIDATION = ({"small_lesions": True, "low_contrast": True},
                     {"near_organs": HARDER_MAX_NEAR_ORGANS, "n_lesions": HARDER_MAX_LESIONS})


def calibrate_threshold(model_path: str | Path, val_seeds: Sequence[int] = (1990, 1991),
                        *, candidates: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
                        axial_extent_mm: float | None = None, fp_weight: float = 0.05,
                        with_harder: bool = False) -> float:
    """Set the model file's probability threshold from ``candidates`` on phantom ``val_seeds`` and return it.

    Score per threshold = lesion sensitivity (>= 0.5 mL) + median Dice - ``fp_weight`` x FP ROIs per scan
    (one extra FP per scan costs as much as 5 % sensitivity). Seeds are training-reserved, never benchmark.
    ``with_harder``: each seed is also simulated as each patient of :data:`HARDER_VALIDATION` (small faint
    lesions; 60 lesions, half next to hot organs), so the threshold serves follow-up scans too, not only the
    default (baseline-like) patients.
    """
    from LesionResponseLib.segmentation.model import load_model

    model = load_model(model_path)
    kinds = [None, *(HARDER_VALIDATION if with_harder else ())]
    scans = [phantom_scan(seed, axial_extent_mm=axial_extent_mm, with_ct=uses_ct(model.config), harder=kind)
             for seed in val_seeds for kind in kinds]
    return store_threshold(model_path, threshold_scores(model, scans, candidates, fp_weight),
                           "default and harder patients" if with_harder else "default patients")


def threshold_scores(model, scans: Sequence, candidates: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
                     fp_weight: float = 0.05) -> dict[float, float]:
    """Score of each candidate probability threshold on ``scans`` (objects with ``pet_suv``, ``lesions`` (true
    labels on the PET grid) and ``ct``): lesion sensitivity (>= 0.5 mL) + median Dice - ``fp_weight`` x FP ROIs
    per scan (see :func:`calibrate_threshold`)."""
    from LesionResponseLib.segmentation.components import label_rois
    from LesionResponseLib.segmentation.metrics import evaluate

    probs = [sitk.Resample(model.probability(s.pet_suv, ct=s.ct), s.pet_suv, sitk.Transform(), sitk.sitkLinear, 0.0)
             for s in scans]
    scores = {}
    for t in candidates:
        found = [evaluate(label_rois(p > t, s.pet_suv), s.lesions) for p, s in zip(probs, scans, strict=True)]
        n_true = sum(m.n_true for m in found)
        dice = [d for m in found for d in m.dice]
        scores[t] = (sum(m.n_detected for m in found) / max(1, n_true) + (float(np.median(dice)) if dice else 0)
                     - fp_weight * float(np.mean([m.false_positive_rois for m in found])))
    return scores


def store_threshold(model_path: str | Path, scores: dict[float, float], calibration: str) -> float:
    """Write the best-scoring threshold of ``scores`` (:func:`threshold_scores`) into the model file (and its
    .json), with the scores and what it was calibrated on; returns it."""
    import torch

    from LesionResponseLib.segmentation.model import load_model

    best = max(scores, key=scores.get)
    model = load_model(model_path)
    payload = torch.load(model_path, map_location="cpu", weights_only=True)
    config = replace(ModelConfig.from_dict(payload["config"]), threshold=best)
    config.trained_on["threshold_score"] = {str(k): round(v, 4) for k, v in scores.items()}
    config.trained_on["threshold_calibration"] = calibration
    model.network.load_state_dict(payload["state_dict"])
    save_model(model.network, config, model_path)
    return best


#: Validation patients of the physiological-threshold calibration have this share of their lesions 2-6 mm from a
#: spleen, kidney or adrenal: the lesions the rule could lose (``harder_patient``'s upper bound).
CALIBRATION_NEAR_ORGANS = HARDER_MAX_NEAR_ORGANS
#: Each organ's Dice counts the output's voxels within this distance of the organ (mm): its own spill and
#: over-segmentation, not another organ's voxels.
ORGAN_NEIGHBOURHOOD_MM = 12.0


def calibrate_physiological_threshold(model_path: str | Path, val_seeds: Sequence[int] = (1990, 1991),
                                      candidates: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5),
                                      axial_extent_mm: float | None = None) -> float:
    """Set the model file's ``physiological_threshold`` from ``candidates`` on phantom ``val_seeds`` and return it.

    The validation patients are simulated with :data:`CALIBRATION_NEAR_ORGANS` of their lesions next to a hot
    organ. First rule: a threshold may put no more true lesions on the output (``prior_guided.physiological_share``
    >= ``PHYSIOLOGICAL_SHARE``: such a lesion would be dropped as a model ROI and never searched from) than the
    strictest candidate does; a lesion lost costs a whole track, a missed organ voxel at worst one false-positive
    track that the reader rejects in one edit. Among those, the highest mean Dice over the organs of
    ``PHYSIOLOGICAL_OUTPUT_ORGANS`` present, each organ against the output's voxels within
    :data:`ORGAN_NEIGHBOURHOOD_MM` of it, so a 0.5 mL pituitary or a 5 mL adrenal weighs as much as a spleen
    (a single Dice over all organs is the spleen's and the kidneys'). Ties go to the higher threshold.
    """
    import torch

    from LesionResponseLib.segmentation.model import load_model
    from LesionResponseLib.segmentation.prior_guided import PHYSIOLOGICAL_SHARE, physiological_share

    model = load_model(model_path)
    if "physiological" not in model.config.outputs:
        raise SegmentationError(describe("the model has no physiological output to calibrate", path=model_path))
    harder = {"near_organs": CALIBRATION_NEAR_ORGANS}
    scans = [phantom_scan(seed, axial_extent_mm=axial_extent_mm, with_ct=uses_ct(model.config), harder=harder)
             for seed in val_seeds]
    maps = [sitk.GetArrayFromImage(sitk.Resample(model.probabilities(s.pet_suv, ct=s.ct)["physiological"],
                                                 s.pet_suv, sitk.Transform(), sitk.sitkLinear, 0.0)) for s in scans]
    per_scan = [_organs_and_lesions(scan) for scan in scans]
    lesions_on, organ_dice = {}, {}
    for t in candidates:
        on, dice = 0, []
        for probability, (lesions, organs) in zip(maps, per_scan, strict=True):
            on += sum(physiological_share(lesion, probability, t) >= PHYSIOLOGICAL_SHARE for lesion in lesions)
            predicted = probability >= t
            for organ, near in organs:
                hit = predicted & near
                dice.append(2.0 * float((hit & organ).sum()) / float(hit.sum() + organ.sum()))
        lesions_on[t], organ_dice[t] = int(on), float(np.mean(dice)) if dice else 0.0
    fewest = min(lesions_on.values())
    best = max((t for t in candidates if lesions_on[t] == fewest), key=lambda t: (organ_dice[t], t))
    payload = torch.load(model_path, map_location="cpu", weights_only=True)
    config = replace(ModelConfig.from_dict(payload["config"]), physiological_threshold=best)
    config.trained_on["physiological_threshold_scores"] = {
        str(t): {"mean_organ_dice": round(organ_dice[t], 4), "true_lesions_on_it": lesions_on[t]} for t in candidates}
    model.network.load_state_dict(payload["state_dict"])
    save_model(model.network, config, model_path)
    return best


def _organs_and_lesions(scan: PhantomScan) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """True lesion masks, and per organ of ``PHYSIOLOGICAL_OUTPUT_ORGANS`` present (its voxels that are not
    lesion, its :data:`ORGAN_NEIGHBOURHOOD_MM` neighbourhood), of one validation scan (PET grid)."""
    from scipy import ndimage

    from LesionResponseLib.phantom import ORGAN_LABELS
    from LesionResponseLib.segmentation.model import PHYSIOLOGICAL_OUTPUT_ORGANS

    lesion = sitk.GetArrayFromImage(scan.lesions)
    organ_map = sitk.GetArrayFromImage(scan.organs)
    target = physiological_target(organ_map, lesion) > 0
    reach = max(1, int(round(ORGAN_NEIGHBOURHOOD_MM / min(scan.pet_suv.GetSpacing()))))
    organs = []
    for name in PHYSIOLOGICAL_OUTPUT_ORGANS:
        organ = target & (organ_map == ORGAN_LABELS.get(name, -1))
        if organ.any():
            organs.append((organ, ndimage.binary_dilation(organ, iterations=reach)))
    return [lesion == v for v in np.unique(lesion[lesion > 0])], organs


def _validation_crops(samples: list[dict], config: ModelConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed crops (network input (C, z, y, x), label) of ``config.patch_size`` centred on a lesion and on an
    organ voxel; the CT channel, if any, is kept (no dropout)."""
    crops = []
    half = np.array(config.patch_size) // 2
    for sample in samples:
        pad = [(0, max(0, 2 * h - n)) for h, n in zip(half, sample["image"].shape[1:], strict=True)]
        image, label, classes = (np.pad(sample[key][0], pad) for key in ("image", "label", "classes"))
        ct = np.pad(sample["ct"][0], pad, constant_values=-1.0) if "ct" in sample else None
        for target in (classes == 1, classes >= 2):
            if not target.any():
                continue
            centre = np.argwhere(target)[len(np.argwhere(target)) // 2]
            lo = np.clip(centre - half, 0, np.maximum(np.array(image.shape) - 2 * half, 0))
            sl = tuple(slice(a, a + 2 * h) for a, h in zip(lo, half, strict=True))
            channels = [normalise(image[sl], config)] + ([ct[sl]] if ct is not None else [])
            crops.append((np.stack(channels).astype(np.float32), label[sl]))
    return crops


def _evaluate(network, crops, config: ModelConfig) -> float:
    """Mean Dice over the validation crops (empty-vs-empty counts as 1)."""
    import torch

    network.eval()
    scores = []
    with torch.inference_mode():
        for image, label in crops:
            prob = torch.sigmoid(network(torch.from_numpy(np.ascontiguousarray(image))[None])[:, :1])[0, 0].numpy()
            scores.append(_dice(prob, label, config.threshold))
    return float(np.mean(scores)) if scores else float("nan")
