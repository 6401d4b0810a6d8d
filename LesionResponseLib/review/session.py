"""A reader's review session over an analysis output folder, with undo/redo, audit trail and crash safety.

Files (all under ``OUT/review/``):

- ``base/`` — the automatic analysis (``analysis.json``, ``labels/``) as it was when the review started.
- ``session.json`` — the applied edits in order (id, user, UTC time, type, parameters, ROI fingerprints,
  tracks and categories before/after) and the redo stack. This is the source of truth.
- ``audit.jsonl`` — append-only log of everything done, including undo and redo.
- ``masks/`` — reader-drawn masks of add/edit edits, on the PET grid.
- ``not_applicable.json`` — edits a re-run of the analysis made impossible (never silently dropped).

State = base + replay of the applied edits. Undo drops the last edit and replays the rest from the base, so
the outputs after an undo are byte-for-byte those before the edit. Every save stages all files in
``review/.staging/``, writes a commit manifest, then moves them in place (session.json last); a crash
before the manifest leaves the previous session and outputs untouched, a crash after it is rolled forward
the next time the session is opened.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.datamodel import Analysis
from LesionResponseLib.errors import describe
from LesionResponseLib.review.edits import (
    AddRoi,
    ApplyContext,
    Edit,
    EditRoi,
    ImportRois,
    LinkRois,
    MarkReviewed,
    MergeTracks,
    MoveReferenceRegion,
    RejectRoi,
    RejectRois,
    RestoreRoi,
    SetRoiSite,
    SplitTrack,
    UnlinkRoi,
    edit_from_dict,
    track_roi_ids,
)
from LesionResponseLib.review.state import (
    Engine,
    ReviewState,
    load_mask,
    roi_fingerprint,
    summary_diff,
    track_summary,
)
from LesionResponseLib.review.store import (
    ReviewError,
    SessionLock,
    append_jsonl,
    atomic_write_bytes,
    json_bytes,
    read_json,
    session_lock,
)

SESSION_SCHEMA = 1
MANIFEST = "COMMIT.json"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_user() -> str:
    """The operating-system user name (``"unknown"`` when it cannot be determined)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def label_files(folder: Path) -> dict[int, Path]:
    """Time point -> ``labels/tp{k}.nii.gz`` found under ``folder``."""
    found = {}
    for path in (folder / "labels").glob("tp*.nii.gz"):
        stem = path.name[2:].split(".")[0]
        if stem.isdigit():
            found[int(stem)] = path
    return found


