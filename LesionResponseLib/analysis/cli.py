"""Command-line command of the analysis stage: ``cohort`` (cohort figures from analysis folders)."""

from __future__ import annotations

from pathlib import Path

import typer

from LesionResponseLib.terminal import cli_console


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
    app.command("cohort")(cohort_command)


def cohort_command(
    analyses: list[Path] = typer.Argument(..., help="Analysis output folders (one per patient)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for cohort.json and cohort.csv."),
) -> None:
    """Cohort figures of the paper (ROIs per image, tracks, heterogeneity, non-monotonic, new/resolved)."""
    from LesionResponseLib.analysis.cohort import write_cohort_figures
    from LesionResponseLib.analysis.outputs import load_analysis
    from LesionResponseLib.errors import LesionResponseError

    console = cli_console()
    try:
        loaded = [load_analysis(folder) for folder in analyses]
    except LesionResponseError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None
    summary = write_cohort_figures(loaded, out)
    for key, value in summary.items():
        console.print(f"{key}: {value}")
    console.print(f"written to {out / 'cohort.json'} and {out / 'cohort.csv'}")
