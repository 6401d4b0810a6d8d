"""Report figures as PNG bytes (matplotlib, Agg backend): spaghetti, waterfall, category bars, MIPs."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.report.data import (
    CATEGORY_COLOURS,
    FOLLOW_UP_CATEGORIES,
    SITE_COLOURS,
    ReportData,
    category_counts,
)
from LesionResponseLib.terminal import signed_percent

FIG_DPI = 110  # enough for a sharp A4 print, small enough to embed several figures in one HTML file
REFERENCE_COLOUR = "#d000d0"  # magenta: no category colour, visible on the inverted grey MIP


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIG_DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def _last_category(categories: dict[int, str]) -> str:
    """The category at the last follow-up where the track is not ``absent``."""
    present = [c for _, c in sorted(categories.items()) if c != "absent"]
    return present[-1] if present else "baseline"


def _legend(ax: Any, names: tuple[str, ...] | list[str], extra: list[Any] | None = None, **kwargs: Any) -> None:
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=CATEGORY_COLOURS[n], label=n) for n in names] + list(extra or []),
              frameon=False, **kwargs)


def spaghetti_plot(data: ReportData, floor_suv_ml: float = 0.1) -> bytes:
    """SUVtotal per track over time points (log scale), coloured by the track's last category, with ± one SD
    (``TrackResponse.suv_total_sd``) as error bars where the analysis has it.

    ``floor_suv_ml`` (SUV·mL) is where absent ROIs (SUVtotal 0) are drawn on the log axis.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    n_tp = len(data.analysis.timepoints)
    for response in data.analysis.responses:
        tps = list(range(n_tp))
        values = [max(response.suv_total.get(k, 0.0), floor_suv_ml) for k in tps]
        colour = CATEGORY_COLOURS.get(_last_category(response.categories), "#777777")
        ax.plot(tps, values, "-o", color=colour, lw=1.2, ms=3.5, alpha=0.85)
        sds = [response.suv_total_sd.get(k, 0.0) if response.suv_total.get(k, 0.0) > 0 else 0.0 for k in tps]
        if any(sds):  # the lower bar stops above the floor (log axis)
            lower = [min(sd, max(v - floor_suv_ml, 0.0)) for v, sd in zip(values, sds, strict=True)]
            ax.errorbar(tps, values, yerr=[lower, sds], fmt="none", ecolor=colour, elinewidth=0.9, capsize=2.5,
                        alpha=0.85)
    ax.set_yscale("log")
    ax.axhline(floor_suv_ml, color="#bbbbbb", lw=0.8, ls=":")
    ax.set_xticks(range(n_tp), [_tp_label(data, k) for k in range(n_tp)])
    ax.set_xlabel("time point (study date)")
    ax.set_ylabel(f"{measure_name(data)} per track [SUV·mL] (log)")
    ax.set_title(f"{measure_name(data)} per track ({len(data.analysis.responses)} tracks; bars ± 1 SD); "
                 "dotted line = absent")
    _legend(ax, FOLLOW_UP_CATEGORIES, loc="upper left", bbox_to_anchor=(1.0, 1.0), title="last category")
    return _png(fig)


def measure_name(data: ReportData) -> str:
    """Name of the SUVtotal that drove the categories (``AnalysisParameters.response.measure``)."""
    return "SUVtotal (PV-corrected)" if data.analysis.parameters.response.measure == "suv_total_pvc" else "SUVtotal"


def _tp_label(data: ReportData, k: int) -> str:
    date = data.analysis.timepoints[k].study_date
    pretty = f"{date[:4]}-{date[4:6]}-{date[6:]}" if len(date) == 8 else date
    return f"TP{k}\n{pretty}"


