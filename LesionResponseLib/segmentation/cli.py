"""Command-line commands of the segmentation stage: ``train`` and ``segment``."""

from __future__ import annotations

from pathlib import Path

import typer

from LesionResponseLib.errors import LesionResponseError


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
    app.command("train")(train_command)
    app.command("segment")(segment_command)


def train_command(
    out: Path = typer.Option(Path("Resources/Models/lesion_segresnet_v1.pt"), "--out", "-o",
                             help="Model file to write (state_dict + config, versioned .pt; a .json copy too)."),
    first_seed: int = typer.Option(1000, help="First synthetic training seed (1000-1999 are reserved)."),
    n_scans: int = typer.Option(24, help="Number of synthetic scans generated for the training pool."),
    steps: int = typer.Option(1300, help="Optimiser steps (2 crops of 64^3 voxels each)."),
    max_minutes: float = typer.Option(None, help="Stop after this many minutes and keep the last checkpoint."),
    eval_every: int = typer.Option(100, help="Validate and checkpoint every N steps."),
    learning_rate: float = typer.Option(2e-3, help="AdamW learning rate (cosine decay)."),
) -> None:
    """Train the lesion segmentation model on synthetic patients; log losses to <out>.log.csv."""
    from rich.console import Console
    from rich.progress import Progress

    from LesionResponseLib.segmentation.training import train

    console = Console()
    try:
        with Progress(console=console) as bar:
            task = bar.add_task("training", total=steps)

            def on_step(step: int, row: dict) -> None:
                bar.update(task, completed=step, description=f"loss {row['loss']:.3f}")
                if row["val_dice"] != "":
                    console.log(f"step {step}: loss {row['loss']:.4f}, validation Dice {row['val_dice']}")

            path = train(out, seeds=range(first_seed, first_seed + n_scans), steps=steps, max_minutes=max_minutes,
                         eval_every=eval_every, learning_rate=learning_rate, on_step=on_step)
    except LesionResponseError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    console.print(f"model written to {path}")


def segment_command(
    input_dir: Path = typer.Argument(..., help="DICOM folder of one patient (all time points)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder; writes OUT/tp{k}.nii.gz per time point."),
    method: str = typer.Option("model", help="'model' (shipped SegResNet), 'threshold' (classical BASELINE: "
                                             "liver-referenced SUV threshold), or a TorchScript/MONAI bundle path."),
    min_volume_ml: float = typer.Option(0.1, help="Drop lesion-ROIs smaller than this (mL)."),
    patient: str = typer.Option(None, help="Patient ID when the folder holds several patients."),
) -> None:
    """Segment lesion-ROIs at every time point of INPUT and write their label maps."""
    import SimpleITK as sitk
    from rich.console import Console
    from rich.progress import track

    from LesionResponseLib.segmentation.inference import segment

    console = Console()
    try:
        from LesionResponseLib.dicomio import find_timepoints, load_timepoint
    except ImportError as error:
        console.print(f"[red]error:[/red] the DICOM reader is unavailable ({error}); reinstall LesionResponse.")
        raise typer.Exit(2) from error
    try:
        timepoints = find_timepoints(input_dir, patient=patient).timepoints
        out.mkdir(parents=True, exist_ok=True)
        for info in track(timepoints, description="segmenting", console=console):
            loaded = load_timepoint(info)
            labels = segment(loaded.pet_suv, loaded.ct, method=method, min_volume_ml=min_volume_ml)
            sitk.WriteImage(labels, str(out / f"tp{info.index}.nii.gz"), useCompression=True)
            n_rois = int(sitk.GetArrayViewFromImage(labels).max())
            console.log(f"time point {info.index} ({info.study_date}): {n_rois} lesion-ROIs")
    except LesionResponseError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
