"""UI of the views: the toolbar (orientation, SUV window, fusion opacity, colour-by, linking, zoom, click mode)
and the caption drawn over each view (time point, study date, the selected track there)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_server import Server

from LesionResponseLib.datamodel import REFERENCE_ORGANS
from LesionResponseReview.web.logic import views
from LesionResponseReview.web.logic.base import typed_state
from LesionResponseReview.web.ui.common import tid

CAPTION_STYLE = ("position: absolute; top: 0; left: 0; right: 0; padding: 2px 6px; pointer-events: none; "
                 "background: rgba(0,0,0,0.55); color: #fff; font: 600 14px/1.35 sans-serif; z-index: 2;")


def build_toolbar(server: Server, zoom: Callable[[float], None], reset: Callable[[], None]) -> None:
    """The view controls, in the app bar."""
    name = typed_state(server, views.ViewsState, views.NAMESPACE).name
    with v3.VBtnToggle(v_model=(name.orientation,), mandatory=True, density="compact", variant="outlined",
                       classes="mx-2", **tid("orientation")):
        for orientation in ("Axial", "Coronal", "Sagittal"):
            v3.VBtn(orientation[:3], value=orientation, size="small")
    html.Div("SUV", classes="text-caption mx-1")
    v3.VRangeSlider(v_model=(name.suv_range,), min=0, max=(name.suv_slider_max,), step=0.5, hide_details=True,
                    density="compact", thumb_label=True, style="max-width: 180px;", **tid("suv-window"))
    html.Div("{{ " + name.suv_range + "[0] }}–{{ " + name.suv_range + "[1] }}", classes="text-caption mx-1")
    html.Div("PET", classes="text-caption ml-3 mr-1")
    v3.VSlider(v_model=(name.fusion_opacity,), min=0, max=1, step=0.05, hide_details=True, density="compact",
               style="max-width: 100px;", **tid("fusion-opacity"))
    v3.VSelect(v_model=(name.color_by,), items=("['category', 'track']",), label="colour by", density="compact",
               hide_details=True, style="max-width: 130px;", classes="mx-2", **tid("color-by"))
    v3.VCheckbox(v_model=(name.linked,), label="linked", density="compact", hide_details=True,
                 style="max-width: 100px;", **tid("linked"))
    with v3.VBtn(icon=True, size="small", click=lambda: zoom(views.ZOOM_STEP), **tid("zoom-in")):
        v3.VIcon("mdi-magnify-plus-outline")
    with v3.VBtn(icon=True, size="small", click=lambda: zoom(1 / views.ZOOM_STEP), **tid("zoom-out")):
        v3.VIcon("mdi-magnify-minus-outline")
    with v3.VBtn(icon=True, size="small", click=reset, **tid("reset-views")):
        v3.VIcon("mdi-fit-to-screen-outline")
    with v3.VBtnToggle(v_model=(name.click_mode,), mandatory=True, density="compact", variant="outlined",
                       classes="mx-2", **tid("click-mode"), color="primary"):
        v3.VBtn("navigate", value="navigate", size="small", **tid("mode-navigate"))
        v3.VBtn("add ROI", value="add", size="small", **tid("mode-add"))
        for organ in REFERENCE_ORGANS:
            v3.VBtn(f"{organ} ref", value=f"{views.REFERENCE_MODE}{organ}", size="small", **tid(f"mode-{organ}-ref"))


def view_caption(server: Server, _view_id: str, slicer_view: Any) -> None:
    """Caption over one view (trame-slicer ``slice_view_ui_f``): ``T1 2025-03-04`` and the selected track."""
    name = typed_state(server, views.ViewsState, views.NAMESPACE).name
    k = int(slicer_view.get_singleton_tag().replace(views.VIEW_TAG.format(k=""), ""))
    with html.Div(style=CAPTION_STYLE, **tid(f"caption-{k}")):
        html.Span(f"{{{{ {name.labels}[{k}] }}}}")
        html.Span(f"{{{{ {name.notes}[{k}] }}}}", classes="ml-3", style="font-weight: 400;")
