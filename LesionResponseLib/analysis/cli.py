"""Command-line command of the analysis stage: ``cohort`` (cohort figures from analysis folders)."""

from __future__ import annotations

from pathlib import Path

import typer

from LesionResponseLib.cli_base import json_option, out_option
from LesionResponseLib.terminal import cli_console, emit_json


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
    app.command("cohort")(cohort_command)


def cohort_command(
    analyses: list[Path] = typer.Argument(..., help="Analysis output folders (one per patient)."),
    out: Path = out_option(..., "Folder for cohort.json and cohort.csv."),
    as_json: bool = json_option("the cohort figures"),
) -> None:
    """Cohort figures of the paper (ROIs per image, tracks, heterogeneity, non-monotonic, new/resolved)."""
    from LesionResponseLib.analysis.cohort import write_cohort_figures
    from LesionResponseLib.analysis.outputs import load_analysis

    summary = write_cohort_figures([load_analysis(folder) for folder in analyses], out)
    if as_json:
        emit_json(summary)
        return
    console = cli_console()
    for key, value in summary.items():
        console.print(f"{key}: {value}")
    console.print(f"written to {out / 'cohort.json'} and {out / 'cohort.csv'}")
