"""Review stage: reader edits over an analysis folder, with recompute, undo/redo, audit and re-run reconciliation.

- :class:`ReviewSession` (``session``): ``open(out_dir, user)``, ``.apply(edit)`` (a typed edit below; also
  ``.link/.unlink/.merge/.split/.reject/.restore/.add_roi/.edit_roi``), ``.undo/.redo/.history/.save()``; files
  under ``OUT/review/``.
- Edit commands (``edits``): :class:`LinkRois`, :class:`UnlinkRoi`, :class:`MergeTracks`, :class:`SplitTrack`,
  :class:`RejectRoi`, :class:`RestoreRoi`, :class:`AddRoi`, :class:`EditRoi` (JSON form, conflict rules).
- :func:`reapply_review` / :func:`reconcile` (``reconcile``): keep the edits across a re-run of ``analyze``.
"""

from LesionResponseLib.review.edits import (
    AddRoi,
    Edit,
    EditRoi,
    LinkRois,
    MergeTracks,
    RejectRoi,
    RestoreRoi,
    SplitTrack,
    UnlinkRoi,
    edit_from_dict,
)
from LesionResponseLib.review.reconcile import ReapplyReport, find_roi, reapply_review, reconcile
from LesionResponseLib.review.session import ReviewSession
from LesionResponseLib.review.state import Engine, ReviewState
from LesionResponseLib.review.store import ReviewError

__all__ = ["AddRoi", "Edit", "EditRoi", "Engine", "LinkRois", "MergeTracks", "ReapplyReport", "RejectRoi",
           "RestoreRoi", "ReviewError", "ReviewSession", "ReviewState", "SplitTrack", "UnlinkRoi", "edit_from_dict",
           "find_roi", "reapply_review", "reconcile"]
