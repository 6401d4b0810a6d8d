"""Command-line commands of the review stage."""

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the ``lesion-response`` app."""