def waterfall_plot(data: ReportData, follow_up: int | None = None, cap_pct: float = 300.0,
                   decrease_pct: float = -30.0, increase_pct: float = 30.0) -> bytes:
    """ΔSUVtotal % per track at ``follow_up`` (default: the last), sorted; bars capped at ``cap_pct`` %. Each measured
    change carries its interval (``TrackResponse.delta_interval_pct``) as an error bar; an *indeterminate* call
    (the interval holds a threshold) has a hatched bar."""
    plt = _pyplot()
    k = follow_up if follow_up is not None else len(data.analysis.timepoints) - 1
    rows = [(r.delta_suv_total_pct.get(k), r.categories.get(k, "absent"), r.delta_interval_pct.get(k),
             bool(r.indeterminate.get(k))) for r in data.analysis.responses]
    rows = [(v if v is not None else (-100.0 if c in ("decreasing", "disappearing") else 100.0), c, ci, flag)
            for v, c, ci, flag in rows if c != "absent"]
    rows.sort(key=lambda row: -row[0])
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    values = [min(v, cap_pct) for v, *_ in rows]
    bars = ax.bar(range(len(rows)), values, color=[CATEGORY_COLOURS[c] for _, c, *_ in rows], width=0.85)
    for bar, (_, _, _, flag) in zip(bars, rows, strict=True):
        if flag:
            bar.set_hatch("////")
            bar.set_edgecolor("#333333")
    measured = [(x, v, ci) for x, (v, _, ci, _) in enumerate(rows) if ci is not None]
    if measured:
        xs = [x for x, _, _ in measured]
        ys = [min(v, cap_pct) for _, v, _ in measured]
        low = [max(min(v, cap_pct) - max(ci[0], -100.0), 0.0) for _, v, ci in measured]
        high = [max(min(ci[1], cap_pct) - min(v, cap_pct), 0.0) for _, v, ci in measured]
        ax.errorbar(xs, ys, yerr=[low, high], fmt="none", ecolor="#222222", elinewidth=0.9, capsize=2.0)
    for value in (decrease_pct, increase_pct):
        ax.axhline(value, color="#555555", ls="--", lw=0.9)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks([])
    ax.set_ylim(min(-115.0, ax.get_ylim()[0]), ax.get_ylim()[1])  # room between the -100 % bars and the caption
    ax.set_xlabel(f"tracks at TP{k}, sorted (n = {len(rows)}); bars capped at +{cap_pct:.0f} %;\n"
                  f"Δ undefined (no reference ROI) drawn at +100 %, disappearing at −100 %", fontsize=9)
    ax.set_ylabel(f"Δ{measure_name(data)} [%]")
    level = 100 * data.analysis.parameters.response.interval_level
    ax.set_title(f"Waterfall of Δ{measure_name(data)} at TP{k} vs reference\n"
                 f"dashed: ±30 %; error bars: {level:.0f} % intervals; hatched: indeterminate", fontsize=10)
    _legend(ax, FOLLOW_UP_CATEGORIES, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def category_bars(data: ReportData) -> bytes:
    """Stacked bars: track categories per follow-up."""
    plt = _pyplot()
    counts = category_counts(data)
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    follow_ups = sorted(counts)
    bottom = np.zeros(len(follow_ups))
    for cat in FOLLOW_UP_CATEGORIES:
        heights = np.array([counts[k][cat] for k in follow_ups], dtype=float)
        ax.bar([f"TP{k}" for k in follow_ups], heights, bottom=bottom, color=CATEGORY_COLOURS[cat], label=cat)
        for x, (h, b) in enumerate(zip(heights, bottom, strict=True)):
            if h > 0:
                ax.text(x, b + h / 2, f"{int(h)}", ha="center", va="center", fontsize=8)
        bottom += heights
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("number of lesion-ROI tracks")
    ax.set_xlabel("follow-up")
    ax.set_title("Track categories per follow-up")
    _legend(ax, FOLLOW_UP_CATEGORIES, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def _coronal(volume: np.ndarray, image: sitk.Image, reduce: str = "max") -> tuple[np.ndarray, list[float]]:
    """Coronal projection (along the anterior-posterior axis) of a (z, y, x) array, head up.

    Returns the 2D array (rows = superior→inferior) and the matplotlib extent in mm.
    """
    projection = volume.max(axis=1) if reduce == "max" else volume.any(axis=1)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    if direction[2, 2] > 0:  # index z runs inferior→superior: flip so the head is on top
        projection = projection[::-1]
    if direction[0, 0] < 0:  # keep patient right on the viewer's left (radiological convention)
        projection = projection[:, ::-1]
    sx, _, sz = image.GetSpacing()
    width, height = projection.shape[1] * sx, projection.shape[0] * sz
    return projection, [0.0, width, height, 0.0]


def mip_figure(data: ReportData, timepoint: int, labels: sitk.Image, *, suv: sitk.Image | None,
               disappearing_next: set[int] | None = None, suv_window: float = 10.0) -> bytes:
    """Coronal PET MIP with each accepted lesion-ROI filled and outlined in its category colour.

    ``suv_window`` (SUV) is the top of the inverted grey scale (DOTATATE lesions are far above it).
    ROIs of tracks in ``disappearing_next`` (they disappear at the next time point) get a blue outline.
    """
    plt = _pyplot()
    from matplotlib.colors import to_rgba

    lab = sitk.GetArrayFromImage(labels).astype(np.int32)
    fig, ax = plt.subplots(figsize=(3.2, 5.2))
    if suv is not None:
        pet = sitk.GetArrayFromImage(sitk.Resample(suv, labels, sitk.Transform(), sitk.sitkLinear, 0.0))
        mip, extent = _coronal(pet, labels)
        ax.imshow(mip, cmap="gray_r", vmin=0, vmax=suv_window, extent=extent, interpolation="bilinear")
    else:
        mip, extent = _coronal(lab > 0, labels, "any")
        ax.imshow(np.zeros_like(mip, dtype=float), cmap="gray_r", vmin=0, vmax=1, extent=extent)
    overlay = np.zeros((*mip.shape, 4))
    used: list[str] = []
    for roi in data.accepted_rois(timepoint):
        cat = data.roi_category.get(roi.roi_id) or "absent"  # grey: ROI outside any assessed track
        mask, _ = _coronal(lab == roi.label, labels, "any")
        overlay[mask] = to_rgba(CATEGORY_COLOURS.get(cat, "#777777"), 0.55)
        edge = CATEGORY_COLOURS["disappearing"] if data.roi_track.get(roi.roi_id) in (disappearing_next or set()) \
            else CATEGORY_COLOURS.get(cat, "#777777")
        if mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors=[edge], linewidths=1.0, extent=extent,
                       origin="upper")
        used.append(cat)
    ax.imshow(overlay, extent=extent, interpolation="nearest")
    references = _draw_reference_regions(ax, data, timepoint, labels, extent)
    ax.set_title(f"TP{timepoint} {data.analysis.timepoints[timepoint].study_date}", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.02, 0.98, "R", transform=ax.transAxes, va="top", fontsize=9, color="#333333")
    ax.text(0.98, 0.98, "L", transform=ax.transAxes, va="top", ha="right", fontsize=9, color="#333333")
    names = [c for c in ("baseline", *FOLLOW_UP_CATEGORIES) if c in used]
    if disappearing_next:
        names.append("disappearing")
    if names or references:
        _legend(ax, list(dict.fromkeys(names)), loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=2,
                fontsize=8, extra=references)
    return _png(fig)


def _draw_reference_regions(ax: Any, data: ReportData, timepoint: int, labels: sitk.Image,
                            extent: list[float]) -> list[Any]:
    """Outline the placed reference spheres of ``timepoint`` (dashed, :data:`REFERENCE_COLOUR`) on a coronal MIP
    axis; returns their legend handles."""
    from matplotlib.lines import Line2D

    from LesionResponseLib.analysis.reference_regions import sphere_mask

    handles = []
    for region in data.analysis.reference_regions:
        if region.timepoint != timepoint or not region.placed:
            continue
        mask, _ = _coronal(sphere_mask(labels, region.centre_mm, region.diameter_mm), labels, "any")
        if mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors=[REFERENCE_COLOUR], linewidths=1.2,
                       linestyles="--", extent=extent, origin="upper")
            handles.append(Line2D([], [], color=REFERENCE_COLOUR, ls="--", label=f"{region.organ} reference"))
    return handles


