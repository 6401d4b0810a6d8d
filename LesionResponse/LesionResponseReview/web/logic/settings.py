"""The analysis settings of the open analysis: each with its value, default, unit, help and where its value came
from (``settings_form.rows``, one per setting of ``LesionResponseLib.config``), editable; the command line that
re-runs the analysis with the edited values, and the re-run itself.

A re-run is ``lesion-response analyze`` (``settings_form.rerun_arguments``: the input ``analysis.json`` records,
``--config OUT/analysis.json`` and the edited values as ``--set``) in a child process on the same folder, so the
stage cache recomputes only what the changed settings key, and the reader's review is re-applied by it as on the
command line. The lock rule: the app keeps the folder's session lock throughout and hands it to its child
(``SessionLock.handover_environment``), so no other writer (another app, a terminal's ``analyze`` or ``review``)
gets in and the child does not wait for the app; while the child runs the app refuses edits and exports (the
child is the folder's one writer). Whatever the outcome, when the child rewrote ``analysis.json`` the app shows
the new result (its edits re-applied); when it did not (failed or cancelled before writing) the previous analysis
stays open, unchanged. Every re-run is in the audit trail: who, which settings, how it ended."""

from __future__ import annotations

import asyncio
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trame_server import Server

from LesionResponseLib.config import find_setting
from LesionResponseLib.errors import LesionResponseError
from LesionResponseLib.workflow.cli import STAGE_LINE
from LesionResponseReview import mrml, settings_form
from LesionResponseReview.web.context import ReviewContext
from LesionResponseReview.web.logic.base import FeatureLogic

NAMESPACE = "settings"  # state keys of this feature
RERUN_ACTION = "rerun"  # the audit trail's action of a re-run
ERROR_LINES = 6  # last lines of the child's stderr shown when it fails (its `error:` message is the last)


@dataclass
class SettingsState:
    rows: list[dict] = field(default_factory=list)  # settings_form.rows of the analysis, values as edited
    command: str = ""  # lesion-response analyze ... with the edited values
    error: str = ""  # why an edited value is refused
    input_path: str = ""  # the DICOM folder or archive the re-run reads (the recorded one, or typed)
    input_error: str = ""  # why the recorded input cannot be used
    running: bool = False
    stage: str = ""  # the stage the re-run is in
    message: str = ""  # how the last re-run ended
    run_error: str = ""  # why the last re-run failed


