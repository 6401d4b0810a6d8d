"""Reader corrections: every operation of the review session (link, unlink, merge, split, reject a ROI or a
whole track, restore, add ROI by growing a clicked hot spot, edit ROI by re-thresholding it, set a ROI's site,
move a reference region to a clicked point, undo, redo).
Each goes through ``mrml.apply_review_edit``, so the session saves it at once (a killed server loses nothing)
and the views, table, colours and heterogeneity follow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trame_server import Server

from LesionResponseLib.errors import LesionResponseError
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
    def run(self, operation: str, **arguments: Any) -> Any:
        """Apply one edit; on refusal the reason is shown and nothing changes."""
        self.data.error, self.data.busy = "", True
        try:
            record = mrml.apply_review_edit(self.context.nodes, self.context.session, operation, **arguments)
        except LesionResponseError as error:
            self.data.error = str(error)
            return None
        finally:
            self.data.busy = False
        self.data.message = f"{operation}: {_edit_label(record)}" if isinstance(record, dict) else operation
        self.context.log(f"{self.context.user}: {self.data.message}")
        self.context.changed("edited")
        return record

    @staticmethod
    def _roi(field_value: str, what: str) -> str:
        if not field_value.strip():
            raise _Refused(what)
        return field_value.strip()

    def edit(self, operation: str) -> Any:
        """The button ``operation`` with the panel's fields (see :func:`mrml.review_arguments`)."""
        data, nodes = self.data, self.context.nodes
        try:
            if operation in ("reject", "restore", "unlink"):
                arguments = mrml.review_arguments(operation, data.roi_a)
            elif operation == "link":
                arguments = mrml.review_arguments(operation, data.roi_a, data.roi_b)
            elif operation == "merge":
                arguments = mrml.review_arguments(operation, str(_selected(nodes)), data.merge_track)
            elif operation == "reject_track":
                arguments = mrml.review_arguments(operation, str(_selected(nodes)))
            elif operation == "split":
                arguments = mrml.review_arguments(operation, str(_selected(nodes)), str(data.split_timepoint))
            elif operation == "edit_roi":
                arguments = self._rethreshold_arguments()
            elif operation == "set_site":
                arguments = {"roi_id": self._roi(data.roi_a, "Click the ROI whose site to set (ROI A)."),
                             "site": data.site}
            else:
                arguments = mrml.review_arguments(operation)
        except (LesionResponseError, _Refused) as error:
            self.data.error = str(error)
            return None
        if operation in ("reject", "reject_track") and data.reason.strip():
            arguments["reason"] = data.reason.strip()
        return self.run(operation, **arguments)

    def _threshold(self) -> dict[str, float | None]:
        if self.data.threshold_mode == "suv":
            return {"fraction": None, "threshold_suv": float(self.data.threshold_suv)}
        return {"fraction": float(self.data.threshold_percent) / 100.0, "threshold_suv": None}

    def _rethreshold_arguments(self) -> dict[str, Any]:
        session = self.context.session
        roi = session.state.roi(self._roi(self.data.roi_a, "Click the ROI to re-threshold (ROI A)."))
        grown = masks.rethreshold(session.suv(roi.timepoint), session.state.labels[roi.timepoint], roi.label,
                                  **self._threshold())
        return {"roi_id": roi.roi_id, "mask": grown.mask}

    def add_at(self, tp: int, ras: tuple[float, float, float]) -> Any:
        """Grow a ROI from the hot spot at ``ras`` in time point ``tp`` and add it (not linked: link it next)."""
        session = self.context.session
        try:
            grown = masks.grow(session.suv(tp), session.state.labels[tp], mrml.ras_to_lps(ras), **self._threshold())
        except LesionResponseError as error:
            self.data.error = str(error)
            return None
        record = self.run("add_roi", timepoint=tp, mask=grown.mask)
        if record is not None and record.get("created_roi"):
            self.data.roi_a = record["created_roi"]
            self.data.message += (f" ({grown.n_voxels} voxels, SUVmax {grown.suv_max:.1f}, "
                                  f"threshold SUV {grown.threshold_suv:.2f})")
        return record

    def place_reference(self, tp: int, ras: tuple[float, float, float], organ: str) -> Any:
        """Move the ``organ`` reference region of time point ``tp`` to the clicked point (re-measured, checked)."""
        record = self.run("move_reference", timepoint=tp, organ=organ,
                          centre_mm=[float(c) for c in mrml.ras_to_lps(ras)])
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
        corrected = "" if roi.suv_total_pvc is None else f" (PV-corrected {roi.suv_total_pvc:.1f})"
        self.data.roi_info = (f"{name}: {roi.volume_ml:.2f} mL, SUVmax {roi.suv_max:.1f}, SUVmean {roi.suv_mean:.1f}, "
                              f"SUVtotal {roi.suv_total:.1f}{corrected}, {roi.status}; {_site_and_ratios(nodes, roi)}")


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
                      if k not in ("type", "mask") and v not in ("", None, False))
    return f"{record.get('type', '?')} {params}".strip()
