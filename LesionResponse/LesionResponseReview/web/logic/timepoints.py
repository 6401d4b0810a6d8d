"""Time-point information: study date, SUV provenance (method, reference time, normalisation, assumptions,
warnings, whatever the analysis recorded), accepted ROIs, the response heterogeneity per follow-up, the liver and
spleen reference regions and the tumour burden (overall, by site, change from baseline)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trame_server import Server

from LesionResponseLib.datamodel import REFERENCE_ORGANS
from LesionResponseLib.terminal import signed_percent
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
            "index": tp.index, "label": mrml.view_label(analysis, tp.index), "manufacturer": tp.manufacturer or "",
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
            **reference_cells(analysis, tp.index), **burden_cells(analysis, tp.index),
        })
    return rows


def reference_cells(analysis: Any, timepoint: int) -> dict[str, str]:
    """``liver_reference``/``spleen_reference``: SUVmean ± SD, who placed it, its warnings ("not placed: ...")."""
    cells = {}
    for organ in REFERENCE_ORGANS:
        region = analysis.reference(timepoint, organ)
        text = "" if region is None else (
            f"SUVmean {region.suv_mean:.2f} ± {region.suv_sd:.2f} ({region.diameter_mm:g} mm sphere, {region.source})"
            if region.placed else "not placed")
        warnings = "; ".join(region.warnings) if region is not None else ""
        cells[f"{organ}_reference"] = f"{text} ⚠ {warnings}" if warnings and region.placed else (warnings or text)
    return cells


def burden_cells(analysis: Any, timepoint: int) -> dict[str, str]:
    """``tumour_volume``, ``total_uptake`` (with the change from baseline) and ``lesions_by_site``."""
    from LesionResponseLib.analysis.burden import burden_rows

    rows = [r for r in burden_rows(analysis) if r["timepoint"] == timepoint]
    overall = next(r for r in rows if r["site"] == "all")

    def change(key: str) -> str:
        return "" if timepoint == 0 or overall[key] is None else f" ({signed_percent(overall[key])} vs T0)"

    return {"tumour_volume": f"{overall['volume_ml']:.1f} mL{change('volume_ml_change_pct')}",
            "total_uptake": f"{overall['suv_total_pvc']:.0f} SUV·mL PV-corrected{change('suv_total_pvc_change_pct')}",
            "lesions_by_site": ", ".join(f"{r['site']} {r['n_rois']} ({r['volume_ml']:.1f} mL)"
                                         for r in rows if r["site"] != "all" and r["n_rois"])}


class TimepointsLogic(FeatureLogic[TimepointsState]):
    """Refreshes the time-point rows (ROI counts, heterogeneity) after load and every edit."""

    def __init__(self, server: Server, context: ReviewContext) -> None:
        super().__init__(server, context, TimepointsState, NAMESPACE)
        context.listeners.append(self._on_change)

    def show_reference(self, timepoint: int, organ: str) -> None:
        """Centre time point ``timepoint``'s view on its ``organ`` reference sphere (the others follow through the
        registrations)."""
        nodes = self.context.nodes
        region = nodes.analysis.reference(int(timepoint), organ)
        if region is not None and region.placed:
            ras = mrml.lps_to_ras(region.centre_mm)
            self.context.quietly(lambda: mrml.follow_crosshair(nodes, ras, int(timepoint)))

    def _on_change(self, what: str) -> None:
        if what in ("loaded", "edited"):
            analysis = self.context.nodes.analysis
            self.data.rows = timepoint_rows(analysis)
            flags = [f"T{k} {'heterogeneous' if v else 'homogeneous'}" for k, v in sorted(analysis.heterogeneous.items())]
            self.data.heterogeneity = ", ".join(flags) or "no follow-up"
            self.data.patient = analysis.patient_id
