"""The analysis settings of the open analysis: each with its value, default, unit, help and where its value came
from (``settings_form.rows``, one per setting of ``LesionResponseLib.config``), editable, and the command line that
re-runs the analysis with the edited values.

The app does not re-run the analysis itself: analysis.json does not record the DICOM folder, the re-run re-applies
the review under the session lock this app holds, and a whole-body analysis takes minutes of CPU; the reader (or
whoever runs analyses) runs the command shown, then opens the folder again."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from trame_server import Server

from LesionResponseLib.errors import LesionResponseError
from LesionResponseReview import settings_form
from LesionResponseReview.web.context import ReviewContext
from LesionResponseReview.web.logic.base import FeatureLogic

NAMESPACE = "settings"  # state keys of this feature
INPUT_PLACEHOLDER = "DICOM_FOLDER"  # the analysis does not record its input folder


@dataclass
class SettingsState:
    rows: list[dict] = field(default_factory=list)  # settings_form.rows of the analysis, values as edited
    command: str = ""  # lesion-response analyze ... with the edited values
    error: str = ""  # why an edited value is refused


class SettingsLogic(FeatureLogic[SettingsState]):
    """Shows the analysis's settings; an edit updates the re-run command (or says why the value is refused)."""

    def __init__(self, server: Server, context: ReviewContext) -> None:
        super().__init__(server, context, SettingsState, NAMESPACE)
        self.edits: dict[str, str] = {}  # setting path -> text typed by the reader
        context.listeners.append(self._on_change)

    def _on_change(self, what: str) -> None:
        if what == "loaded":
            self.edits.clear()
            self._refresh()

    def set_value(self, path: str, text: str) -> None:
        """The reader typed ``text`` for setting ``path``."""
        self.edits[path] = text
        self._refresh()

    def _refresh(self) -> None:
        analysis = self.context.nodes.analysis
        self.data.error = ""
        try:
            params = analysis.parameters.updated(self.edits, source="review app")
        except LesionResponseError as error:
            params, self.data.error = analysis.parameters, str(error)
        rows = settings_form.rows(params)
        for row in rows:
            row["value"] = self.edits.get(row["path"], row["value"])
        self.data.rows = rows
        arguments = settings_form.analyze_arguments(INPUT_PLACEHOLDER, self.context.out_dir, params)
        self.data.command = shlex.join(["lesion-response", *arguments])

    def values(self) -> dict[str, Any]:
        """Setting path -> the value shown (for tests and the log)."""
        return {row["path"]: row["value"] for row in self.data.rows}
