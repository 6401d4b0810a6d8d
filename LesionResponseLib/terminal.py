"""Terminal output shared by the command-line faces: the console, error messages and ``--json`` output."""

from __future__ import annotations

import json
import math
import sys
from typing import Any


def cli_console(*, stderr: bool = False):
    """A rich console: full width on a terminal, 150 columns when piped (logs, CI), so tables do not wrap.
    ``stderr``: write there (human text of a command whose ``--json`` result goes to stdout, progress,
                             errors)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr) if stream.isatty() else Console(stderr=stderr, width=150)


def print_error(error: BaseException | str, *, warning: bool = False) -> None:
    """``error: <message>`` (or ``warning:``) on stderr, the message printed as is (no markup, no wrapping of
    paths)."""
    from rich.markup import escape

    label = "[yellow]warning:[/yellow]" if warning else "[red]error:[/red]"
    cli_console(stderr=True).print(f"{label} {escape(str(error))}", highlight=False, soft_wrap=True)


def signed_percent(value: float) -> str:
    """A change in percent, rounded to a whole number with its sign (``+32 %``, ``-12 %``); ``±0 %`` for one that
    rounds to nothing (no ``-0 %``). Shared by the terminal summaries and the report's plots and tables."""
    shown = round(value)
    return f"{shown:+d} %" if shown else "±0 %"


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def emit_json(data: Any) -> None:
    """A command's ``--json`` result on stdout (paths as strings, NaN as null)."""
    print(json.dumps(_finite(json.loads(json.dumps(data, default=str))), indent=1))
