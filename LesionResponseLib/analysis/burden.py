"""What a physician reports besides the lesion categories: each lesion's uptake relative to the liver and the
spleen with a Krenning-like grade, and the patient's SSTR-expressing tumour burden per time point, overall and by
site, with its change from baseline.

**Ratios.** ``suv_max_to_liver`` = the ROI's SUVmax / the liver reference region's SUVmean of the same time point,
``suv_max_to_spleen`` likewise (``analysis.reference_regions``); empty when that region is not placed.

**Krenning-like grade** (``krenning_grade``). The Krenning scale grades somatostatin-receptor uptake against normal
liver and spleen (Kwekkeboom DJ, Krenning EP, Semin Nucl Med 2002;32:84-91: 1 much lower than liver, 2 about the
liver, 3 above the liver, 4 above the spleen or kidneys), read visually on planar scintigraphy and carried over to
SSTR PET (Hope TA et al., J Nucl Med 2023;64:204-210, the SNMMI/EANM SSTR PET guideline). Here it is computed, not
read: the lesion's SUVmax against the reference regions' SUVmean -

==========  =========================================================================
``≤2``      SUVmax ≤ liver SUVmean (grades 1 and 2 are not told apart)
``3``       liver SUVmean < SUVmax ≤ spleen SUVmean
``4``       SUVmax > spleen SUVmean
``≥3``      SUVmax > liver SUVmean, no spleen reference (splenectomy, not placed)
``""``      no liver reference, and not above a spleen reference
==========  =========================================================================

so it is Krenning-*like*: a visual grade compares the lesion's brightness with the organ's, which for a small
lesion on PET is nearer its SUVmax than its SUVmean, and the organ's typical brightness, its SUVmean.

**Burden** (accepted ROIs; ``site`` as ``analysis.sites`` or the reader set it): per time point the number of
lesion-ROIs, the SSTR-expressing tumour volume (Σ volume, mL) and the total lesion SSTR uptake (Σ SUVtotal and Σ
partial-volume-corrected SUVtotal, SUV·mL), overall and by site, and their change from the baseline (time point 0):
% for the sums, a difference for the count; no % where the baseline is 0.
"""

from __future__ import annotations

from typing import Any

from LesionResponseLib.datamodel import LESION_SITES, Analysis, LesionROI, ReferenceRegion

#: Site of a ROI whose site is not determined (no CT).
UNDETERMINED = "undetermined"
#: The burden's sums: column name -> the ROI attribute summed.
SUMS: dict[str, str] = {"volume_ml": "volume_ml", "suv_total": "suv_total", "suv_total_pvc": "suv_total_pvc"}
#: ``burden.csv`` columns (one row per time point and site; site ``all`` first).
BURDEN_COLUMNS = ["timepoint", "study_date", "site", "n_rois", *SUMS, "n_rois_change",
                  *(f"{name}_change_pct" for name in SUMS)]


def krenning_grade(suv_max: float, liver: float | None, spleen: float | None) -> str:
    """The Krenning-like grade (module docstring) of a lesion of ``suv_max`` against the reference SUVmeans."""
    if spleen is not None and suv_max > spleen:
        return "4"
    if liver is None:
        return ""
    if suv_max <= liver:
        return "≤2"
    return "3" if spleen is not None else "≥3"


def _placed_mean(region: ReferenceRegion | None) -> float | None:
    return region.suv_mean if region is not None and region.placed and region.suv_mean else None


def lesion_ratios(analysis: Analysis) -> dict[str, dict[str, Any]]:
    """Per ROI id: ``suv_max_to_liver``, ``suv_max_to_spleen`` (None without that reference) and
    ``krenning_grade``."""
    means = {(r.timepoint, r.organ): _placed_mean(r) for r in analysis.reference_regions}
    out = {}
    for roi in analysis.rois:
        liver, spleen = means.get((roi.timepoint, "liver")), means.get((roi.timepoint, "spleen"))
        out[roi.roi_id] = {"suv_max_to_liver": None if liver is None else roi.suv_max / liver,
                           "suv_max_to_spleen": None if spleen is None else roi.suv_max / spleen,
                           "krenning_grade": krenning_grade(roi.suv_max, liver, spleen)}
    return out


def site_of(roi: LesionROI) -> str:
    """The ROI's site, or :data:`UNDETERMINED`."""
    return roi.site or UNDETERMINED


def _sums(rois: list[LesionROI]) -> dict[str, float | int]:
    totals: dict[str, float | int] = {"n_rois": len(rois)}
    for column, attribute in SUMS.items():
        totals[column] = float(sum(getattr(r, attribute) or 0.0 for r in rois))
    return totals


def _change(value: float, baseline: float) -> float | None:
    return 100.0 * (value - baseline) / baseline if baseline > 0 else None


def burden_sites(analysis: Analysis) -> list[str]:
    """``all``, then the sites of :data:`LESION_SITES` (and :data:`UNDETERMINED`) some accepted ROI has."""
    present = {site_of(r) for r in analysis.rois if r.status == "accepted"}
    return ["all", *[s for s in (*LESION_SITES, UNDETERMINED) if s in present]]


def burden_rows(analysis: Analysis) -> list[dict[str, Any]]:
    """Rows of ``burden.csv`` (:data:`BURDEN_COLUMNS`): per time point and site, the counts, sums and changes."""
    accepted = [r for r in analysis.rois if r.status == "accepted"]
    rows = []
    baseline: dict[str, dict[str, float | int]] = {}
    for tp in analysis.timepoints:
        for site in burden_sites(analysis):
            sums = _sums([r for r in accepted if r.timepoint == tp.index and site in ("all", site_of(r))])
            if tp.index == 0:
                baseline[site] = sums
            base = baseline.get(site, _sums([]))
            row = {"timepoint": tp.index, "study_date": tp.study_date, "site": site, **sums,
                   "n_rois_change": int(sums["n_rois"]) - int(base["n_rois"])}
            row.update({f"{name}_change_pct": _change(float(sums[name]), float(base[name])) for name in SUMS})
            rows.append(row)
    return rows


def burden_summary(analysis: Analysis) -> dict[str, Any]:
    """The ``burden`` block of ``analysis.json``: per time point the reference regions' SUVmean and the burden
    overall and by site (:func:`burden_rows`), with the definitions' sources."""
    by_tp: dict[int, dict[str, Any]] = {}
    for row in burden_rows(analysis):
        entry = by_tp.setdefault(row["timepoint"], {"timepoint": row["timepoint"], "by_site": {}})
        values = {k: v for k, v in row.items() if k not in ("timepoint", "study_date", "site")}
        if row["site"] == "all":
            entry["overall"] = values
        else:
            entry["by_site"][row["site"]] = values
    for region in analysis.reference_regions:
        if region.timepoint in by_tp:
            by_tp[region.timepoint][f"{region.organ}_suv_mean"] = _placed_mean(region)
    return {"definition": "accepted lesion-ROIs; volume_ml = SSTR-expressing tumour volume, suv_total(_pvc) = total "
                          "lesion SSTR uptake; changes from time point 0 (docs/reference-regions-and-burden.md)",
            "timepoints": [by_tp[k] for k in sorted(by_tp)]}