def burden_plot(data: ReportData) -> bytes:
    """Tumour volume (SSTR-expressing on SSTR PET) and total lesion uptake (PV-corrected SUVtotal) per time
    point, stacked by site, with the overall change from baseline over each bar (``analysis.burden``)."""
    from LesionResponseLib.analysis.burden import burden_rows

    plt = _pyplot()
    rows = burden_rows(data.analysis)
    n_tp = len(data.analysis.timepoints)
    sites = [s for s in dict.fromkeys(r["site"] for r in rows) if s != "all"]
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
    # the volume is SSTR-expressing only on SSTR PET; another tracer analysed on request is named in the report
    expressing = "" if any(t.tracer_override for t in data.analysis.timepoints) else "SSTR "
    for ax, (column, label) in zip(axes, (("volume_ml", f"{expressing}tumour volume [mL]"),
                                          ("suv_total_pvc", "total lesion uptake [SUV·mL]\n(PV-corrected SUVtotal)")),
                                   strict=True):
        bottom = np.zeros(n_tp)
        for site in sites:
            heights = np.array([next((r[column] for r in rows if r["timepoint"] == k and r["site"] == site), 0.0)
                                for k in range(n_tp)])
            ax.bar(range(n_tp), heights, bottom=bottom, color=SITE_COLOURS.get(site, "#777777"), label=site,
                   width=0.7)
            bottom += heights
        for k in range(n_tp):
            change = next(r[f"{column}_change_pct"] for r in rows if r["timepoint"] == k and r["site"] == "all")
            if k and change is not None:
                ax.text(k, bottom[k], signed_percent(change), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(n_tp), [_tp_label(data, k) for k in range(n_tp)], fontsize=8)
        ax.set_ylabel(label)
        ax.set_ylim(0, max(bottom.max(), 1e-6) * 1.15)
    change = " (change vs TP0)" if n_tp > 1 else ""  # a baseline-only analysis has no change to show
    axes[0].set_title(f"Tumour volume by site{change}")
    axes[1].set_title(f"Total uptake by site{change}")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, title="site")
    fig.tight_layout()
    return _png(fig)