def load_state(folder: Path) -> ReviewState:
    """The state stored in ``folder`` (``analysis.json`` + ``labels/tp{k}.nii.gz``)."""
    path = folder / "analysis.json"
    if not path.exists():
        raise ReviewError(describe("no analysis.json here", path=folder,
                                   fix="Run `lesion-response analyze INPUT -o OUT` first and review OUT"))
    try:
        analysis = Analysis.from_dict(read_json(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise ReviewError(describe(f"not a valid analysis ({exc})", path=path,
                                   fix="Re-run `lesion-response analyze`")) from exc
    labels = {tp: sitk.ReadImage(str(p)) for tp, p in sorted(label_files(folder).items())}
    max_id = max([0] + [t.track_id for t in analysis.tracks])
    return ReviewState(analysis, labels, max_id)


def snapshot_base(out: Path, base: Path) -> None:
    """Copy the automatic analysis (analysis.json, labels/) of ``out`` to ``base`` (replacing it)."""
    tmp = base.with_name(base.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "labels").mkdir(parents=True)
    shutil.copy2(out / "analysis.json", tmp / "analysis.json")
    for path in label_files(out).values():
        shutil.copy2(path, tmp / "labels" / path.name)
    shutil.rmtree(base, ignore_errors=True)
    os.replace(tmp, base)


def roll_forward(review_dir: Path, out: Path) -> bool:
    """Finish an interrupted save (manifest present) or discard an unfinished one; True if rolled forward."""
    staging = review_dir / ".staging"
    manifest = staging / MANIFEST
    if not manifest.exists():
        shutil.rmtree(staging, ignore_errors=True)
        return False
    for rel in json.loads(manifest.read_text(encoding="utf-8"))["files"]:
        source = staging / rel
        if source.exists():
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, out / rel)
    shutil.rmtree(staging, ignore_errors=True)
    return True


class ReviewSession:
    """Reader edits over one analysis folder. Open with :meth:`open`; use as a context manager to unlock."""

    def __init__(self, out_dir: Path, user: str, *, engine: Engine, lock: SessionLock,
                 suv: Callable[[int], sitk.Image] | None = None, autosave: bool = True) -> None:
        self.out = out_dir
        self.dir = out_dir / "review"
        self.user = user
        self.engine = engine
        self.lock = lock
        self.autosave = autosave
        self.applied: list[dict[str, Any]] = []
        self.redo_stack: list[dict[str, Any]] = []
        self._suv_cache: dict[int, sitk.Image] = {}
        self._organs_cache: dict[int, Any] = {}
        self._suv = suv
        self.base = load_state(self.dir / "base")
        self.state = self.base.copy()

    # ----- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, out_dir: str | Path, user: str | None = None, *, engine: Engine | None = None,
             suv: Callable[[int], sitk.Image] | None = None, autosave: bool = True,
             load_edits: bool = True, lock: SessionLock | None = None) -> ReviewSession:
        """Open (or start) the review of ``out_dir``; takes the session lock (ReviewError if held).

        ``user`` defaults to the OS user; ``engine`` to the tracking/analysis stage functions; ``suv`` (time
        point -> SUV image) to ``OUT/suv/tp{k}.nii.gz`` or the time point's DICOM files.
        ``autosave`` saves after every edit, undo and redo (nothing is lost if the program stops).
        ``load_edits=False`` starts from the base without replaying ``session.json`` (used by re-runs).
        ``lock``: the folder's lock (:func:`session_lock`), already taken by the caller; the session releases it on
        close (a re-run writes under the lock it took first; the app reopens its session after a re-run with it).
        """
        out = Path(out_dir)
        if not (out / "analysis.json").exists():
            raise ReviewError(describe("no analysis.json here", path=out,
                                       fix="Run `lesion-response analyze INPUT -o OUT` first and review OUT"))
        own_lock = lock is None  # a lock the caller took stays taken if opening fails
        if lock is None:
            lock = session_lock(out, user or default_user())
            lock.acquire()
        try:
            repaired = roll_forward(out / "review", out)
            if not (out / "review" / "base" / "analysis.json").exists():
                snapshot_base(out, out / "review" / "base")
            session = cls(out, user or default_user(), engine=engine or Engine.default(), lock=lock, suv=suv,
                          autosave=autosave)
            if load_edits:
                session._load()
            if repaired:
                session._log("repair", {"note": "completed a save interrupted by a crash"})
        except BaseException:
            if own_lock:
                lock.release()
            raise
        return session

    def _load(self) -> None:
        path = self.dir / "session.json"
        if not path.exists():
            return
        data = read_json(path)
        self.applied, self.redo_stack = list(data.get("edits", [])), list(data.get("redo", []))
        self.state = self.replay(self.applied)
        self.state.analysis.audit = self.history()

    def close(self) -> None:
        """Release the session lock."""
        self.lock.release()

    def __enter__(self) -> ReviewSession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ----- applying ------------------------------------------------------------------------------
    def context(self) -> ApplyContext:
        """What edits need to apply: the engine, the review folder, the SUV PET and organ providers."""
        return ApplyContext(self.engine, self.dir, self.suv, self.organs)

    def organs(self, timepoint: int) -> Any:
        """The organs of ``timepoint`` found by the analysis (``OUT/anatomy/tp{k}.nii.gz``), None without it."""
        if timepoint not in self._organs_cache:
            path = self.out / "anatomy" / f"tp{timepoint}.nii.gz"
            organs = None
            if path.is_file():
                from LesionResponseLib.segmentation.organs import Organs

                organs = Organs.from_image(sitk.ReadImage(str(path)))
            self._organs_cache[timepoint] = organs
        return self._organs_cache[timepoint]

    def suv(self, timepoint: int) -> sitk.Image:
        """SUV PET of ``timepoint`` (``suv`` callback, ``OUT/suv/tp{k}.nii.gz`` or the DICOM files)."""
        if timepoint not in self._suv_cache:
            self._suv_cache[timepoint] = self._load_suv(timepoint)
        return self._suv_cache[timepoint]

    def _load_suv(self, timepoint: int) -> sitk.Image:
        if self._suv is not None:
            return self._suv(timepoint)
        path = self.out / "suv" / f"tp{timepoint}.nii.gz"
        if path.exists():
            return sitk.ReadImage(str(path), sitk.sitkFloat32)
        info = self.state.analysis.timepoints[timepoint]
        if info.pet_files and all(Path(f).exists() for f in info.pet_files):
            from LesionResponseLib.dicomio import load_timepoint

            return load_timepoint(info, with_ct=False).pet_suv
        raise ReviewError(describe(f"the SUV PET of time point {timepoint} is not reachable", path=path,
                                   fix="Keep the DICOM files where analyze found them, or re-run analyze"))

    def replay(self, records: list[dict[str, Any]], start: ReviewState | None = None) -> ReviewState:
        """The base state (or ``start``) with ``records`` applied in order."""
        state = (start or self.base).copy()
        ctx = self.context()
        for record in records:
            edit_from_dict(record["edit"]).apply(state, ctx, record["id"])
        return state

    def apply(self, edit: Edit) -> dict[str, Any]:
        """Apply ``edit`` (refused with ReviewError on conflict), record it, clear redo, save; the record."""
        edit_id = uuid.uuid4().hex[:12]
        edit = self._stage_mask(edit, edit_id)
        before = track_summary(self.state)
        anchors = edit.anchors(self.state) if not isinstance(edit, AddRoi) else {}
        try:
            fingerprints = {rid: roi_fingerprint(self.state, rid) for rid in set(anchors.values())}
            state = edit.apply(self.state.copy(), self.context(), edit_id)
        except BaseException:
            if isinstance(edit, AddRoi | EditRoi):
                (self.dir / edit.mask).unlink(missing_ok=True)
            for item in edit.rois if isinstance(edit, ImportRois) else ():
                (self.dir / item["mask"]).unlink(missing_ok=True)
            raise
        record = {"id": edit_id, "user": self.user, "time": _now(), "type": edit.TYPE, "edit": edit.to_dict(),
                  "anchors": anchors, "fingerprints": fingerprints,
                  "created_roi": state.created.get(edit_id), **summary_diff(before, track_summary(state))}
        self.state = state
        self.applied.append(record)
        self.redo_stack.clear()
        self._autosave()  # saved first: an edit in audit.jsonl is an edit in the outputs
        self._log("apply", _public(record))
        return record

    def _stage_mask(self, edit: Edit, edit_id: str) -> Edit:
        """Copy an add/edit mask onto the PET grid into ``review/masks/`` (the edit then names that copy)."""
        if isinstance(edit, ImportRois):
            return self._stage_import(edit, edit_id)
        if not isinstance(edit, AddRoi | EditRoi):
            return edit
        tp = edit.timepoint if isinstance(edit, AddRoi) else self.state.roi(edit.roi_id).timepoint
        self.state.label_array(int(tp))
        mask = load_mask(edit.mask, self.state.labels[int(tp)])
        rel = f"masks/{edit_id}.nii.gz"
        (self.dir / "masks").mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(mask, str(self.dir / rel), True)
        edit.mask = rel
        return edit

    def _stage_import(self, edit: ImportRois, edit_id: str) -> ImportRois:
        """Copy each imported structure's mask onto its time point's PET grid into ``review/masks/``."""
        (self.dir / "masks").mkdir(parents=True, exist_ok=True)
        staged = []
        for i, item in enumerate(edit.rois):
            tp = int(item["timepoint"])
            self.state.label_array(tp)
            rel = f"masks/{edit_id}-{i}.nii.gz"
            sitk.WriteImage(load_mask(item["mask"], self.state.labels[tp]), str(self.dir / rel), True)
            staged.append({"timepoint": tp, "mask": rel, "name": str(item.get("name", ""))})
        edit.rois = staged
        return edit

    # ----- the edits -----------------------------------------------------------------------------
    def link(self, roi_a: str, roi_b: str, allow_split_merge: bool = False) -> dict[str, Any]:
        """Put two ROIs of different time points in one track."""
        return self.apply(LinkRois(roi_a, roi_b, allow_split_merge))

    def unlink(self, roi_id: str) -> dict[str, Any]:
        """Take a ROI out of its track (also blocks the automatic links from returning on a re-run)."""
        return self.apply(UnlinkRoi(roi_id))

    def merge(self, track_a: int, track_b: int) -> dict[str, Any]:
        """Join two tracks."""
        return self.apply(MergeTracks(int(track_a), int(track_b)))

    def split(self, track_id: int, timepoint: int) -> dict[str, Any]:
        """Cut a track: ROIs from ``timepoint`` on form a new track."""
        return self.apply(SplitTrack(int(track_id), int(timepoint)))

    def reject(self, roi_id: str, reason: str = "") -> dict[str, Any]:
        """Mark a ROI as not a lesion (physiological uptake, artefact)."""
        return self.apply(RejectRoi(roi_id, reason))

    def reject_track(self, track_id: int, reason: str = "") -> dict[str, Any]:
        """Mark every ROI of a track as not a lesion, as one edit (physiological uptake found on every scan)."""
        return self.apply(RejectRois(track_roi_ids(self.state, int(track_id)), reason))

    def restore(self, roi_id: str) -> dict[str, Any]:
        """Accept a rejected ROI again."""
        return self.apply(RestoreRoi(roi_id))

    def mark_reviewed(self, track_id: int) -> dict[str, Any]:
        """Mark a track reviewed: it leaves what is left of the review queue (undo takes the mark back)."""
        return self.apply(MarkReviewed(int(track_id)))

    def add_roi(self, timepoint: int, mask: sitk.Image | str | Path) -> dict[str, Any]:
        """Add a reader-drawn ROI (mask on any grid; resampled to the PET grid). Link it explicitly."""
        return self.apply(AddRoi(int(timepoint), mask))  # type: ignore[arg-type]

    def edit_roi(self, roi_id: str, mask: sitk.Image | str | Path) -> dict[str, Any]:
        """Replace a ROI's voxels with ``mask`` and re-measure it."""
        return self.apply(EditRoi(roi_id, mask))  # type: ignore[arg-type]

    def import_rois(self, structures: list[dict[str, Any]], source: str = "") -> dict[str, Any]:
        """Import reference structures (``{"timepoint", "mask": image or file, "name"}``) as reader ROIs in one edit
        (``edits.ImportRois``: replacing the ROIs they overlap, linked by name across time points)."""
        return self.apply(ImportRois([dict(s) for s in structures], source))

    def reference_edit(self, paths: list[str | Path], timepoint: int | None = None,
                       names: str | None = None) -> tuple[ImportRois, list[dict[str, Any]]]:
        """The :class:`edits.ImportRois` of a site's reference contours (RTSTRUCT, SEG, label maps:
        ``dicomio.contours.read_reference``, onto each time point's PET grid), and the structures left out and why.
        The faces apply it as any typed edit."""
        from LesionResponseLib.dicomio.contours import read_reference

        found = read_reference(paths, self.state.analysis.timepoints, self.suv, timepoint, names)
        if not found.structures:
            raise ReviewError(describe("no reference structure to import", path=", ".join(str(p) for p in paths),
                                       fix="Check the files: " + ("; ".join(f"{s['name'] or s['file']}: {s['reason']}"
                                                                              for s in found.skipped) or "empty")))
        edit = ImportRois([{"timepoint": s.timepoint, "mask": s.mask, "name": s.name} for s in found.structures],
                          ", ".join(str(p) for p in paths))
        return edit, found.skipped

    def import_reference(self, paths: list[str | Path], timepoint: int | None = None,
                         names: str | None = None) -> dict[str, Any]:
        """Import a site's reference contours (:meth:`reference_edit`) in one edit; its record, with
        ``reference_skipped``: the structures left out and why."""
        edit, skipped = self.reference_edit(paths, timepoint, names)
        return {**self.apply(edit), "reference_skipped": skipped}

    def move_reference(self, timepoint: int, organ: str, centre_mm: tuple[float, float, float] | list[float],
                       diameter_mm: float | None = None) -> dict[str, Any]:
        """Put the ``organ`` (liver, spleen) reference region of ``timepoint`` at ``centre_mm`` (LPS, mm)."""
        return self.apply(MoveReferenceRegion(int(timepoint), organ, [float(c) for c in centre_mm],
                                              None if diameter_mm is None else float(diameter_mm)))

    def set_site(self, roi_id: str, site: str) -> dict[str, Any]:
        """Set a lesion-ROI's site (liver, bone, lymph node, pancreas, lung, peritoneum/other)."""
        return self.apply(SetRoiSite(roi_id, site))

    def undo(self) -> dict[str, Any]:
        """Revert the last edit (replay of the others from the base); returns its record."""
        if not self.applied:
            raise ReviewError(describe("nothing to undo", path=self.dir / "session.json", fix="No edit is applied"))
        record = self.applied.pop()
        self.state = self.replay(self.applied)
        self.redo_stack.append(record)
        self._autosave()
        self._log("undo", {"id": record["id"], "type": record["type"]})
        return record

    def redo(self) -> dict[str, Any]:
        """Re-apply the last undone edit (same id, user and time); returns its record."""
        if not self.redo_stack:
            raise ReviewError(describe("nothing to redo", path=self.dir / "session.json",
                                       fix="Redo is possible only right after undo"))
        record = self.redo_stack[-1]
        edit_from_dict(record["edit"]).apply(self.state, self.context(), record["id"])
        self.applied.append(self.redo_stack.pop())
        self._autosave()
        self._log("redo", {"id": record["id"], "type": record["type"]})
        return record

    def history(self) -> list[dict[str, Any]]:
        """The applied edits, oldest first, without fingerprints."""
        return [_public(r) for r in self.applied]

    # ----- persistence ---------------------------------------------------------------------------
    def record_event(self, action: str, payload: dict[str, Any]) -> None:
        """Add what the reader did that is not an edit to the audit trail (``rerun``: the analysis re-run from a
        face, with the settings changed and how it ended; ``note`` is the line the faces show)."""
        self._log(action, payload)

    def _log(self, action: str, payload: dict[str, Any]) -> None:
        append_jsonl(self.dir / "audit.jsonl", {"time": _now(), "user": self.user, "action": action, **payload})

    def _autosave(self) -> None:
        self.state.analysis.audit = self.history()
        if self.autosave:
            self.save()

    def save(self) -> None:
        """Write the reviewed outputs (analysis.json with ``audit``, CSVs, labels) and session.json atomically."""
        staging = self.dir / ".staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        analysis = self.state.analysis
        analysis.audit = self.history()
        self.engine.write_outputs(analysis, staging)
        files = [p.relative_to(staging).as_posix() for p in sorted(staging.rglob("*")) if p.is_file()]
        files += self._stage_labels(staging)
        session = {"schema_version": SESSION_SCHEMA, "edits": self.applied, "redo": self.redo_stack}
        (staging / "review").mkdir(exist_ok=True)
        (staging / "review" / "session.json").write_bytes(json_bytes(session))
        files.append("review/session.json")
        for rel in files:
            _fsync(staging / rel)
        atomic_write_bytes(staging / MANIFEST, json_bytes({"files": files}))
        roll_forward(self.dir, self.out)

    def _stage_labels(self, staging: Path) -> list[str]:
        """Stage the label maps that differ from the files in OUT (base bytes reused when equal to the base)."""
        files = []
        for tp, image in sorted(self.state.labels.items()):
            rel = f"labels/tp{tp}.nii.gz"
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            base = self.base.labels.get(tp)
            if base is not None and _same(image, base):
                if _bytes_equal(self.dir / "base" / rel, self.out / rel):
                    continue
                shutil.copyfile(self.dir / "base" / rel, target)
            elif (self.out / rel).exists() and _same(image, sitk.ReadImage(str(self.out / rel))):
                continue
            else:
                sitk.WriteImage(image, str(target), True)
            files.append(rel)
        return files


def _same(a: sitk.Image, b: sitk.Image) -> bool:
    return a.GetSize() == b.GetSize() and np.array_equal(sitk.GetArrayViewFromImage(a),
                                                         sitk.GetArrayViewFromImage(b))


def _bytes_equal(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and a.read_bytes() == b.read_bytes()


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _public(record: dict[str, Any]) -> dict[str, Any]:
    """A record without the bulky ROI fingerprints (for analysis.json ``audit`` and the audit log)."""
    return {k: v for k, v in record.items() if k not in ("fingerprints", "anchors")}
