"""Command-line commands of the segmentation stage: ``train`` and ``segment``."""

from __future__ import annotations

from pathlib import Path

import typer

from LesionResponseLib.cli_base import json_option, out_option, patient_option, with_settings
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.terminal import cli_console, emit_json


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
    app.command("train")(train_command)
    app.command("calibrate")(calibrate_command)
    app.command("segment")(with_settings(segment_command, sections=("segmentation",),
                                         exclude=("segmentation.labels_dir",)))


def _seed_range(text: str) -> range:
    """``"1000-1023"`` -> range(1000, 1024); a single number is one seed."""
    first, _, last = text.partition("-")
    try:
        return range(int(first), int(last or first) + 1)
    except ValueError as error:
        raise typer.BadParameter(f"{text!r} is not a seed range like 1000-1023") from error


def train_command(
    *, out: Path = out_option(Path("lesion_segresnet_trained.pt"), "Model file to write (state_dict + config, "
                           "versioned .pt; a .json copy too). The default never overwrites the shipped model."),
    seeds: str = typer.Option("1000-1015", help="Phantom training seeds, FIRST-LAST (1000-1999 are reserved "
                                                "for training; 1-99 tests, 100-199 benchmark)."),
    steps: int = typer.Option(None, help="Optimiser steps (2 crops of PATCH^3 voxels each; default 1000, with "
                                          "--from-analyses 300)."),
    patch: int = typer.Option(64, help="Cubic crop edge in 4 mm voxels (64 = 256 mm: a whole spleen in view)."),
    lr: float = typer.Option(None, "--lr", help="AdamW learning rate (cosine decay to 0; default 1e-3, with "
                                                "--from-analyses 3e-4: a warm start is refined, not overwritten)."),
    init_from: Path = typer.Option(None, help="Warm start from this model file (same architecture; with "
                                              "--from-analyses the default is the shipped model)."),
    from_analyses: list[Path] = typer.Option(None, "--from-analyses", help="Fine-tune on a site's reviewed "
                                             "analyses instead of phantom patients: an analysis folder (OUT of "
                                             "analyze) or a folder of them; repeat the option for more. Accepted and "
                                             "reader-added ROIs are lesions, rejected ROIs and the model's organ "
                                             "output negatives; part of the patients is held out "
                                             "(docs/site-adaptation.md)."),
    validation_share: float = typer.Option(0.25, min=0.0, max=0.9, help="--from-analyses: share of the patients "
                                           "held out to calibrate the threshold and measure the model (at least 1)."),
    resume: bool = typer.Option(False, "--resume", help="--from-analyses: continue a killed run from its checkpoint "
                                                        "(OUT.checkpoint.pt)."),
    checkpoint_every: int = typer.Option(10, min=1, help="--from-analyses: checkpoint every N steps (a kill loses "
                                                         "at most N steps)."),
    include_unreviewed: bool = typer.Option(False, help="--from-analyses: also take analyses nobody reviewed "
                                                        "(their ROIs are the model's own)."),
    max_minutes: float = typer.Option(None, help="Stop after this many minutes and keep the last checkpoint."),
    eval_every: int = typer.Option(100, help="Validate and checkpoint every N steps."),
    log: Path = typer.Option(None, help="CSV log of loss per step (default: OUT with .log.csv)."),
    axial_extent_mm: float = typer.Option(None, help="Simulate only this axial slab (mm) of the upper abdomen "
                                                     "instead of the whole body: quick smoke runs only."),
    organ_loss_weight: float = typer.Option(1.0, help="Cross-entropy weight of physiological-organ voxels "
                                                      "(hard negatives); 1 = plain Dice + CE."),
    channels: str = typer.Option("pet", help="Input channels: 'pet' (SUV only) or 'pet+ct' (SUV and the "
                                             "time point's CT in a soft-tissue window)."),
    ct_dropout: float = typer.Option(0.0, help="pet+ct only: share of crops whose CT is blanked, so the model "
                                               "also runs on time points without CT (0: it then refuses them)."),
    harder_share: float = typer.Option(0.0, help="Share of training scans from harder patients: lesions of "
                                                 "0.1-4 mL, at 1.2-4x liver uptake, up to 60, next to hot "
                                                 "organs (as after therapy); 0 = the default phantom only."),
    outputs: str = typer.Option("lesion", help="Output maps: 'lesion', or 'lesion+physiological' (also learns "
                                               "the physiological-uptake organs; the longitudinal search "
                                               "uses that map, see the model card)."),
    balance_organs: bool = typer.Option(False, help="lesion+physiological only: each organ (a 0.5 mL pituitary "
                                                    "as a 200 mL spleen) weighs alike in that output's loss."),
    threads: int = typer.Option(2, help="torch threads; use 1 on a machine shared with other jobs (2 threads "
                                        "on 2 busy cores ran 3.5x slower per step than 1)."),
    as_json: bool = json_option("the model file written"),
) -> None:
    """Train the lesion segmentation model on phantom patients, or fine-tune it on a site's reviewed analyses
    (--from-analyses); log losses to a CSV file."""
    from rich.progress import Progress

    from LesionResponseLib.segmentation.model import ModelConfig
    from LesionResponseLib.segmentation.training import train

    console = cli_console(stderr=as_json)
    if patch < 16 or patch % 8:
        raise typer.BadParameter(f"--patch {patch}: SegResNet halves the crop 3 times; use a multiple of 8 >= 16")
    if from_analyses:
        _fine_tune(console, out, from_analyses, steps=steps, lr=lr, init_from=init_from, patch=patch,
                   validation_share=validation_share, resume=resume, checkpoint_every=checkpoint_every,
                   include_unreviewed=include_unreviewed, eval_every=eval_every, max_minutes=max_minutes,
                   threads=threads, as_json=as_json)
        return
    steps, lr = steps or 1000, lr or 1e-3
    chosen = _seed_range(seeds)
    names = {"pet": ("pet_suv",), "pet+ct": ("pet_suv", "ct_hu")}
    if channels not in names:
        raise typer.BadParameter(f"--channels {channels!r}: use 'pet' or 'pet+ct'")
    output_names = {"lesion": ("lesion",), "lesion+physiological": ("lesion", "physiological")}
    if outputs not in output_names:
        raise typer.BadParameter(f"--outputs {outputs!r}: use 'lesion' or 'lesion+physiological'")
    if not 0.0 <= harder_share <= 1.0:
        raise typer.BadParameter(f"--harder-share {harder_share}: a share in [0, 1]")
    if not 0.0 <= ct_dropout < 1.0:
        raise typer.BadParameter(f"--ct-dropout {ct_dropout}: a share in [0, 1)")
    with Progress(console=console) as bar:
        scans = bar.add_task("simulating phantom scans", total=len(chosen))
        task = bar.add_task("training", total=steps)

        def on_step(step: int, row: dict) -> None:
            bar.update(task, completed=step, description=f"training, loss {row['loss']:.3f}")
            if row["val_dice"] != "":
                console.log(f"step {step}: loss {row['loss']:.4f}, validation Dice {row['val_dice']}")

        config = ModelConfig(patch_size=(patch,) * 3, channels=names[channels], outputs=output_names[outputs])
        path = train(out, seeds=chosen, steps=steps, learning_rate=lr, config=config,
                     init_from=init_from, max_minutes=max_minutes, eval_every=eval_every, log_path=log,
                     axial_extent_mm=axial_extent_mm, organ_loss_weight=organ_loss_weight, ct_dropout=ct_dropout,
                     num_threads=threads, harder_share=harder_share, balance_organs=balance_organs,
                     on_step=on_step, on_scan=lambda _seed: bar.advance(scans))
    if as_json:
        emit_json({"model": path})
        return
    console.print(f"model written to {path}")


