"""Command-line commands of the tracking stage: ``register`` and ``track``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer

from LesionResponseLib.cli_base import json_option, out_option, patient_option, with_settings
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.errors import describe
from LesionResponseLib.terminal import cli_console, emit_json


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
    app.command("register")(with_settings(register_command, sections=("registration",)))
    app.command("track")(with_settings(track_command, sections=("matching",)))


def register_command(
    input_dir: Path = typer.Argument(..., help="DICOM folder of one patient (all time points)."),
    *, out: Path = out_option(...,
                              "Analysis folder; writes OUT/transforms/tp{i}_to_tp{j}.tfm (.h5 for displacement "
                           "fields) and OUT/transforms/registrations.json."),
    consecutive: bool = typer.Option(False, help="Also register each follow-up to the previous time point."),
    patient: str = patient_option(),
    as_json: bool = json_option("each registration's result"),
    params: AnalysisParameters = None,
) -> None:
    """Register every follow-up to the baseline (rigid + deformable, on CT) and report each registration's quality
    (`--registration`: auto = elastix when an engine is available, else sitk-bspline; elastix = the first
    available of elastix-slicer (SlicerElastix inside Slicer), elastix-program (elastix on PATH) and elastix-itk
    (the itk-elastix package); one of those three; sitk-bspline, sitk-rigid or identity)."""
    from rich.progress import Progress
    from rich.table import Table

    from LesionResponseLib.dicomio import find_timepoints, load_timepoint
    from LesionResponseLib.tracking.registration import register_pair, save_transform, transform_filename

    console = cli_console(stderr=as_json)
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
            transform, result = register_pair(loaded[i], loaded[j], method=params.registration.method)
            result.transform_path = transform_filename(i, j, transform)
            save_transform(transform, out / result.transform_path)
            results.append(result)
            bar.advance(task)
    (out / "transforms" / "registrations.json").write_text(json.dumps([r.to_dict() for r in results], indent=1))
    if as_json:
        emit_json([r.to_dict() for r in results])
        return
    table = Table("pair", "method", "software", "s", "NCC before", "NCC after", "body Dice", "ok", "message")
    for r in results:
        q = r.quality
        table.add_row(f"{r.fixed_timepoint}->{r.moving_timepoint}", r.method, r.software, f"{r.seconds:.1f}",
                      f"{q.get('ncc_before', 0):.3f}", f"{q.get('ncc_after', 0):.3f}",
                      f"{q.get('body_dice_after', 0):.3f}", "yes" if r.ok else "[red]NO[/red]", r.message)
    console.print(table)


def track_command(
    analysis: Path = typer.Argument(..., help="Analysis folder with labels/tp{k}.nii.gz and "
                                              "transforms/tp{i}_to_tp{j}.tfm (or .h5); links.json and tracks.json "
                                              "are written into it."),
    as_json: bool = json_option("the counts of ROIs, links and tracks"),
    params: AnalysisParameters = None,
) -> None:
    """Match the lesion-ROIs of every time point into links and tracks; writes ANALYSIS/links.json and
    ANALYSIS/tracks.json."""
    import SimpleITK as sitk

    from LesionResponseLib.tracking import build_tracks, match_rois
    from LesionResponseLib.tracking.evaluate import label_rois
    from LesionResponseLib.tracking.registration import load_transform
    from LesionResponseLib.tracking.tracks import TrackingError

    label_files = {int(re.findall(r"\d+",
                                  p.name)[0]): p for p in sorted((analysis / "labels").glob("tp*.nii.gz"))}
    if not label_files:
        raise TrackingError(describe("no tp{k}.nii.gz label maps", path=analysis / "labels",
                                     fix="Run lesion-response segment first"))
    labels = {k: sitk.ReadImage(str(p)) for k, p in label_files.items()}
    transforms = {}
    for path in sorted((analysis / "transforms").glob("tp*_to_tp*.*")):
        if path.suffix not in (".tfm", ".h5", ".txt"):
            continue
        i, j = (int(x) for x in re.findall(r"\d+", path.name)[:2])
        transforms[(i, j)] = load_transform(path)
    rois = [r for k, image in labels.items() for r in label_rois(image, k)]
    links = match_rois(labels, rois, transforms, params)
    tracks = build_tracks(rois, links)
    (analysis / "links.json").write_text(json.dumps([x.to_dict() for x in links], indent=1))
    (analysis / "tracks.json").write_text(json.dumps([t.to_dict() for t in tracks], indent=1))
    counts = {"rois": len(rois), "links": {k: sum(1 for x in links if x.kind == k)
                                           for k in ("one-to-one", "split", "merge")}, "tracks": len(tracks)}
    if as_json:
        emit_json(counts)
        return
    cli_console().print(f"{counts['rois']} lesion-ROIs, {len(links)} links {counts['links']}, {counts['tracks']} "
                        f"tracks -> {analysis}")
