"""Small helpers of the UI builders."""

from __future__ import annotations

from typing import Any


def tid(name: str, *raw: str) -> dict[str, Any]:
    """Keyword arguments giving an element ``data-testid=name`` (trame drops unknown keywords, so it is a raw
    attribute), plus any other raw attributes (e.g. event bindings)."""
    return {"raw_attrs": [f'data-testid="{name}"', *raw]}
