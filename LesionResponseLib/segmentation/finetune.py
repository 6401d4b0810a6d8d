"""Fine-tuning the segmentation model on a site's reviewed analyses (``lesion-response train --from-analyses``).

Training data, per time point of each reviewed analysis folder (docs/DOMAIN.md §8, read as files: this stage comes
before the analysis in the data flow):

- lesion label: every **accepted** lesion-ROI after the review (the model's ROIs the reader left, the prior-guided
  ones, and the ROIs the reader added or re-drew), from ``labels/tp{k}.nii.gz`` and ``analysis.json``;
- negatives: the **rejected** ROIs (the reader said "not a lesion": physiological uptake, artefacts) and, for
  models with a ``physiological`` output, the starting model's own organ output (its map at its
  ``physiological_threshold``, lesion voxels excluded) - both are hard negatives (crops are centred on them, and
  ``organ_loss_weight`` weighs them in the loss); the organ output is also the target of the physiological channel,
  so that channel keeps what it knew (the site's reader does not contour organs);
- input: ``suv/tp{k}.nii.gz`` and, for models with a CT channel, ``ct/tp{k}.nii.gz``.

Patients (analysis folders), not scans, are split into training and validation, so no held-out patient's scan was
seen. The run warm-starts from the starting model (default: the shipped one), keeps its architecture and
preprocessing, calibrates the lesion threshold on the held-out patients (:func:`training.threshold_scores`), and
writes the model file with its card: what it was trained on and the lesion detection of the starting and the new
model on the held-out patients (:func:`heldout_figures`). The physiological threshold is the starting model's: a
site's review has no organ contours to calibrate it on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.datamodel import Analysis
from LesionResponseLib.errors import describe
from LesionResponseLib.segmentation.model import (
    DEFAULT_MODEL_PATH,
    ModelConfig,
    SegmentationError,
    SegmentationModel,
    load_model,
    resample_to_spacing,
    uses_ct,
)

#: Sampling classes of a reviewed scan and their crop-centre weights: background 1, lesion 2, and the hard negatives
#: together 3 (as the phantom training's ``crop_ratios``), split between the rejected ROIs and the organ output.
REVIEWED_CLASSES = ("background", "lesion", "rejected", "physiological")
REVIEWED_RATIOS = (1.0, 2.0, 1.5, 1.5)
#: Defaults of a fine-tuning run. Learning rate: the v9 fine-tune's (Resources/Models/MODEL_CARD.md), a third of a
#: fresh training's, so the warm start is refined rather than overwritten; steps: a few hundred steps of 2 crops
#: (a few epochs of a handful of patients' lesions at 64^3 crops) take 5-15 min on 2 cores.
FINE_TUNE_STEPS = 300
FINE_TUNE_LEARNING_RATE = 3e-4
#: Weight of hard-negative voxels in the cross-entropy: the shipped model's (v9: 5).
FINE_TUNE_ORGAN_LOSS_WEIGHT = 5.0
#: Share of the patients held out for validation and threshold calibration (at least one).
VALIDATION_SHARE = 0.25
#: Lesions of at least this volume (mL) count for the held-out sensitivity (the benchmarks' small-lesion line).
HELDOUT_MIN_VOLUME_ML = 0.5


@dataclass
class ReviewedScan:
    """One time point of a reviewed analysis: SUV PET, accepted lesion-ROIs (uint16 labels, PET grid), the rejected
    ROIs' voxels (bool, z-y-x) and the CT (HU) when asked for."""

    analysis_dir: Path
    patient_id: str
    timepoint: int
    pet_suv: sitk.Image
    lesions: sitk.Image
    rejected: np.ndarray
    ct: sitk.Image | None
    roi_counts: dict[str, int]


def find_analyses(paths: Iterable[str | Path], require_review: bool = False,
                  skipped: list[str] | None = None) -> list[Path]:
    """The analysis folders (with ``analysis.json``) among ``paths``: each path is one, or a folder of them (a
    cohort's ``patients/`` folder: its sub-folders that hold one). With ``require_review`` the unreviewed ones found
    inside a folder are left out and named in ``skipped`` (one given by name stays: :func:`reviewed_scans` refuses
    it)."""
    found: list[Path] = []
    for path in (Path(p) for p in paths):
        if (path / "analysis.json").is_file():
            found.append(path)
            continue
        children = sorted(p for p in path.glob("*") if (p / "analysis.json").is_file()) if path.is_dir() else []
        if not children:
            raise SegmentationError(describe("no analysis.json here nor in its sub-folders", path=path,
                                             fix="Give analysis folders (the OUT of `lesion-response analyze`) or a "
                                                 "folder of them."))
        for child in children:
            if require_review and review_edit_count(child) == 0:
                if skipped is not None:
                    skipped.append(str(child))
            else:
                found.append(child)
    return found


