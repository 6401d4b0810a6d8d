"""The cohort worklist: every patient of a cohort output folder (``OUT/patients/<id>/``) with where its review
stands (tracks reviewed, queue items left, who reviewed and when, who has it open), and opening one.

trame serves one shared state to every browser, so each opened patient gets a review app of its own (a child
process on another port, as trame's launcher does for multi-user apps): it holds the patient's review lock while
the reader has it open and stops ``IDLE_EXIT_S`` after the reader's page closes, releasing it. A patient open by
one reader shows the lock to every other browser (the list is re-read every ``REFRESH_S``) and refuses a second
opening."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trame_server import Server

NAMESPACE = "worklist"
REFRESH_S = 2.0  # how often the list is re-read (locks taken and released by other readers' apps)
IDLE_EXIT_S = 20  # a patient's app stops this long after its last page closed (its lock is then free)
START_TIMEOUT_S = 240.0  # loading a whole-body patient with 7 time points into Slicer's scene on a busy machine


@dataclass
class WorklistState:
    rows: list[dict] = field(default_factory=list)
    summary: str = ""


def worklist_rows(cohort_dir: Path) -> list[dict]:
    """One row per patient folder: id, state (reviewed / in review / not started / not analysed / failed), tracks
    reviewed of all, queue items left (and how many of them the queue flags), reviewers, last edit, lock holder."""
    from LesionResponseLib.review.status import review_status
    from LesionResponseLib.workflow.cohort import patient_folders

    rows = []
    for name, folder, error in patient_folders(cohort_dir):
        status = review_status(folder)
        if error and not status.analysed:
            state = "failed"
        elif not status.analysed:
            state = "not analysed"
        elif status.left == 0:
            state = "reviewed"
        else:
            state = "in review" if status.reviewed or status.reviewers else "not started"
        rows.append({"patient": name, "state": state, "error": error or "",
                     "reviewed": f"{status.reviewed} of {status.tracks}" if status.analysed else "",
                     "left": status.left, "flagged": status.flagged_left, "reviewers": ", ".join(status.reviewers),
                     "last": status.last_review.replace("T", " ")[:16], "locked_by": status.locked_by or ""})
    return rows


def child_command(folder: Path, port: int, user: str, host: str, token: str | None, idle_exit: int) -> list[str]:
    """The ``lesion-response review-app`` of one patient folder, stopping ``idle_exit`` s after its page closed."""
    command = [sys.executable, "-m", "LesionResponseLib.cli", "review-app", str(folder), "--host", host, "--port",
               str(port), "--user", user, "--idle-exit", str(idle_exit)]
    return command + (["--token", token] if token else [])


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class _Child:
    process: subprocess.Popen
    port: int
    user: str
    log: Path


class WorklistLogic:
    """Keeps the list current and opens patients (one child review app each)."""

    def __init__(self, server: Server, cohort_dir: Path, host: str, token: str | None, user: str,
                 log_dir: Path, idle_exit: int = IDLE_EXIT_S) -> None:
        from LesionResponseReview.web.logic.base import typed_state

        self.server = server
        self.cohort_dir = cohort_dir
        self.host, self.token, self.user, self.idle_exit = host, token, user, idle_exit
        self.log_dir = log_dir
        self.children: dict[str, _Child] = {}
        self._typed = typed_state(server, WorklistState, NAMESPACE)
        self.refresh()

    @property
    def data(self) -> WorklistState:
        return self._typed.data

    def refresh(self) -> None:
        """Re-read every patient's review status (and forget the apps that stopped)."""
        self.children = {p: c for p, c in self.children.items() if c.process.poll() is None}
        rows = worklist_rows(self.cohort_dir)
        self.data.rows = rows
        left = sum(r["state"] not in ("reviewed", "failed", "not analysed") for r in rows)
        self.data.summary = f"{len(rows)} patients, {left} with tracks left to review"

    async def keep_current(self) -> None:
        """Refresh the list every :data:`REFRESH_S` while the server runs."""
        while True:
            await asyncio.sleep(REFRESH_S)
            with self.server.state:
                self.refresh()

    async def open(self, patient: str, user: str | None = None) -> dict[str, Any]:
        """Start the review app of ``patient`` for ``user`` (default: the worklist's) and return its ``port`` once it
        serves, or an ``error`` saying who has it open (or why it could not start)."""
        from LesionResponseLib.workflow.cohort import PATIENTS

        user = (user or "").strip() or self.user
        folder = self.cohort_dir / PATIENTS / patient
        row = next((r for r in worklist_rows(self.cohort_dir) if r["patient"] == patient), None)
        if row is None or not (folder / "analysis.json").is_file():
            return {"error": f"{patient}: no analysis to review" + (f" ({row['error']})" if row and row["error"] else "")}
        child = self.children.get(patient)
        if child is not None and child.process.poll() is None:
            if child.user == user:
                return {"port": child.port}  # the same reader again (a second tab, a reload)
            return {"error": f"{patient} is open by {child.user}"}
        if row["locked_by"]:
            return {"error": f"{patient} is open by {row['locked_by']}"}
        port = free_port()
        log = self.log_dir / f"{patient}-{port}.log"
        with open(log, "ab") as handle:
            process = subprocess.Popen(child_command(folder, port, user, self.host, self.token, self.idle_exit),
                                       stdout=handle,
                                       stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.children[patient] = _Child(process, port, user, log)
        started = time.monotonic()
        while time.monotonic() - started < START_TIMEOUT_S:
            await asyncio.sleep(0.3)
            text = log.read_text(errors="replace")
            if process.poll() is not None:
                self.children.pop(patient, None)
                return {"error": f"{patient} could not be opened: {text.strip().splitlines()[-1] if text.strip() else 'the app stopped'}"}
            if "review running" in text:
                with self.server.state:
                    self.refresh()
                return {"port": port}
        process.terminate()
        self.children.pop(patient, None)
        return {"error": f"{patient} did not open within {START_TIMEOUT_S:.0f} s"}

    def close(self) -> None:
        """Stop the patients' apps this worklist started (each releases its lock)."""
        for child in self.children.values():
            if child.process.poll() is None:
                child.process.terminate()
        for child in self.children.values():
            try:
                child.process.wait(30)
            except subprocess.TimeoutExpired:
                child.process.kill()
