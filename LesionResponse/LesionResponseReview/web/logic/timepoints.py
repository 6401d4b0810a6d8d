"""Time-point information: study date, SUV provenance (method, reference time, normalisation, assumptions,
warnings, whatever the analysis recorded), accepted ROIs, and the response heterogeneity per follow-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trame_server import Server

from LesionResponseReview import mrml
from LesionResponseReview.web.context import ReviewContext
from LesionResponseReview.web.logic.base import FeatureLogic

NAMESPACE = "timepoints"  # state keys of this feature


@dataclass
class TimepointsState:
    rows: list[dict] = field(default_factory=list)
    heterogeneity: str = ""
    patient: str = ""


def _listed(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "; ".join(str(v) for v in value)
    return "" if value is None else str(value)


def timepoint_rows(analysis: Any) -> list[dict]:
    """Per time point the fields a reader checks before trusting SUVs (absent fields shown empty)."""
    from LesionResponseLib.dicomio.tracer import tracer_label

    rows = []
    for tp in analysis.timepoints:
        n_rois = sum(1 for r in analysis.rois if r.timepoint == tp.index and r.status == "accepted")
        rows.append({
            "label": mrml.view_label(analysis, tp.index), "manufacturer": tp.manufacturer or "",
            "tracer": tracer_label(tp), "geometry": _listed(getattr(tp, "geometry_notes", [])),
            "suv_method": tp.suv_method,
            "suv_reference_time_source": _listed(getattr(tp, "suv_reference_time_source", "")),
            "suv_normalisation": _listed(getattr(tp, "suv_normalisation", "")),
            "suv_assumptions": _listed(getattr(tp, "suv_assumptions", [])),
            "warnings": _listed(getattr(tp, "warnings", [])),
            "uptake_min": "" if tp.uptake_time_s is None else f"{tp.uptake_time_s / 60:.0f}",
            "n_rois": n_rois,
            "heterogeneous": ("" if tp.index == 0 else
                              ("yes" if analysis.heterogeneous.get(tp.index) else "no")),
        })
    return rows


class TimepointsLogic(FeatureLogic[TimepointsState]):
    """Refreshes the time-point rows (ROI counts, heterogeneity) after load and every edit."""

    def __init__(self, server: Server, context: ReviewContext) -> None:
        super().__init__(server, context, TimepointsState, NAMESPACE)
        context.listeners.append(self._on_change)

    def _on_change(self, what: str) -> None:
        if what in ("loaded", "edited"):
            analysis = self.context.nodes.analysis
            self.data.rows = timepoint_rows(analysis)
            flags = [f"T{k} {'heterogeneous' if v else 'homogeneous'}" for k, v in sorted(analysis.heterogeneous.items())]
            self.data.heterogeneity = ", ".join(flags) or "no follow-up"
            self.data.patient = analysis.patient_id