def review_edit_count(folder: Path) -> int:
    """Edits the reader applied to the analysis in ``folder`` (``review/session.json``; 0 when never reviewed)."""
    path = folder / "review" / "session.json"
    return len(json.loads(path.read_text()).get("edits", [])) if path.is_file() else 0


def reviewed_scans(folder: Path, with_ct: bool = False, require_review: bool = True) -> list[ReviewedScan]:
    """Every time point of the analysis in ``folder`` as a :class:`ReviewedScan` (module docstring)."""
    if require_review and review_edit_count(folder) == 0:
        raise SegmentationError(describe(
            "this analysis has no reader review (review/session.json with edits)", path=folder,
            fix="Review it first (lesion-response review-app OUT, or review OUT reject/add/...): unreviewed ROIs "
                "are the model's own output and teach it nothing; or pass --include-unreviewed."))
    analysis = Analysis.from_dict(json.loads((folder / "analysis.json").read_text()))
    scans = []
    for info in analysis.timepoints:
        k = info.index
        pet = _read(folder / "suv" / f"tp{k}.nii.gz", sitk.sitkFloat32)
        labels = sitk.Cast(_read(folder / "labels" / f"tp{k}.nii.gz"), sitk.sitkUInt16)
        array = sitk.GetArrayFromImage(labels)
        rois = [r for r in analysis.rois if r.timepoint == k]
        accepted = [r.label for r in rois if r.status == "accepted"]
        lesions = sitk.GetImageFromArray(np.where(np.isin(array, accepted), array, 0).astype(np.uint16))
        lesions.CopyInformation(pet)
        ct = _read(folder / "ct" / f"tp{k}.nii.gz") if with_ct and (folder / "ct" / f"tp{k}.nii.gz").is_file() \
            else None
        counts = {"accepted": len(accepted), "rejected": len(rois) - len(accepted),
                  "reader": sum(r.source == "reader" and r.status == "accepted" for r in rois),
                  "prior-guided": sum(r.source == "prior-guided" and r.status == "accepted" for r in rois)}
        scans.append(ReviewedScan(folder, analysis.patient_id, k, pet, lesions,
                                  np.isin(array, [r.label for r in rois if r.status == "rejected"]), ct, counts))
    return scans


def _read(path: Path, pixel_type: int | None = None) -> sitk.Image:
    if not path.is_file():
        raise SegmentationError(describe("missing from the analysis folder", path=path,
                                         fix="Re-run `lesion-response analyze` on this patient (it writes suv/, ct/ "
                                             "and labels/)."))
    return sitk.ReadImage(str(path), pixel_type) if pixel_type is not None else sitk.ReadImage(str(path))


def split_patients(folders: Sequence[Path], validation_share: float = VALIDATION_SHARE,
                   seed: int = 0) -> tuple[list[Path], list[Path]]:
    """(training, validation) analysis folders: ``validation_share`` of them (at least one) held out, drawn with
    ``seed`` from the folders sorted by path (the same split on every run)."""
    ordered = sorted({Path(f).resolve() for f in folders})
    if len(ordered) < 2:
        raise SegmentationError(describe(
            f"{len(ordered)} reviewed analysis given; fine-tuning needs at least 2 patients (one is held out to "
            "calibrate and check the model)", fix="Give more reviewed analyses."))
    n_val = min(len(ordered) - 1, max(1, round(validation_share * len(ordered))))
    picked = set(np.random.default_rng(seed).permutation(len(ordered))[:n_val].tolist())
    return ([f for i, f in enumerate(ordered) if i not in picked], [f for i, f in enumerate(ordered) if i in picked])


