"""The ``lesion-response`` command line: a thin face over the library's stages.

Each stage owns its commands in ``LesionResponseLib/<stage>/cli.py`` (a ``register(app)`` function);
heavy imports happen inside the commands so that ``--help`` stays fast. The conventions every command follows
(arguments, ``-o/--out``, ``--json``, errors, exit codes) are :mod:`LesionResponseLib.cli_base`.
"""

from __future__ import annotations

import importlib

import typer

from LesionResponseLib import __version__
from LesionResponseLib.cli_base import new_app

STAGES = ("phantom", "dicomio", "segmentation", "tracking", "analysis", "review", "report")
ORCHESTRATION = ("workflow",)  # commands that combine stages (analyze, demo, cohort-analyze, settings)

app = new_app(help="Lesion-by-lesion response assessment of longitudinal [68Ga]Ga-DOTATATE PET/CT.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lesion-response {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """LesionResponse command line. Run a subcommand with --help for its options."""


for _package in STAGES + ORCHESTRATION:
    importlib.import_module(f"LesionResponseLib.{_package}.cli").register(app)

# The browser review (`review-app`) is a face of its own (LesionResponse/LesionResponseReview, a package installed
# beside this one); its module imports only typer, trame is imported when the command runs.
try:
    _review_face = importlib.import_module("LesionResponseReview.web.cli")
except ModuleNotFoundError as _missing:
    if _missing.name not in ("LesionResponseReview", "LesionResponseReview.web", "LesionResponseReview.web.cli"):
        raise
else:
    _review_face.register(app)

if __name__ == "__main__":
    app()
