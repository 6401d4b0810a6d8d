"""UI of the corrections: ROI A / B (click / shift-click a ROI in a view, or type), the ROI edits, the track
edits on the selected track, adding a ROI by a click on a hot spot (grown, or painted with a sphere brush),
re-thresholding, the site of ROI A, moving a reference region by a click, undo / redo."""

from __future__ import annotations

from collections.abc import Callable

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_server import Server

from LesionResponseLib.datamodel import LESION_SITES
from LesionResponseReview.web.logic import corrections, tracks
from LesionResponseReview.web.logic.base import typed_state
from LesionResponseReview.web.ui.common import tid


def _button(label: str, testid: str, action: Callable[[], object], disabled: str = "", **kwargs) -> None:
    v3.VBtn(label, size="small", variant="tonal", classes="mr-1 mb-1", click=action,
            disabled=(disabled or "false",), **tid(f"op-{testid}"), **kwargs)


def build_corrections(server: Server, logic: corrections.CorrectionsLogic, n_timepoints: int) -> None:
    """The corrections panel; each button runs one correction of ``logic`` with the panel's fields."""
    name = typed_state(server, corrections.CorrectionsState, corrections.NAMESPACE).name
    selected = typed_state(server, tracks.TracksState, tracks.NAMESPACE).name.selected_track
    busy = name.busy
    with html.Div(classes="pa-2"):
        v3.VAlert(f"{{{{ {name.error} }}}}", v_if=(name.error,), type="error", density="compact", classes="mb-2",
                  closable=True, **tid("correction-error", f'@click:close="{name.error} = \'\'"'))
        v3.VAlert(f"{{{{ {name.message} }}}}", v_if=(f"{name.message} && !{name.error}",), type="success",
                  density="compact", classes="mb-2", **tid("correction-message"))

        html.Div("Lesion-ROIs (click a ROI in a view = A, shift-click = B)", classes="text-subtitle-2")
        with html.Div(classes="d-flex"):
            v3.VTextField(v_model=(name.roi_a,), label="ROI A", density="compact", hide_details=True, classes="mr-2",
                          clearable=True, **tid("roi-a"))
            v3.VTextField(v_model=(name.roi_b,), label="ROI B", density="compact", hide_details=True, clearable=True,
                          **tid("roi-b"))
        html.Div(f"{{{{ {name.roi_info} }}}}", classes="text-caption my-1", **tid("roi-info"))
        v3.VTextField(v_model=(name.reason,), label="reason (reject)", density="compact", hide_details=True,
                      classes="mb-1", **tid("reason"))
        with html.Div(classes="d-flex flex-wrap"):
            _button("Reject A", "reject", logic.reject, busy)
            _button("Restore A", "restore", logic.restore, busy)
            _button("Unlink A", "unlink", logic.unlink, busy)
            _button("Link A–B", "link", logic.link, busy)

        v3.VDivider(classes="my-2")
        html.Div(f"Selected track: {{{{ {selected} >= 0 ? 'T' + String({selected}).padStart(3, '0') : 'none' }}}}",
                 classes="text-subtitle-2", **tid("selected-track"))
        with html.Div(classes="d-flex align-center"):
            v3.VTextField(v_model=(name.merge_track,), label="other track", density="compact", hide_details=True,
                          classes="mr-2", style="max-width: 130px;", **tid("merge-track"))
            _button("Merge", "merge", logic.merge, f"{busy} || {selected} < 0")
        with html.Div(classes="d-flex align-center mt-1"):
            v3.VSelect(v_model=(name.split_timepoint,), items=(list(range(1, n_timepoints)),),
                       label="from time point", density="compact", hide_details=True, classes="mr-2",
                       style="max-width: 130px;", **tid("split-timepoint"))
            _button("Split", "split", logic.split, f"{busy} || {selected} < 0")
        _button("Reject track", "reject_track", logic.reject_track, f"{busy} || {selected} < 0",
                title="Reject every ROI of the selected track (e.g. physiological uptake found on every scan); "
                      "the reason field above is kept with it")

        v3.VDivider(classes="my-2")
        html.Div("Add or edit a ROI by threshold", classes="text-subtitle-2")
        with v3.VBtnToggle(v_model=(name.threshold_mode,), mandatory=True, density="compact", variant="outlined",
                           classes="mb-1", **tid("threshold-mode")):
            v3.VBtn("% of SUVmax", value="percent", size="small")
            v3.VBtn("SUV", value="suv", size="small")
        with html.Div(classes="d-flex align-center"):
            v3.VTextField(v_model_number=(name.threshold_percent,), v_if=(f"{name.threshold_mode} === 'percent'",),
                          type="number", label="threshold (% SUVmax)", density="compact", hide_details=True,
                          classes="mr-2", style="max-width: 170px;", **tid("threshold-percent"))
            v3.VTextField(v_model_number=(name.threshold_suv,), v_if=(f"{name.threshold_mode} === 'suv'",),
                          type="number", label="threshold (SUV)", density="compact", hide_details=True,
                          classes="mr-2", style="max-width: 170px;", **tid("threshold-suv"))
            _button("Re-threshold A", "edit_roi", logic.rethreshold, busy)
        html.Div("Add: switch the views to 'add ROI' and click the hot spot; a click grows it at the threshold, or "
                 "paints a sphere brush there (where growing leaks into an organ).", classes="text-caption")
        with v3.VBtnToggle(v_model=(name.add_tool,), mandatory=True, density="compact", variant="outlined",
                           classes="mb-1", **tid("add-tool")):
            v3.VBtn("click-and-grow", value="grow", size="small", **tid("add-tool-grow"))
            v3.VBtn("sphere brush", value="brush", size="small", **tid("add-tool-brush"))
        with html.Div(v_if=(f"{name.add_tool} === 'brush'",), classes="d-flex align-center"):
            v3.VTextField(v_model_number=(name.brush_radius_mm,), type="number", label="brush radius (mm)",
                          density="compact", hide_details=True, classes="mr-2", style="max-width: 140px;",
                          **tid("brush-radius"))
            v3.VTextField(v_model=(name.brush_min_suv,), label="only SUV ≥ (optional)", density="compact",
                          hide_details=True, style="max-width: 170px;", **tid("brush-min-suv"))

        build_reference_import(name, busy, logic.import_reference)

        v3.VDivider(classes="my-2")
        html.Div("Site and reference regions", classes="text-subtitle-2")
        with html.Div(classes="d-flex align-center"):
            v3.VSelect(v_model=(name.site,), items=(list(LESION_SITES),), label="site", density="compact",
                       hide_details=True, classes="mr-2", style="max-width: 200px;", **tid("site"))
            _button("Set site of A", "set_site", logic.set_site, busy)
        html.Div("Move the liver or spleen reference sphere: switch the views to 'liver ref' or 'spleen ref' and "
                 "click its new centre in that time point's view.", classes="text-caption")

        v3.VDivider(classes="my-2")
        with html.Div(classes="d-flex align-center"):
            _button("Undo", "undo", logic.undo, f"{busy} || !{name.can_undo}", prepend_icon="mdi-undo")
            _button("Redo", "redo", logic.redo, f"{busy} || !{name.can_redo}", prepend_icon="mdi-redo")
        html.Div(f"{{{{ {name.can_undo} ? 'undo: ' + {name.undo_label} : '' }}}}", classes="text-caption")
        html.Div(f"{{{{ {name.can_redo} ? 'redo: ' + {name.redo_label} : '' }}}}", classes="text-caption")


def build_reference_import(name, busy: str, import_reference: Callable[[], None]) -> None:
    """A site's reference contours (RTSTRUCT, DICOM SEG, label maps, or a folder of them, on the server) as reader
    ROIs: one edit, undone as one."""
    v3.VDivider(classes="my-2")
    html.Div("Reference contours (RTSTRUCT, SEG, label maps)", classes="text-subtitle-2")
    with html.Div(classes="d-flex align-center"):
        v3.VTextField(v_model=(name.reference_path,), label="file or folder on the server", density="compact",
                      hide_details=True, classes="mr-2", **tid("reference-path"))
        v3.VBtn("Import", size="small", variant="tonal", classes="mb-1", click=import_reference,
                disabled=(busy,), **tid("op-import-reference"))
