"""UI of the time points (study date, SUV provenance, ROIs, heterogeneity) and of the export."""

from __future__ import annotations

from collections.abc import Callable

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_server import Server

from LesionResponseLib.datamodel import REFERENCE_ORGANS
from LesionResponseReview.web.logic import export, timepoints
from LesionResponseReview.web.logic.base import typed_state
from LesionResponseReview.web.ui.common import tid

FIELDS = (("tracer", "tracer"), ("manufacturer", "scanner"), ("geometry", "slice geometry"), ("suv_method", "SUV method"), ("suv_reference_time_source", "reference time"),
          ("suv_normalisation", "normalisation"), ("suv_assumptions", "assumptions"), ("uptake_min", "uptake (min)"),
          ("n_rois", "accepted ROIs"), ("heterogeneous", "heterogeneous"), ("warnings", "warnings"),
          ("tumour_volume", "SSTR tumour volume"), ("total_uptake", "total lesion uptake"),
          ("lesions_by_site", "lesion-ROIs by site"), ("liver_reference", "liver reference"),
          ("spleen_reference", "spleen reference"))


def build_timepoints(server: Server) -> None:
    name = typed_state(server, timepoints.TimepointsState, timepoints.NAMESPACE).name
    html.Div(f"Patient {{{{ {name.patient} }}}} · {{{{ {name.heterogeneity} }}}}", classes="text-subtitle-2 pa-2",
             **tid("heterogeneity"))
    with html.Div(v_for=f"row in {name.rows}", classes="px-2 pb-2", **tid("timepoint-info")):
        html.Div("{{ row.label }}", classes="text-body-2 font-weight-bold")
        for key, label in FIELDS:
            html.Div(f"{label}: {{{{ row.{key} }}}}", v_if=(f"row.{key} !== ''",), classes="text-caption")
        for organ in REFERENCE_ORGANS:  # centre the views on the sphere (trigger ``show_reference``)
            v3.VBtn(f"show {organ} reference", size="x-small", variant="text", classes="mr-1",
                    v_if=(f"row.{organ}_reference.startsWith('SUVmean')",),
                    click=f"trigger('show_reference', [row.index, '{organ}'])", **tid(f"show-{organ}-reference"))


def build_export(server: Server, run_export: Callable[[], None]) -> None:
    name = typed_state(server, export.ExportState, export.NAMESPACE).name
    with html.Div(classes="pa-2"):
        html.Div("Export: patient report and DICOM SEG + SR into OUT/report", classes="text-subtitle-2")
        v3.VCheckbox(v_model=(name.pdf,), label="PDF too", density="compact", hide_details=True)
        v3.VCheckbox(v_model=(name.send_to_pacs,), v_if=(name.pacs,), label=(f"'send to ' + {name.pacs}",),
                     density="compact", hide_details=True)
        v3.VBtn("Export", click=run_export, loading=(name.busy,), disabled=(name.busy,), prepend_icon="mdi-export",
                size="small", variant="tonal", **tid("export"))
        html.Div(f"{{{{ {name.message} }}}}", classes="text-caption mt-1", **tid("export-message"))
        v3.VAlert(f"{{{{ {name.error} }}}}", v_if=(name.error,), type="error", density="compact")
        html.Div("{{ f }}", v_for=f"f in {name.files}", classes="text-caption")