def reviewed_sample(scan: ReviewedScan, config: ModelConfig, reference: SegmentationModel) -> dict[str, np.ndarray]:
    """The training sample of ``scan`` on the model grid (classes :data:`REVIEWED_CLASSES`; module docstring):
    ``reference`` is the starting model, whose organ output gives the physiological negatives."""
    from LesionResponseLib.segmentation.training import assemble_sample

    pet = resample_to_spacing(sitk.Cast(scan.pet_suv, sitk.sitkFloat32), config.spacing_mm)
    lesion = sitk.GetArrayFromImage(resample_to_spacing(scan.lesions, config.spacing_mm, sitk.sitkNearestNeighbor)) > 0
    rejected = _mask_on(scan.rejected, scan.pet_suv, config) & ~lesion
    organ = None
    classes = np.zeros(lesion.shape, np.int64)
    if "physiological" in config.outputs:
        maps = reference.probabilities(scan.pet_suv, ct=scan.ct)
        organ = (sitk.GetArrayFromImage(maps["physiological"]) >= reference.config.physiological_threshold) & ~lesion
        classes[organ] = 3
    classes[rejected] = 2
    classes[lesion] = 1
    return assemble_sample(pet, lesion, classes, organ, scan.ct, config, len(REVIEWED_CLASSES))


def _mask_on(mask: np.ndarray, grid: sitk.Image, config: ModelConfig) -> np.ndarray:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(grid)
    return sitk.GetArrayFromImage(resample_to_spacing(image, config.spacing_mm, sitk.sitkNearestNeighbor)) > 0


def heldout_figures(model_path: str | Path, scans: Sequence[ReviewedScan]) -> dict[str, float | int]:
    """Lesion detection of the model on reviewed scans, through the whole segmentation (``segment``: threshold,
    ROI filters): sensitivity for reviewed lesions >= :data:`HELDOUT_MIN_VOLUME_ML` (detected: Dice >= 0.1 or the
    centroid covered, ``metrics.match_lesions``), precision (ROIs overlapping a reviewed lesion / ROIs), F1,
    false-positive ROIs per scan and the median Dice of detected lesions."""
    from LesionResponseLib.segmentation.inference import segment
    from LesionResponseLib.segmentation.metrics import evaluate

    n_true = detected = rois = false = 0
    dice: list[float] = []
    for scan in scans:
        labels = segment(scan.pet_suv, scan.ct, model_path=str(model_path))
        metrics = evaluate(labels, scan.lesions, min_volume_ml=HELDOUT_MIN_VOLUME_ML)
        n_true, detected, dice = n_true + metrics.n_true, detected + metrics.n_detected, dice + metrics.dice
        rois += int(sitk.GetArrayViewFromImage(labels).max())
        false += metrics.false_positive_rois
    sensitivity = detected / n_true if n_true else 0.0
    precision = (rois - false) / rois if rois else 0.0
    f1 = 2 * precision * sensitivity / (precision + sensitivity) if precision + sensitivity else 0.0
    return {"scans": len(scans), "lesions": n_true, "sensitivity": round(sensitivity, 4),
            "precision": round(precision, 4), "f1": round(f1, 4),
            "false_positives_per_scan": round(false / max(1, len(scans)), 3),
            "median_dice": round(float(np.median(dice)), 4) if dice else None}


def anonymous_id(patient_id: str) -> str:
    """A patient's identifier in a model card: the first 12 hex digits of its SHA-256 (the card travels with the
    model, identifiers must not)."""
    return hashlib.sha256(patient_id.encode()).hexdigest()[:12]


