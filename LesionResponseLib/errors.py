"""Errors that name the file, the problem and the fix."""

from __future__ import annotations

from pathlib import Path


class LesionResponseError(Exception):
    """Base class of every error the library raises on bad input or state.

    The CLI prints these without a traceback. Build the message with :func:`describe`.
    """


def describe(problem: str, *, path: str | Path | None = None, fix: str | None = None) -> str:
    """A one-line error message: ``<file>: <problem>. <fix>``."""
    text = f"{path}: {problem}" if path else problem
    if fix:
        text = f"{text.rstrip('.')}. {fix}"
    return text
