"""Carry a reader's edits over to a re-run of the automatic analysis (new parameters, new model).

Each edit stores a fingerprint of every ROI it refers to (time point, centroid, volume, voxel run-lengths).
In the new analysis a ROI is re-identified as the ROI of the same time point with the highest Dice overlap
with that fingerprint (at least ``min_dice``); on a different grid, as the nearest centroid within
``max_distance_mm`` with a volume ratio within ``1/max_volume_ratio..max_volume_ratio``. Edits whose ROIs
cannot be found, or that now conflict, are listed in ``review/not_applicable.json`` with the reason.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from LesionResponseLib.datamodel import roi_id_for
from LesionResponseLib.review.edits import ApplyContext, edit_from_dict, retarget
from LesionResponseLib.review.state import Engine, ReviewState, runs_to_indices
from LesionResponseLib.review.store import ReviewError, SessionLock, atomic_write_bytes, json_bytes, read_json

MIN_DICE = 0.5  # a re-segmented lesion overlaps its former mask far above this; neighbours far below
MAX_DISTANCE_MM = 10.0  # ~2 PET voxels plus registration-free re-run jitter
MAX_VOLUME_RATIO = 2.0
REAPPLY_USER = "lesion-response analyze"  # who re-applies a review after a re-run (lock file, audit trail)


def find_roi(state: ReviewState, fingerprint: dict[str, Any], min_dice: float = MIN_DICE,
             max_distance_mm: float = MAX_DISTANCE_MM, max_volume_ratio: float = MAX_VOLUME_RATIO) -> str | None:
    """The ROI id in ``state`` that ``fingerprint`` (from :func:`roi_fingerprint`) describes, or None."""
    tp = int(fingerprint["timepoint"])
    if tp not in state.labels:
        return None
    array = state.label_array(tp)
    if list(array.shape) == list(fingerprint["grid_zyx"]):
        idx = runs_to_indices(fingerprint["runs"])
        values = array.ravel()[idx]
        labels, counts = np.unique(values[values > 0], return_counts=True)
        best, best_dice = None, min_dice
        for label, count in zip(labels, counts, strict=True):
            dice = 2.0 * count / (idx.size + int(np.count_nonzero(array == label)))
            if dice >= best_dice:
                best, best_dice = int(label), dice
        return None if best is None else roi_id_for(tp, best)
    return _nearest(state, fingerprint, max_distance_mm, max_volume_ratio)


def _nearest(state: ReviewState, fp: dict[str, Any], max_distance_mm: float, max_ratio: float) -> str | None:
    best, best_d = None, max_distance_mm
    for roi in state.analysis.rois:
        if roi.timepoint != int(fp["timepoint"]) or roi.volume_ml <= 0:
            continue
        ratio = roi.volume_ml / max(fp["volume_ml"], 1e-9)
        d = math.dist(roi.centroid_mm, fp["centroid_mm"])
        if 1 / max_ratio <= ratio <= max_ratio and d <= best_d:
            best, best_d = roi.roi_id, d
    return best


def reconcile(state: ReviewState, records: list[dict[str, Any]], ctx: ApplyContext,
              min_dice: float = MIN_DICE) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Replay ``records`` on the new ``state`` (modified in place): (applied records, not applicable ones).

    Applied records keep id, user and time, with parameters moved to the re-identified ROIs/tracks
    (``reapplied_from`` keeps the former parameters when they changed).
    """
    applied, skipped = [], []
    created: dict[str, str] = {}  # former ROI id of a reader-added ROI -> its id now
    for record in records:
        edit = edit_from_dict(record["edit"])
        roi_map, missing = {}, []
        for rid in set(record.get("anchors", {}).values()):
            found = created.get(rid) or find_roi(state, record["fingerprints"][rid], min_dice)
            roi_map[rid] = found
            if found is None:
                missing.append(rid)
        if missing:
            skipped.append({**_brief(record), "reason": f"lesion-ROI(s) {', '.join(sorted(missing))} not found "
                                                         "in the new analysis"})
            continue
        try:
            new_edit = retarget(edit, record.get("anchors", {}), roi_map, state)
            trial = state.copy()
            new_edit.apply(trial, ctx, record["id"])
        except ReviewError as exc:
            skipped.append({**_brief(record), "reason": str(exc)})
            continue
        _adopt(state, trial)
        new_record = dict(record, edit=new_edit.to_dict())
        if new_edit != edit:
            new_record["reapplied_from"] = dataclasses.asdict(edit)
        if record.get("created_roi") and trial.created.get(record["id"]):
            created[record["created_roi"]] = trial.created[record["id"]]
            new_record["created_roi"] = trial.created[record["id"]]
        applied.append(new_record)
    return applied, skipped


def _adopt(state: ReviewState, other: ReviewState) -> None:
    state.analysis, state.labels = other.analysis, other.labels
    state.max_track_id, state.created = other.max_track_id, other.created


def _brief(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in ("id", "user", "time", "type", "edit")}


@dataclasses.dataclass
class ReapplyReport:
    """What :func:`reapply_review` did: how many edits it re-applied, and those that no longer apply (each the
    edit's id, user, time, type, JSON form and the reason)."""

    applied: int = 0
    not_applicable: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def reapply_review(out_dir: str | Path, engine: Engine | None = None, user: str = REAPPLY_USER,
                   min_dice: float = MIN_DICE, lock: SessionLock | None = None) -> ReapplyReport:
    """After ``analyze`` rewrote ``out_dir``: make it the new base, re-apply the reader's edits, save.

    The edits that no longer apply are also appended to ``review/not_applicable.json``. Without
    ``review/session.json`` nothing happens (nothing applied). ``lock``: the folder's session lock, taken by the
    caller before it rewrote the folder (released here); None: taken here.
    """
    from LesionResponseLib.review.session import ReviewSession, snapshot_base

    out = Path(out_dir)
    session_file = out / "review" / "session.json"
    if not session_file.exists():
        return ReapplyReport()
    records = list(read_json(session_file).get("edits", []))
    snapshot_base(out, out / "review" / "base")
    with ReviewSession.open(out, user, engine=engine, autosave=False, load_edits=False, lock=lock) as session:
        session.applied, session.redo_stack = [], []
        session.state = session.base.copy()
        applied, skipped = reconcile(session.state, records, session.context(), min_dice)
        session.applied = applied
        session._log("reapply", {"applied": [r["id"] for r in applied], "not_applicable": skipped})
        path = out / "review" / "not_applicable.json"
        previous = read_json(path) if path.exists() else []
        atomic_write_bytes(path, json_bytes(previous + skipped))
        session.save()
    return ReapplyReport(len(applied), skipped)
