"""What every feature of the web app shares: the analysis folder, the reader, the MRML nodes, the review
session, and a way to tell the other features that something changed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHANGES = ("loaded", "edited", "selected", "display")  # what a listener may be told


@dataclass
class ReviewContext:
    """Shared by the logic classes; ``changed(what)`` calls every listener (``what`` in :data:`CHANGES`)."""

    out_dir: Path
    user: str
    slicer_app: Any
    nodes: Any = None  # mrml.LoadedNodes once loaded
    session: Any = None  # LesionResponseLib.review.ReviewSession (holds the folder's lock)
    linker: Any = None  # mrml.ViewLinker
    views: dict[int, Any] = field(default_factory=dict)  # time point -> trame-slicer SliceView
    pacs: tuple[str, int, str] | None = None  # (host, port, called AE title) of the export target
    log: Callable[[str], None] = print  # the terminal line of the running server
    busy: str = ""  # why the app may not write the folder now (a re-run writes it), shown to a refused edit
    listeners: list[Callable[[str], None]] = field(default_factory=list)

    def changed(self, what: str) -> None:
        for listener in list(self.listeners):
            listener(what)

    def quietly(self, action: Callable[[], Any]) -> Any:
        """Move views without their linked neighbours following (see ``mrml.ViewLinker.quietly``)."""
        return self.linker.quietly(action) if self.linker is not None else action()