def fine_tune(out_path: str | Path, analyses: Sequence[str | Path], *, init_from: str | Path | None = None,
              steps: int = FINE_TUNE_STEPS, learning_rate: float = FINE_TUNE_LEARNING_RATE,
              validation_share: float = VALIDATION_SHARE, eval_every: int = 50, checkpoint_every: int = 10,
              resume: bool = False, num_threads: int = 2, samples_per_scan: int = 2,
              organ_loss_weight: float = FINE_TUNE_ORGAN_LOSS_WEIGHT, require_review: bool = True,
              max_minutes: float | None = None, patch_size: tuple[int, int, int] | None = None,
              on_stage: Callable[[str], None] | None = None,
              on_step: Callable[[int, dict], None] | None = None) -> Path:
    """Fine-tune the starting model ``init_from`` (default: the shipped one) on the reviewed ``analyses`` and write
    ``out_path`` (+ ``.json``, ``.log.csv`` and the card ``.card.md``); module docstring.

    ``steps`` optimiser steps of ``samples_per_scan`` crops (AdamW, cosine decay from ``learning_rate``); every
    ``checkpoint_every`` steps the run is checkpointed to ``<out>.checkpoint.pt`` and ``resume`` continues a killed
    run from there (refused when there is none, or it is of other data or settings; without ``resume`` an existing
    checkpoint is refused rather than overwritten). ``patch_size`` overrides the crop size (tests); ``on_stage``
    announces each preparation stage, ``on_step(step, log row)`` each step.
    """
    import torch

    from LesionResponseLib.segmentation.training import (
        Checkpointing,
        Trainer,
        _initial_network,
        _loss_function,
        _step_function,
        _transforms,
        _validation_crops,
        run_steps,
        store_threshold,
        threshold_scores,
    )

    announce = on_stage or (lambda _stage: None)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    start_model = Path(init_from) if init_from else DEFAULT_MODEL_PATH
    checkpoint_path = out_path.with_name(out_path.name + ".checkpoint.pt")
    if checkpoint_path.is_file() and not resume:
        raise SegmentationError(describe(
            "an unfinished fine-tuning run left this checkpoint", path=checkpoint_path,
            fix="Continue it with --resume, or delete the checkpoint to start again."))
    torch.manual_seed(0)
    torch.set_num_threads(num_threads)
    reference = load_model(start_model)
    config = replace(reference.config, patch_size=patch_size or reference.config.patch_size, trained_on={})
    unreviewed: list[str] = []
    folders = [f.resolve() for f in find_analyses(analyses, require_review, unreviewed)]
    if unreviewed:
        announce(f"left out {len(unreviewed)} unreviewed analyses: {', '.join(unreviewed)}")
    train_dirs, val_dirs = split_patients(folders, validation_share)
    announce(f"reading {len(folders)} reviewed analyses")
    # held-out scans keep their CT: the held-out figures run the whole segmentation, cranial-cavity filter included
    scans = {d: reviewed_scans(d, uses_ct(config) or d in val_dirs, require_review) for d in folders}
    train_scans = [s for d in train_dirs for s in scans[d]]
    val_scans = [s for d in val_dirs for s in scans[d]]
    announce(f"preparing {len(train_scans) + len(val_scans)} scans")
    pool = [reviewed_sample(s, config, reference) for s in train_scans]
    val = _validation_crops([reviewed_sample(s, config, reference) for s in val_scans], config)
    network = _initial_network(config, start_model)
    optimiser = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(1, steps))
    transform = _transforms(config, samples_per_scan, ratios=REVIEWED_RATIOS)
    rng = np.random.default_rng(0)
    trainer = Trainer(network, optimiser, schedule,
                      _step_function(network, optimiser, schedule, loss_fn=_loss_function(organ_loss_weight),
                                     transform=transform, pool=pool, batch_scans=1, rng=rng), rng, transform)
    config = replace(config, trained_on=_training_record(start_model, train_scans, val_scans, learning_rate,
                                                         organ_loss_weight, samples_per_scan))
    identity = {"analyses": sorted(str(d) for d in folders), "init_from": str(start_model.resolve()),
                "steps": steps, "learning_rate": learning_rate, "samples_per_scan": samples_per_scan,
                "organ_loss_weight": organ_loss_weight, "patch_size": list(config.patch_size)}
    announce("training")
    timing = run_steps(trainer, steps=steps, config=config, out_path=out_path,
                       log_path=out_path.with_suffix(".log.csv"), val=val, eval_every=eval_every,
                       max_minutes=max_minutes, on_step=on_step,
                       checkpoint=Checkpointing(checkpoint_path, checkpoint_every, resume, identity))
    announce("calibrating the threshold on the held-out patients")
    store_threshold(out_path, threshold_scores(load_model(out_path), val_scans), "held-out reviewed patients")
    announce("measuring the starting and the new model on the held-out patients")
    card = {"training_seconds": round(timing["seconds"], 1), "training_cpu_seconds": round(timing["cpu_seconds"], 1),
            "heldout_before": heldout_figures(start_model, val_scans),
            "heldout_after": heldout_figures(out_path, val_scans)}
    _add_to_card(out_path, card)
    checkpoint_path.unlink(missing_ok=True)
    return out_path


