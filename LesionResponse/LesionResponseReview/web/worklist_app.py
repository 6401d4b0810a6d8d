"""The cohort worklist app: ``lesion-response review-app OUT`` on a cohort output folder (``OUT/patients/``).
It loads no images; opening a patient starts that patient's review app (logic/worklist.py says why)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from trame.app import TrameApp
from trame.ui.vuetify3 import SinglePageLayout

from LesionResponseReview.web.logic.worklist import IDLE_EXIT_S, WorklistLogic
from LesionResponseReview.web.ui.worklist_ui import build_worklist


class WorklistApp(TrameApp):
    """The patients of one cohort folder and their reviews."""

    def __init__(self, cohort_dir: str | Path, user: str, host: str, token: str | None, server: Any = None,
                 idle_exit: int | None = None) -> None:
        """``idle_exit``: seconds after which a patient's app stops once its page closed (default ``IDLE_EXIT_S``)."""
        super().__init__(server)
        self.cohort_dir = Path(cohort_dir)
        self._logs = tempfile.TemporaryDirectory(prefix="lr-worklist-")
        self.worklist = WorklistLogic(self.server, self.cohort_dir, host, token, user, Path(self._logs.name),
                                      idle_exit or IDLE_EXIT_S)
        self.server.trigger("open_patient")(self.worklist.open)
        self.server.controller.on_server_ready.add_task(lambda **_: self.worklist.keep_current())
        with SinglePageLayout(self.server) as layout:
            layout.title.set_text(f"Cohort worklist: {self.cohort_dir.name}")
            with layout.content:
                build_worklist(self.server)

    def close(self) -> None:
        """Stop the patients' apps it started (their locks are released) and drop their logs."""
        self.worklist.close()
        self._logs.cleanup()