def _fine_tune(console, out: Path, analyses: list[Path], *, steps: int | None, lr: float | None,
               init_from: Path | None, patch: int, validation_share: float, resume: bool, checkpoint_every: int,
               include_unreviewed: bool, eval_every: int, max_minutes: float | None, threads: int,
               as_json: bool) -> None:
    """``train --from-analyses``: the fine-tuning run with a progress bar (steps, loss, time left)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from LesionResponseLib.segmentation.finetune import FINE_TUNE_LEARNING_RATE, FINE_TUNE_STEPS, fine_tune
    from LesionResponseLib.segmentation.model import load_model

    steps = steps or FINE_TUNE_STEPS
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("preparing", total=steps)

        def on_step(step: int, row: dict) -> None:
            if bar.tasks[task].completed == 0 and step > 1:  # a resumed run: the bar starts at its step
                bar.reset(task, completed=step - 1, total=steps)
            bar.update(task, completed=step, description=f"training, loss {row['loss']:.3f}")
            if row["val_dice"] != "":
                bar.console.log(f"step {step}: loss {row['loss']:.4f}, held-out Dice {row['val_dice']}")

        path = fine_tune(out, analyses, init_from=init_from, steps=steps, learning_rate=lr or FINE_TUNE_LEARNING_RATE,
                         validation_share=validation_share, eval_every=eval_every,
                         checkpoint_every=checkpoint_every, resume=resume, num_threads=threads,
                         require_review=not include_unreviewed, max_minutes=max_minutes,
                         patch_size=(patch,) * 3 if patch != 64 else None,
                         on_stage=lambda stage: (bar.console.log(stage), bar.update(task, description=stage[:60])),
                         on_step=on_step)
    record = load_model(path).config.trained_on
    if as_json:
        emit_json({"model": path, "card": path.with_suffix(".card.md"), "heldout_before": record["heldout_before"],
                   "heldout_after": record["heldout_after"]})
        return
    before, after = record["heldout_before"], record["heldout_after"]
    console.print(f"held-out patients: lesion F1 {before['f1']} -> {after['f1']}, sensitivity {before['sensitivity']} "
                  f"-> {after['sensitivity']}, false positives per scan {before['false_positives_per_scan']} -> "
                  f"{after['false_positives_per_scan']} (starting model -> this one)")
    console.print(f"model written to {path} (card: {path.with_suffix('.card.md')}); analyse with "
                  f"`lesion-response analyze INPUT -o OUT --model {path}`")


def calibrate_command(
    model: Path = typer.Argument(..., help="Model file (.pt) to calibrate in place."),
    val_seeds: str = typer.Option("1990-1991", help="Phantom validation seeds, FIRST-LAST (training-reserved)."),
    with_harder: bool = typer.Option(False, help="Also calibrate the lesion threshold on harder versions of the "
                                                 "validation patients (small faint lesions; 60 lesions near hot "
                                                 "organs), as follow-up scans are."),
    threads: int = typer.Option(2, help="torch threads."),
    as_json: bool = json_option("the thresholds"),
) -> None:
    """Re-run a model file's threshold calibrations (as at the end of `train`): the lesion threshold and, for
    models with a physiological output, its threshold; the file and its .json copy are rewritten."""
    import torch

    from LesionResponseLib.segmentation.model import load_model
    from LesionResponseLib.segmentation.training import calibrate_physiological_threshold, calibrate_threshold

    torch.set_num_threads(threads)
    seeds = list(_seed_range(val_seeds))
    thresholds = {"lesion": calibrate_threshold(model, seeds, with_harder=with_harder)}
    if "physiological" in load_model(model).config.outputs:
        thresholds["physiological"] = calibrate_physiological_threshold(model, seeds)
    if as_json:
        emit_json(thresholds)
        return
    for name, value in thresholds.items():
        cli_console().print(f"{name} threshold {value}")


def segment_command(
    input_dir: Path = typer.Argument(..., help="DICOM folder of one patient (all time points)."),
    out: Path = out_option(..., "Output folder; writes OUT/tp{k}.nii.gz per time point."),
    patient: str = patient_option(),
    as_json: bool = json_option("the lesion-ROIs per time point and the written files"),
    params: AnalysisParameters = None,
) -> None:
    """Segment lesion-ROIs at every time point of INPUT and write their label maps (`--segmentation`: the
    shipped model, `threshold`, or a LesionResponse .pt, TorchScript file or MONAI bundle folder)."""
    import SimpleITK as sitk
    from rich.progress import track

    from LesionResponseLib.dicomio import find_timepoints, load_timepoint
    from LesionResponseLib.segmentation.inference import segment

    console = cli_console(stderr=as_json)
    config = params.segmentation
    timepoints = find_timepoints(input_dir, patient=patient).timepoints
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for info in track(timepoints, description="segmenting", console=console):
        loaded = load_timepoint(info)
        labels = segment(loaded.pet_suv, loaded.ct, method=config.method, model_path=config.model_path,
                         min_volume_ml=config.min_roi_volume_ml, equivocal_max_volume_ml=config.equivocal_max_volume_ml,
                         drop_intracranial=config.drop_intracranial)
        path = out / f"tp{info.index}.nii.gz"
        sitk.WriteImage(labels, str(path), useCompression=True)
        written.append({"timepoint": info.index, "study_date": info.study_date, "file": path,
                        "rois": int(sitk.GetArrayViewFromImage(labels).max())})
        console.log(f"time point {info.index} ({info.study_date}): {written[-1]['rois']} lesion-ROIs")
    if as_json:
        emit_json(written)
