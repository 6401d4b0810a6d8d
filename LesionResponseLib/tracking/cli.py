"""Command-line commands of the tracking stage: ``register`` and ``track``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer

from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.errors import LesionResponseError, describe

DEFAULTS = AnalysisParameters()


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
    app.command("register")(register_command)
    app.command("track")(track_command)


def register_command(
    input_dir: Path = typer.Argument(..., help="DICOM folder of one patient (all time points)."),
    out: Path = typer.Option(..., "--out", "-o", help="Analysis folder; writes OUT/transforms/tp{i}_to_tp{j}.tfm "
                                                      "(.h5 for displacement fields) and "
                                                      "OUT/transforms/registrations.json."),
    method: str = typer.Option("auto", help="auto (elastix when an engine is available, else sitk-bspline), "
                                            "elastix (the first available of: elastix-slicer = SlicerElastix "
                                            "inside Slicer, elastix-program = elastix on PATH, elastix-itk = "
                                            "the itk-elastix package), one of those three, sitk-bspline, "
                                            "sitk-rigid or identity."),
    consecutive: bool = typer.Option(False, help="Also register each follow-up to the previous time point."),
    patient: str = typer.Option(None, help="Patient ID when the folder holds several patients."),
) -> None:
    """Register every follow-up to the baseline (rigid + deformable, on CT) and report each registration's quality."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from LesionResponseLib.dicomio import find_timepoints, load_timepoint
    from LesionResponseLib.tracking.registration import register_pair, save_transform, transform_filename

    console = Console()
    try:
        infos = find_timepoints(input_dir, patient=patient).timepoints
        pairs = [(0, j) for j in range(1, len(infos))]
        pairs += [(j - 1, j) for j in range(2, len(infos))] if consecutive else []
        loaded = {}
        results = []
        with Progress(console=console) as bar:
            task = bar.add_task("registering", total=len(pairs))
            for i, j in pairs:
                for k in (i, j):
                    loaded.setdefault(k, load_timepoint(infos[k]))
                transform, result = register_pair(loaded[i], loaded[j], method=method)
                result.transform_path = transform_filename(i, j, transform)
                save_transform(transform, out / result.transform_path)
                results.append(result)
                bar.advance(task)
    except LesionResponseError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    (out / "transforms" / "registrations.json").write_text(json.dumps([r.to_dict() for r in results], indent=1))
    table = Table("pair", "method", "software", "s", "NCC before", "NCC after", "body Dice", "ok", "message")
    for r in results:
        q = r.quality
        table.add_row(f"{r.fixed_timepoint}->{r.moving_timepoint}", r.method, r.software, f"{r.seconds:.1f}",
                      f"{q.get('ncc_before', 0):.3f}", f"{q.get('ncc_after', 0):.3f}",
                      f"{q.get('body_dice_after', 0):.3f}", "yes" if r.ok else "[red]NO[/red]", r.message)
    console.print(table)


def track_command(
    out: Path = typer.Argument(..., help="Analysis folder with labels/tp{k}.nii.gz and "
                                                            "transforms/tp{i}_to_tp{j}.tfm (or .h5)."),
    dilation_mm: float = typer.Option(DEFAULTS.matching.dilation_mm, help="Conformal dilation of each lesion-ROI before overlap (mm)."),
    max_match_distance_mm: float = typer.Option(DEFAULTS.matching.max_distance_mm, help="Largest centroid distance of a link after "
                                                          "registration (mm)."),
    min_overlap: float = typer.Option(DEFAULTS.matching.min_overlap, help="Smallest overlap coefficient of two dilated ROIs (0-1)."),
) -> None:
    """Match the lesion-ROIs of every time point into links and tracks; writes OUT/links.json and OUT/tracks.json."""
    import SimpleITK as sitk
    from rich.console import Console

    from LesionResponseLib.tracking import build_tracks, match_rois
    from LesionResponseLib.tracking.evaluate import label_rois
    from LesionResponseLib.tracking.registration import load_transform
    from LesionResponseLib.tracking.tracks import TrackingError

    console = Console()
    try:
        label_files = {int(re.findall(r"\d+", p.name)[0]): p for p in sorted((out / "labels").glob("tp*.nii.gz"))}
        if not label_files:
            raise TrackingError(describe("no tp{k}.nii.gz label maps", path=out / "labels",
                                         fix="Run lesion-response segment first"))
        labels = {k: sitk.ReadImage(str(p)) for k, p in label_files.items()}
        transforms = {}
        for path in sorted((out / "transforms").glob("tp*_to_tp*.*")):
            if path.suffix not in (".tfm", ".h5", ".txt"):
                continue
            i, j = (int(x) for x in re.findall(r"\d+", path.name)[:2])
            transforms[(i, j)] = load_transform(path)
        rois = [r for k, image in labels.items() for r in label_rois(image, k)]
        params = AnalysisParameters().updated({"matching.dilation_mm": dilation_mm,
                                               "matching.max_distance_mm": max_match_distance_mm,
                                               "matching.min_overlap": min_overlap})
        links = match_rois(labels, rois, transforms, params)
        tracks = build_tracks(rois, links)
    except LesionResponseError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from error
    (out / "links.json").write_text(json.dumps([x.to_dict() for x in links], indent=1))
    (out / "tracks.json").write_text(json.dumps([t.to_dict() for t in tracks], indent=1))
    kinds = {k: sum(1 for x in links if x.kind == k) for k in ("one-to-one", "split", "merge")}
    console.print(f"{len(rois)} lesion-ROIs, {len(links)} links {kinds}, {len(tracks)} tracks -> {out}")
