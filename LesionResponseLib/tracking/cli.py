"""Command-line commands of the tracking stage."""

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
