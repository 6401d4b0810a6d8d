"""Reader corrections: every edit of the review session (link, unlink, merge, split, reject a ROI or a whole
track, restore, add ROI by growing a clicked hot spot or painting it with a sphere brush, edit ROI by re-thresholding it, set a ROI's site, move a
reference region to a clicked point), undo and redo. Each button builds a typed edit
(``LesionResponseLib.review.edits``) from the panel's fields and passes it to ``mrml.apply_review_edit``, so the
session saves it at once (a killed server loses nothing) and the views, table, colours and heterogeneity follow."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trame_server import Server

from LesionResponseLib.errors import LesionResponseError
from LesionResponseLib.review import edits
from LesionResponseReview import masks, mrml
from LesionResponseReview.web.context import ReviewContext
from LesionResponseReview.web.logic.base import FeatureLogic

NAMESPACE = "corrections"  # state keys of this feature


@dataclass
class CorrectionsState:
    roi_a: str = ""  # filled by a click on a ROI (or typed)
    roi_b: str = ""  # filled by a shift-click on a ROI (or typed)
    merge_track: str = ""  # track to merge into the selected one
    split_timepoint: int = 1  # first time point of the new track when splitting the selected one
    reason: str = ""  # why a ROI is rejected (kept in the audit trail)
    threshold_mode: str = "percent"  # "percent" (of the hot spot's SUVmax) | "suv" (absolute)
    threshold_percent: float = 100 * masks.DEFAULT_FRACTION
    threshold_suv: float = 4.0
    add_tool: str = "grow"  # what a click in "add ROI" mode does: "grow" (threshold region) | "brush" (sphere)
    brush_radius_mm: float = 6.0  # about one PET FWHM: a small lesion's visible extent
    brush_min_suv: str = ""  # the brush paints only voxels of at least this SUV (empty: every voxel)
    reference_path: str = ""  # reference contours on the server (RTSTRUCT, SEG, label maps, or a folder of them)
    site: str = "liver"  # the site "Set site of A" gives ROI A (datamodel.LESION_SITES)
    roi_info: str = ""  # what is known about ROI A
    message: str = ""  # what the last correction did
    error: str = ""  # why the last correction was refused
    can_undo: bool = False
    can_redo: bool = False
    undo_label: str = ""
    redo_label: str = ""
    busy: bool = False


class CorrectionsLogic(FeatureLogic[CorrectionsState]):
    """Turns the panel's fields and view clicks into review edits."""

    def __init__(self, server: Server, context: ReviewContext) -> None:
        super().__init__(server, context, CorrectionsState, NAMESPACE)
        self.bind_changes({self.name.roi_a: lambda _v: self._describe_roi()})
        context.listeners.append(self._on_change)

    # ----- session --------------------------------------------------------------------------------------
    def open_session(self) -> None:
        """Open the folder's review session (its lock is held while the app runs) and show its state."""
        from LesionResponseLib.review import ReviewSession

        self.context.session = ReviewSession.open(self.context.out_dir, user=self.context.user)
        mrml.sync_with_session(self.context.nodes, self.context.session)

    def close_session(self) -> None:
        if self.context.session is not None:
            self.context.session.close()
            self.context.session = None

    def _on_change(self, what: str) -> None:
        if what in ("loaded", "edited") and self.context.session is not None:
            session = self.context.session
            self.data.can_undo, self.data.can_redo = bool(session.applied), bool(session.redo_stack)
            self.data.undo_label = _edit_label(session.applied[-1]) if session.applied else ""
            self.data.redo_label = _edit_label(session.redo_stack[-1]) if session.redo_stack else ""
            self._describe_roi()

    # ----- edits ------------------------------------------------------------------------------------------
    def _run(self, action: Callable[[], dict[str, Any]], what: str = "") -> dict[str, Any] | None:
        """Run one correction (``action``: build the edit and apply it, or undo/redo); on refusal the reason is
        shown and nothing changes. Returns the edit's record."""
        if self.context.busy:
            self.data.error = self.context.busy
            return None
        self.data.error, self.data.busy = "", True
        try:
            record = action()
        except LesionResponseError as error:
            self.data.error = str(error)
            return None
        finally:
            self.data.busy = False
        self.data.message = f"{what}{_edit_label(record)}"
        self.context.log(f"{self.context.user}: {self.data.message}")
        self.context.changed("edited")
        return record

    def apply(self, build: Callable[[], edits.Edit]) -> dict[str, Any] | None:
        """Apply the typed edit ``build()`` (built from the panel's fields; a missing field is refused)."""
        return self._run(lambda: mrml.apply_review_edit(self.context.nodes, self.context.session, build()))

    def _roi_a(self) -> str:
        return mrml.roi_id_from_text(self.data.roi_a, "ROI A (click a lesion-ROI in a view)")

    def _reason(self) -> str:
        return self.data.reason.strip()

    def reject(self) -> dict[str, Any] | None:
        return self.apply(lambda: edits.RejectRoi(self._roi_a(), self._reason()))

    def restore(self) -> dict[str, Any] | None:
        return self.apply(lambda: edits.RestoreRoi(self._roi_a()))

    def unlink(self) -> dict[str, Any] | None:
        return self.apply(lambda: edits.UnlinkRoi(self._roi_a()))

    def link(self) -> dict[str, Any] | None:
        return self.apply(lambda: edits.LinkRois(self._roi_a(), mrml.roi_id_from_text(self.data.roi_b, "ROI B "
                                                                                 "(shift-click a lesion-ROI)")))

    def merge(self) -> dict[str, Any] | None:
        return self.apply(lambda: edits.MergeTracks(_selected(self.context.nodes),
                                              mrml.number_from_text(self.data.merge_track, "the other track")))

    def split(self) -> dict[str, Any] | None:
        return self.apply(lambda: edits.SplitTrack(_selected(self.context.nodes), int(self.data.split_timepoint)))

    def reject_track(self) -> dict[str, Any] | None:
        return self.apply(lambda: edits.RejectRois(edits.track_roi_ids(self.context.session.state,
                                                           _selected(self.context.nodes)), self._reason()))

    def set_site(self) -> dict[str, Any] | None:
        """Give ROI A the panel's site (the reader's correction of the automatic rule)."""
        return self.apply(lambda: edits.SetRoiSite(self._roi_a(), self.data.site))

    def undo(self) -> dict[str, Any] | None:
        return self._run(lambda: mrml.undo_review_edit(self.context.nodes, self.context.session), "undone: ")

    def redo(self) -> dict[str, Any] | None:
        return self._run(lambda: mrml.redo_review_edit(self.context.nodes, self.context.session), "redone: ")

    def _threshold(self) -> dict[str, float | None]:
        if self.data.threshold_mode == "suv":
            return {"fraction": None, "threshold_suv": float(self.data.threshold_suv)}
        return {"fraction": float(self.data.threshold_percent) / 100.0, "threshold_suv": None}

    def rethreshold(self) -> dict[str, Any] | None:
        """Re-threshold ROI A (at the panel's threshold): an :class:`EditRoi` with the new mask."""
        def build() -> edits.Edit:
            session = self.context.session
            roi = session.state.roi(self._roi_a())
            grown = masks.rethreshold(session.suv(roi.timepoint), session.state.labels[roi.timepoint],
                                      roi.label,
                                      **self._threshold())
            return edits.EditRoi(roi.roi_id, grown.mask)

        return self.apply(build)

    def add_at(self, tp: int, ras: tuple[float, float, float]) -> Any:
        """Add a ROI at ``ras`` in time point ``tp`` with the panel's tool: grown from the hot spot there, or painted
        with the sphere brush centred there (not linked: link it next)."""
        session = self.context.session
        try:
            if self.data.add_tool == "brush":
                made = masks.paint(session.suv(tp), session.state.labels[tp], mrml.ras_to_lps(ras),
                                   radius_mm=float(self.data.brush_radius_mm), min_suv=self._brush_floor())
                how = f"painted, radius {float(self.data.brush_radius_mm):g} mm" + (
                    "" if made.threshold_suv is None else f", SUV >= {made.threshold_suv:.2f}")
            else:
                made = masks.grow(session.suv(tp), session.state.labels[tp], mrml.ras_to_lps(ras),
                                  **self._threshold())
                how = f"threshold SUV {made.threshold_suv:.2f}"
        except (LesionResponseError, ValueError) as error:
            self.data.error = str(error)
            return None
        record = self.apply(lambda: edits.AddRoi(tp, made.mask))
        if record is not None and record.get("created_roi"):
            self.data.roi_a = record["created_roi"]
            self.data.message += f" ({made.n_voxels} voxels, SUVmax {made.suv_max:.1f}, {how})"
        return record

    def _brush_floor(self) -> float | None:
        text = str(self.data.brush_min_suv or "").strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            raise _Refused(f"the brush's SUV floor {text!r} is not a number: give an SUV (e.g. 3.5) or leave it "
                           "empty to paint every voxel") from None

    def import_reference(self) -> Any:
        """Import the reference contours at the path in the panel as reader ROIs (one edit, one undo)."""
        path = self.data.reference_path.strip()
        if not path:
            self.data.error = "Give the path of the reference contours (a file or folder on the server)."
            return None
        skipped: list[dict[str, Any]] = []

        def build() -> edits.Edit:
            edit, left_out = self.context.session.reference_edit([path])
            skipped.extend(left_out)
            return edit

        record = self.apply(build)
        if record is not None:
            self.data.message += f" ({len(record['edit']['rois'])} structures" + (
                f"; not imported: {', '.join(s['name'] or s['file'] for s in skipped)})" if skipped else ")")

    def place_reference(self, tp: int, ras: tuple[float, float, float], organ: str) -> Any:
        """Move the ``organ`` reference region of time point ``tp`` to the clicked point (re-measured, checked)."""
        record = self.apply(lambda: edits.MoveReferenceRegion(tp, organ, [float(c) for c in mrml.ras_to_lps(ras)]))
        region = self.context.session.state.analysis.reference(tp, organ) if record is not None else None
        if region is not None and region.placed:
            self.data.message += f" (SUVmean {region.suv_mean:.2f}" + "".join(f"; {w}" for w in region.warnings) + ")"
        return record

    def pick(self, tp: int, ras: tuple[float, float, float], into_b: bool) -> str | None:
        """The ROI under a click goes into ROI A (or B with shift); returns its id."""
        roi_id = mrml.roi_at_point(self.context.nodes, tp, ras)
        if roi_id is not None:
            if into_b:
                self.data.roi_b = roi_id
            else:
                self.data.roi_a = roi_id
        return roi_id

    def _describe_roi(self) -> None:
        nodes, roi_id = self.context.nodes, self.data.roi_a.strip()
        if nodes is None or not roi_id:
            self.data.roi_info = ""
            return
        try:
            roi = nodes.analysis.roi(roi_id)
        except KeyError:
            self.data.roi_info = f"no ROI {roi_id}"
            return
        name = mrml.roi_display(nodes, roi_id)[0]
        corrected = ("" if roi.suv_total_pvc is None
                     else f" (PV-corrected {_with_sd(roi.suv_total_pvc, roi.suv_total_pvc_sd)})")
        self.data.roi_info = (f"{name}: {roi.volume_ml:.2f} mL, SUVmax {roi.suv_max:.1f}, SUVmean {roi.suv_mean:.1f}, "
                              f"SUVtotal {_with_sd(roi.suv_total, roi.suv_total_sd)}{corrected}, {roi.status}; "
                              f"{_site_and_ratios(nodes, roi)}")


