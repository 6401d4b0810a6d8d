"""Command-line commands of the phantom stage: ``phantom``, ``phantom-cohort`` and ``mip``."""

from __future__ import annotations

from pathlib import Path

import typer

from LesionResponseLib.cli_base import json_option, out_option, patient_option
from LesionResponseLib.terminal import cli_console, emit_json


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
    app.command("phantom")(phantom)
    app.command("mip")(mip)
    app.command("phantom-cohort")(phantom_cohort)


def phantom(
    *, out: Path = out_option(..., "Folder to write the phantom patient into."),
    seed: int = typer.Option(1, help="Random seed: the same seed gives the same patient."),
    timepoints: int = typer.Option(4, min=2, max=7, help="Number of scans (2–7)."),
    vendor: str = typer.Option("siemens", help="DICOM flavour: siemens, siemens-admin, philips, ge, gml."),
    lesions: int = typer.Option(None, help="Number of lesions (default: 12–40 drawn from the seed; 0: none)."),
    extras: bool = typer.Option(True, help="Also write a localizer and a NAC PET per study (to be ignored)."),
    small_lesions: bool = typer.Option(False, help="Harder patient: baseline lesion volumes 0.1–4 mL."),
    low_contrast: bool = typer.Option(False, help="Harder patient: lesion SUVmean 6–18 (1.2–4× liver)."),
    near_organs: float = typer.Option(0.0, min=0.0, max=1.0,
                                      help="Harder patient: fraction of lesions 2–6 mm from spleen, kidney, adrenal."),
    domain: str = typer.Option(None, help="Another site's scans: a named domain of LesionResponseLib.phantom.domain "
                                          "(site-b: 3 mm voxels, correlated noise, textured organs, lobulated and "
                                          "rim-enhancing lesions; docs/site-adaptation.md)."),
    axial_extent_mm: float = typer.Option(None, help="Scan only this length (mm) around the upper abdomen."),
    as_json: bool = json_option("the ground truth (truth.json)"),
) -> None:
    """Generate a synthetic longitudinal [68Ga]DOTATATE PET/CT patient as DICOM, with ground truth."""
    from rich.progress import Progress

    from LesionResponseLib.phantom import generate_patient, load_truth
    from LesionResponseLib.phantom.domain import domain_named

    console = cli_console(stderr=as_json)
    site = domain_named(domain) if domain else None
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("simulating scans", total=timepoints)
        generate_patient(out, seed=seed, timepoints=timepoints, vendor=vendor, extras=extras,
                         n_lesions=lesions, progress=lambda done, total: bar.update(task, completed=done),
                         small_lesions=small_lesions, low_contrast=low_contrast, near_organs=near_organs,
                         domain=site, axial_extent_mm=axial_extent_mm)
    if as_json:
        emit_json(load_truth(out))
        return
    describe_patient(load_truth(out), console)
    console.print(f"written to {out} (DICOM in {out / 'dicom'}, MIPs in {out / 'mip'})")


def describe_patient(truth: dict, console) -> None:
    """Print the time points and the truth categories of a phantom patient."""
    from collections import Counter

    from rich.table import Table

    table = Table(title=f"Phantom {truth['patient_id']} ({truth['vendor']}, seed {truth['seed']})")
    for col in ("TP", "date", "weight kg", "activity MBq", "uptake min", "lesions", "truth categories"):
        table.add_column(col)
    for tp in truth["timepoints"]:
        k = tp["index"]
        present = sum(1 for le in truth["lesions"] if le["timepoints"][str(k)]["present"])
        cats = Counter(c["categories"][str(k)] for c in truth["tracks"].values()) if k else {}
        table.add_row(str(k), tp["study_date"], f"{tp['weight_kg']:.1f}", f"{tp['injected_activity_bq'] / 1e6:.0f}",
                      f"{tp['uptake_time_s'] / 60:.0f}", str(present),
                      ", ".join(f"{n} {c}" for c, n in sorted(cats.items())) or "baseline")
    console.print(table)
    flags = ", ".join(f"TP{k}: {'yes' if v else 'no'}" for k, v in truth["heterogeneous"].items())
    console.print(f"tracks: {len(truth['tracks'])}; heterogeneous response: {flags}")


def mip(
    input_dir: Path = typer.Argument(..., help="A DICOM folder (or a phantom folder) with PET time points."),
    out: Path = out_option(None, "Where to write PNGs (default: INPUT/mip)."),
    patient: str = patient_option(),
    vmax: float = typer.Option(10.0, help="Upper end of the SUV display window."),
    as_json: bool = json_option("the PNG paths"),
) -> None:
    """Write a coronal PET MIP (SUV) per time point, read from DICOM, and a montage ``all.png``."""
    from LesionResponseLib.dicomio import find_timepoints, load_timepoint
    from LesionResponseLib.phantom.mip import save_mips

    images, titles = [], []
    for info in find_timepoints(input_dir, patient=patient).timepoints:
        images.append(load_timepoint(info, with_ct=False).pet_suv)
        titles.append(f"TP{info.index} {info.study_date}")
    paths = save_mips(images, out or Path(input_dir) / "mip", titles, window=(0.0, vmax))
    if as_json:
        emit_json([str(p) for p in paths])
        return
    cli_console().print("\n".join(str(p) for p in paths), highlight=False)


def phantom_cohort(
    *, out: Path = out_option(..., "Folder for the cohort (one phantom folder per patient)."),
    patients: int = typer.Option(18, min=1, help="Number of patients (18 = the paper's cohort, 67 scans)."),
    seed: int = typer.Option(1, help="Seed of the first patient; patient i gets seed + i."),
    axial_extent_mm: float = typer.Option(None, help="Scan only this length (mm) around the upper abdomen "
                                          "(small, fast patients for tests and quick runs)."),
    lesions: int = typer.Option(None, help="Lesions per patient (default: 12–40 drawn from each seed)."),
    extras: bool = typer.Option(True, help="Also write a localizer and a NAC PET per study (to be ignored)."),
    as_json: bool = json_option("the manifest path"),
) -> None:
    """Generate a synthetic cohort like the paper's (2–7 scans per patient, mixed vendors) with ground truth."""
    from rich.progress import Progress

    from LesionResponseLib.phantom.cohort import generate_cohort

    console = cli_console(stderr=as_json)
    with Progress(console=console) as bar:
        task = bar.add_task("generating patients", total=patients)
        generate_cohort(out, patients=patients, seed=seed, axial_extent_mm=axial_extent_mm,
                        n_lesions=lesions, extras=extras,
                        progress=lambda done, total, _pid: bar.update(task, completed=done))
    if as_json:
        emit_json({"out": out, "manifest": out / "manifest.csv"})
        return
    console.print(f"written to {out} (manifest: {out / 'manifest.csv'}); analyse it with "
                  f"`lesion-response cohort-analyze {out / 'manifest.csv'} -o OUT`")
