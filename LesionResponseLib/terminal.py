"""Terminal output shared by the command-line faces."""

from __future__ import annotations

import sys


def cli_console():
    """A rich console: full width on a terminal, 150 columns when piped (logs, CI), so tables do not wrap."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=150)