def _with_sd(value: float, sd: float | None) -> str:
    """``372.6 ± 41.0`` (SUV·mL): a measure with its SD, which a ROI holding only part of its lesion makes large."""
    return f"{value:.1f}" if sd is None else f"{value:.1f} ± {sd:.1f}"


class _Refused(LesionResponseError):
    """A correction asked for without what it needs (shown to the reader)."""


def _site_and_ratios(nodes: Any, roi: Any) -> str:
    """``site liver (automatic), SUVmax/liver 5.2, /spleen 1.1, Krenning-like 4`` of a ROI."""
    from LesionResponseLib.analysis.burden import lesion_ratios

    ratios = lesion_ratios(nodes.analysis).get(roi.roi_id, {})
    parts = [f"site {roi.site or 'undetermined'} ({roi.site_source})"]
    for key, label in (("suv_max_to_liver", "SUVmax/liver"), ("suv_max_to_spleen", "SUVmax/spleen")):
        if ratios.get(key) is not None:
            parts.append(f"{label} {ratios[key]:.1f}")
    if ratios.get("krenning_grade"):
        parts.append(f"Krenning-like {ratios['krenning_grade']}")
    return ", ".join(parts)


def _selected(nodes: Any) -> int:
    if nodes.selected_track is None:
        raise _Refused("Select a track in the table first.")
    return nodes.selected_track


def _edit_label(record: dict) -> str:
    """Short text of an edit record: ``reject roi_id=tp1-L0006``."""
    params = " ".join(f"{k}={v}" for k, v in record.get("edit", {}).items()
                      if k not in ("type", "mask", "rois") and v not in ("", None, False))
    return f"{record.get('type', '?')} {params}".strip()