class SettingsLogic(FeatureLogic[SettingsState]):
    """Shows the analysis's settings; an edit updates the re-run command (or says why the value is refused);
    Re-run runs it (:meth:`rerun`, :meth:`cancel`)."""

    def __init__(self, server: Server, context: ReviewContext) -> None:
        super().__init__(server, context, SettingsState, NAMESPACE)
        self.edits: dict[str, str] = {}  # setting path -> text typed by the reader
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task | None = None  # the running re-run (a reference keeps it from being collected)
        self._cancelled = False
        context.listeners.append(self._on_change)
        self.bind_changes({self.name.input_path: lambda _v: self._refresh()})

    def _on_change(self, what: str) -> None:
        if what == "loaded":
            self.edits.clear()
            analysis = self.context.nodes.analysis
            try:
                self.data.input_path, self.data.input_error = str(settings_form.recorded_input(
                    analysis, self.context.out_dir)), ""
            except settings_form.RerunInputError as error:
                source = analysis.input_source
                self.data.input_path, self.data.input_error = (source.resolved if source else ""), str(error)
            self._refresh()

    def set_value(self, path: str, text: str) -> None:
        """The reader typed ``text`` for setting ``path``."""
        self.edits[path] = text
        self._refresh()

    def changed(self) -> dict[str, str]:
        """Setting path -> text typed, for the values that differ from the analysis's."""
        params = self.context.nodes.analysis.parameters
        return {path: text for path, text in self.edits.items()
                if find_setting(path).coerce(text) != params.value(path)}

    def _refresh(self) -> None:
        analysis = self.context.nodes.analysis
        self.data.error = ""
        try:
            params = analysis.parameters.updated(self.edits, source="review app")
            changed = self.changed()
        except LesionResponseError as error:
            params, changed, self.data.error = analysis.parameters, {}, str(error)
        rows = settings_form.rows(params)
        for row in rows:
            row["value"] = self.edits.get(row["path"], row["value"])
        self.data.rows = rows
        arguments = settings_form.rerun_arguments(analysis, self.context.out_dir, changed,
                                                  input_path=self._input() or settings_form.INPUT_PLACEHOLDER)
        self.data.command = shlex.join(["lesion-response", *arguments])

    def _input(self) -> str:
        return self.data.input_path.strip()

    def values(self) -> dict[str, Any]:
        """Setting path -> the value shown (for tests and the log)."""
        return {row["path"]: row["value"] for row in self.data.rows}

    # ----- the re-run -----------------------------------------------------------------------------------
    def rerun(self) -> None:
        """Run the analysis again with the edited settings (module docstring) as a task of the server's event loop:
        the click returns at once (nothing awaitable: trame would await it and hold back the page's next messages,
        Cancel included, until it ended), so the views, the table and Cancel keep working while it runs."""
        if not self.data.running and self.context.session is not None:
            self._task = asyncio.get_running_loop().create_task(self._rerun())

    async def _rerun(self) -> None:
        if self.data.running:
            return
        with self.state:
            self.data.run_error, self.data.message = "", ""
            if self.context.busy:  # an export is reading the folder
                self.data.run_error = self.context.busy
                return
            arguments = self._arguments()
            if arguments is None:
                return
            self.data.running, self.data.stage, self._cancelled = True, "starting", False
            self.context.busy = "The analysis is being re-run (Settings tab); edits wait until it ends."
        changed, session, nodes = self.changed(), self.context.session, self.context.nodes
        stamps, before = mrml.image_stamps(nodes), _stamp(self.context.out_dir / "analysis.json")
        self.context.log(f"{self.context.user}: re-run {shlex.join(arguments)}")
        try:
            code, summary, errors = await self._run_child(arguments, session.lock.handover_environment())
        except OSError as error:  # the command could not start
            code, summary, errors = None, {}, [str(error)]
        finally:
            self.context.busy = ""
        rewritten = _stamp(self.context.out_dir / "analysis.json") != before
        outcome = "finished" if code == 0 else "cancelled" if self._cancelled else "failed"
        with self.state:
            self.data.running, self.data.stage = False, ""
            if outcome == "failed":
                self.data.run_error = "\n".join(errors[-ERROR_LINES:]) or f"lesion-response exited with {code}"
            if rewritten:  # the child wrote a whole new analysis (writes are held from a stop request until done)
                try:
                    self._show_result(stamps)
                except LesionResponseError as error:  # the previous analysis stays shown, the lock held
                    self.data.run_error = f"The re-run wrote a new analysis but it cannot be shown: {error}"
                    rewritten = False
            self.data.message = _outcome_text(outcome, rewritten, summary)
            self.context.session.record_event(RERUN_ACTION, {
                "settings": changed, "command": arguments, "outcome": outcome, "rewritten": rewritten,
                "note": f"re-ran the analysis with {_settings_text(changed)}: {self.data.message}"})
            self.context.log(f"{self.context.user}: {self.data.message}")
            self.context.changed("loaded" if rewritten else "edited")

    def _arguments(self) -> list[str] | None:
        """The command's arguments, or None with the reason shown (a refused value, no usable input)."""
        if self.data.error:
            self.data.run_error = f"Not re-run: {self.data.error}"
            return None
        path = self._input()
        if not path or not Path(path).exists():
            self.data.run_error = self.data.input_error if path == self._recorded() and self.data.input_error \
                else f"Not re-run: the DICOM input {path or '(none given)'} does not exist; give the folder " \
                     "(or archive) the analysis was made from."
            return None
        return settings_form.rerun_arguments(self.context.nodes.analysis, self.context.out_dir, self.changed(),
                                             input_path=path) + ["--json"]

    def _recorded(self) -> str:
        source = self.context.nodes.analysis.input_source
        return source.resolved if source else ""

    async def _run_child(self, arguments: list[str], lock_environment: dict[str, str]
                         ) -> tuple[int | None, dict[str, Any], list[str]]:
        """Run ``lesion-response ARGUMENTS`` under the handed-over lock: (exit code, its --json summary, the stderr
        lines that are not stage lines)."""
        import json

        self._process = await asyncio.create_subprocess_exec(
            *settings_form.command(), *arguments, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **lock_environment})
        if self._cancelled:  # Cancel pressed while the process was starting
            self._process.terminate()
        errors: list[str] = []

        async def follow_stderr() -> None:
            async for raw in self._process.stderr:
                line = raw.decode(errors="replace").rstrip()
                if line.startswith(STAGE_LINE):
                    with self.state:
                        self.data.stage = line.removeprefix(STAGE_LINE)
                elif line:
                    errors.append(line)

        output, _ = await asyncio.gather(self._process.stdout.read(), follow_stderr())
        code = await self._process.wait()
        self._process = None
        try:
            summary = json.loads(output) if code == 0 else {}
        except ValueError:
            summary = {}
        return code, summary, errors

    def cancel(self) -> None:
        """Stop the re-run (SIGTERM): stages computed so far stay cached; once it writes the folder it finishes
        that first, then stops (the result is then shown)."""
        if not self.data.running:
            return
        self._cancelled = True
        self.data.stage = "stopping…"
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()  # else terminated as soon as it has started (_run_child)

    def stop(self) -> bool:
        """On the app's exit: stop a running re-run (SIGTERM; it finishes writing the folder first if it had begun);
        True when one was running (the app then leaves its lock file, which names a process that has ended and is
        taken over by the next writer, rather than free the folder while the child may still write)."""
        if self._process is None or self._process.returncode is not None:
            return False
        self._process.terminate()
        return True

    def _show_result(self, stamps: dict[Path, int]) -> None:
        """Reopen the review session over the new analysis (with the lock the app holds) and show it."""
        from LesionResponseLib.review import ReviewSession

        old = self.context.session
        session = ReviewSession.open(self.context.out_dir, user=self.context.user, lock=old.lock)
        self.context.session = session
        mrml.show_rerun(self.context.nodes, session, stamps)


def _stamp(path: Path) -> tuple[int, int] | None:
    return (path.stat().st_mtime_ns, path.stat().st_size) if path.is_file() else None


def _settings_text(changed: dict[str, str]) -> str:
    return ", ".join(f"{path}={text}" for path, text in changed.items()) or "the same settings"


def _outcome_text(outcome: str, rewritten: bool, summary: dict[str, Any]) -> str:
    """What the reader reads after a re-run."""
    if outcome == "finished":
        review = summary.get("review") or {}
        skipped = len(review.get("not_applicable", []))
        return (f"re-run finished: {len(summary.get('computed', []))} stage step(s) computed, "
                f"{len(summary.get('reused', []))} reused from the cache; {review.get('applied', 0)} edit(s) "
                "re-applied" + (f", {skipped} no longer apply (review/not_applicable.json)" if skipped else ""))
    if rewritten:
        return f"re-run {outcome} after it had written the new analysis; that analysis is shown"
    return f"re-run {outcome}; nothing changed (stages computed so far are cached for the next run)"