def _training_record(start_model: Path, train_scans: Sequence[ReviewedScan], val_scans: Sequence[ReviewedScan],
                     learning_rate: float, organ_loss_weight: float, samples_per_scan: int) -> dict[str, Any]:
    """``trained_on`` of a fine-tuned model: the data (patients by anonymous id, scans, ROI counts by kind) and the
    settings."""
    def counts(scans: Sequence[ReviewedScan]) -> dict[str, int]:
        return {key: sum(s.roi_counts[key] for s in scans) for key in ("accepted", "reader", "prior-guided",
                                                                        "rejected")}

    return {"generator": "reviewed analyses (lesion-response train --from-analyses)",
            "init_from": str(start_model),
            "training_patients": sorted({anonymous_id(s.patient_id) for s in train_scans}),
            "validation_patients": sorted({anonymous_id(s.patient_id) for s in val_scans}),
            "n_scans": len(train_scans), "n_validation_scans": len(val_scans),
            "training_rois": counts(train_scans), "validation_rois": counts(val_scans),
            "learning_rate": learning_rate, "crops_per_step": samples_per_scan,
            "crop_ratios": dict(zip(REVIEWED_CLASSES, REVIEWED_RATIOS, strict=True)),
            "organ_loss_weight": organ_loss_weight}


def _add_to_card(model_path: Path, figures: dict[str, Any]) -> None:
    """Add ``figures`` to the model file's ``trained_on`` (and its .json) and write the Markdown card."""
    import torch

    from LesionResponseLib.segmentation.model import save_model

    payload = torch.load(model_path, map_location="cpu", weights_only=True)
    config = ModelConfig.from_dict(payload["config"])
    config.trained_on.update(figures)
    model = load_model(model_path)
    model.network.load_state_dict(payload["state_dict"])
    save_model(model.network, config, model_path)
    model_path.with_suffix(".card.md").write_text(model_card(model_path.name, config))


def model_card(name: str, config: ModelConfig) -> str:
    """The Markdown card of a fine-tuned model (from its ``trained_on``)."""
    record = config.trained_on
    before, after = record.get("heldout_before", {}), record.get("heldout_after", {})
    rows = [("lesion sensitivity (reviewed lesions >= 0.5 mL)", "sensitivity"), ("precision", "precision"),
            ("F1", "f1"), ("false-positive ROIs per scan", "false_positives_per_scan"),
            ("median Dice of detected lesions", "median_dice")]
    roi = record.get("training_rois", {})
    lines = [
        f"# Model card: {name}",
        "",
        f"Fine-tuned from `{Path(str(record.get('init_from', ''))).name}` by `lesion-response train "
        "--from-analyses` on a site's reviewed analyses (docs/site-adaptation.md).",
        "",
        "## Trained on",
        "",
        f"- {len(record.get('training_patients', []))} patients, {record.get('n_scans')} scans (anonymous ids: "
        f"{', '.join(record.get('training_patients', []))})",
        f"- lesion labels: {roi.get('accepted')} accepted lesion-ROIs ({roi.get('reader')} added or re-drawn by the "
        f"reader, {roi.get('prior-guided')} prior-guided); negatives: {roi.get('rejected')} rejected ROIs and the "
        "starting model's physiological-uptake output",
        f"- {record.get('steps')} steps of {record.get('crops_per_step')} crops of {config.patch_size[0]}^3 voxels "
        f"at {config.spacing_mm[0]:g} mm, learning rate {record.get('learning_rate')}, hard-negative weight "
        f"{record.get('organ_loss_weight')}; {record.get('training_seconds')} s wall, "
        f"{record.get('training_cpu_seconds')} CPU s",
        f"- lesion threshold {config.threshold} (calibrated on the held-out patients), physiological threshold "
        f"{config.physiological_threshold} (the starting model's)",
        "",
        f"## Held-out patients ({len(record.get('validation_patients', []))}, {before.get('scans')} scans, "
        f"{before.get('lesions')} reviewed lesions >= 0.5 mL)",
        "",
        "| figure | starting model | this model |",
        "| --- | --- | --- |",
        *(f"| {label} | {before.get(key)} | {after.get(key)} |" for label, key in rows),
        "",
        "A held-out patient was never trained on, but the threshold was chosen on them, so this model's figures are "
        "slightly optimistic for new patients; the reviewed lesions start from the starting model's own ROIs, so its "
        "sensitivity and Dice here are flattering. Measure both on patients neither saw, against their reference, "
        "with `lesion-response evaluate` (docs/site-adaptation.md).",
    ]
    return "\n".join(lines) + "\n"
