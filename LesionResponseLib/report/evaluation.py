"""``lesion-response evaluate OUT --reference REF...``: an analysis against a site's reference, or a phantom's truth.

The reference is a phantom folder (its ``truth.json`` and true masks, :class:`analysis.truth.Reference`) or a site's
contours - RTSTRUCT, DICOM SEG, NIfTI label maps (``dicomio.contours``, made a reference by
``analysis.reference.contour_reference``). The figures are those of ``analysis.truth`` (the functions
``benchmarks/bench_analysis.py`` prints from a phantom's truth, so on a phantom they are the same figures):

- detection per time point and overall (``detection_figures``: sensitivity, false positives per scan, precision,
  F1; the matching rule is written into the output);
- contours and measures of matched lesions: Dice, and volume, SUVmax, SUVmean and SUVtotal agreement as
  Bland-Altman bias and 95 % limits of agreement (``bland_altman``), with plots;
- categories, where the reference covers the baseline and a follow-up: over all reference lesion x follow-up
  pairs (``lesion_pair_agreement``) and over matched tracks, with heterogeneity (``truth_agreement``);
- the places where they disagree (missed lesions, false positives, contours with Dice < 0.5), as PET slices with
  both contours.

Written to ``OUT/evaluation/``: ``evaluation.json``, ``evaluation.html`` and ``evaluation.pdf``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from LesionResponseLib import __version__
from LesionResponseLib.analysis.outputs import load_analysis
from LesionResponseLib.analysis.truth import (
    AGREEMENT_MEASURES,
    Reference,
    bland_altman,
    covered_follow_ups,
    detection_figures,
    lesion_pair_agreement,
    truth_agreement,
)
from LesionResponseLib.datamodel import Analysis
from LesionResponseLib.errors import describe
from LesionResponseLib.report.data import ReportInputError

MATCHING_RULE = ("A reference lesion at a time point is detected when an accepted lesion-ROI overlaps it (a lesion "
                 "smaller than 0.5 mL also when a ROI touches it); a ROI is a true positive when the reference lesion "
                 "it overlaps most exists (a ROI overlapping none is a false positive); matched lesions are compared "
                 "with the union of the ROIs going to them. Tracks: an output track goes to the reference track most "
                 "of its ROIs go to.")
POOR_DICE = 0.5  # a matched lesion whose contour overlaps the reference less than this is shown as a disagreement
MAX_IMAGES = 24  # disagreement images on the page (the JSON lists them all)
VIEW_MM = 80.0  # side of the PET crop around a disagreement


def build_reference(out_dir: Path, analysis: Analysis, references: Sequence[str | Path], timepoint: int | None = None,
                    names: str | None = None) -> tuple[Reference, list[dict[str, str]]]:
    """The :class:`Reference` of ``references`` (a phantom folder, or contour files) and what was skipped."""
    paths = [Path(p) for p in references]
    if len(paths) == 1 and (paths[0] / "truth.json").is_file():
        return Reference.from_phantom(paths[0]), []
    from LesionResponseLib.analysis.reference import contour_reference
    from LesionResponseLib.dicomio.contours import read_reference

    def suv_of(k: int) -> sitk.Image:
        path = out_dir / "suv" / f"tp{k}.nii.gz"
        if not path.is_file():
            raise ReportInputError(describe("the SUV PET of this time point is missing", path=path,
                                            fix="Re-run `lesion-response analyze` (it writes suv/)."))
        return sitk.ReadImage(str(path), sitk.sitkFloat32)

    found = read_reference(paths, analysis.timepoints, suv_of, timepoint, names)
    if not found.covered:
        raise ReportInputError(describe("no reference structure could be read", path=", ".join(map(str, paths)),
                                        fix="Check the files (skipped: " + "; ".join(
                                            f"{s['name'] or s['file']}: {s['reason']}" for s in found.skipped) + ")."))
    return contour_reference(found.structures, found.covered, analysis, suv_of, ", ".join(map(str, paths))), \
        found.skipped


def evaluation_figures(analysis: Analysis, out_dir: Path, reference: Reference) -> dict[str, Any]:
    """Every figure of the module docstring, JSON-ready (the raw truth-comparison results included)."""
    detection = detection_figures(analysis, out_dir, reference)
    measures = {m: bland_altman(detection["matched"], m) for m in AGREEMENT_MEASURES}
    dice = [m["dice"] for m in detection["matched"]]
    figures: dict[str, Any] = {
        "reference": {"kind": reference.kind, "source": reference.source,
                      "covered_timepoints": reference.truth.get("covered_timepoints",
                                                                list(range(int(reference.truth["n_timepoints"])))),
                      "lesions": len(reference.truth["lesions"]),
                      "overlap_voxels": reference.truth.get("overlap_voxels", 0)},
        "matching_rule": MATCHING_RULE,
        "detection": {k: v for k, v in detection.items() if k != "matched"},
        "contours": {"matched": len(dice), "dice_median": float(np.median(dice)) if dice else None,
                     "dice_quartiles": [float(q) for q in np.percentile(dice, [25, 75])] if dice else None},
        "measures": {m: {k: v for k, v in f.items() if k not in ("means", "differences")} for m, f in measures.items()},
        "matched": detection["matched"],
    }
    if covered_follow_ups(reference.truth):
        pairs = lesion_pair_agreement(analysis, out_dir, reference)
        tracks = truth_agreement(analysis, out_dir, reference)
        figures["categories"] = {
            "available": True,
            **{k: pairs[k] for k in ("agreement_all", "n_all", "agreement_large", "n_large", "decreasing_recall",
                                     "n_decreasing")},
            "confusions": {f"{a}->{b}": c for (a, b), c in pairs["confusions"].items()},
            "track_agreement": tracks["category_agreement"], "track_pairs": tracks["category_pairs"],
            "heterogeneity_agreement": tracks["heterogeneity_agreement"],
            "reference_tracks": tracks["truth_tracks"], "reference_tracks_found": tracks["truth_tracks_found"]}
        figures["truth_agreement"] = {k: v for k, v in tracks.items() if k != "heterogeneous_truth"}
        figures["lesion_pair_agreement"] = {k: (v if k != "confusions" else {f"{a}->{b}": c for (a, b), c in v.items()})
                                            for k, v in pairs.items() if k != "pairs"}
    else:
        figures["categories"] = {"available": False,
                                 "reason": "the reference does not cover the baseline and a follow-up"}
    figures["disagreements"] = disagreements(analysis, reference, detection)
    return figures


def disagreements(analysis: Analysis, reference: Reference, detection: dict[str, Any]) -> list[dict[str, Any]]:
    """Where the analysis and the reference disagree: reference lesions no ROI detected (largest first), false-
    positive ROIs (hottest first), matched lesions with Dice < :data:`POOR_DICE` (worst first)."""
    truth = reference.truth
    matched_ids = {(m["timepoint"], m["lesion_id"]) for m in detection["matched"]}
    owned = {rid for m in detection["matched"] for rid in m["roi_ids"]}
    rows: list[dict[str, Any]] = []
    covered = set(detection_rows_timepoints(detection))
    for lesion in truth["lesions"]:
        for k, entry in lesion["timepoints"].items():
            if entry["present"] and int(k) in covered and (int(k), lesion["lesion_id"]) not in matched_ids:
                rows.append({"kind": "missed", "timepoint": int(k), "lesion_id": lesion["lesion_id"],
                             "name": lesion.get("name", f"lesion {lesion['lesion_id']}"),
                             "volume_ml": float(entry["volume_ml"]), "labels": entry["labels"]})
    for roi in analysis.rois:
        if roi.status == "accepted" and roi.timepoint in covered and roi.roi_id not in owned:
            rows.append({"kind": "false positive", "timepoint": roi.timepoint, "roi_id": roi.roi_id,
                         "source": roi.source, "volume_ml": roi.volume_ml, "suv_max": roi.suv_max,
                         "centroid_mm": list(roi.centroid_mm)})
    for m in detection["matched"]:
        if m["dice"] < POOR_DICE:
            lesion = next(le for le in truth["lesions"] if le["lesion_id"] == m["lesion_id"])
            rows.append({"kind": "contour", "timepoint": m["timepoint"], "lesion_id": m["lesion_id"],
                         "name": lesion.get("name", f"lesion {m['lesion_id']}"), "dice": m["dice"],
                         "roi_ids": m["roi_ids"], "labels": lesion["timepoints"][str(m["timepoint"])]["labels"],
                         "volume_ml": m["reference"]["volume_ml"]})
    order = {"missed": 0, "false positive": 1, "contour": 2}
    return sorted(rows, key=lambda r: (order[r["kind"]], -r.get("volume_ml", 0.0) if r["kind"] == "missed"
                                       else -r.get("suv_max", 0.0) if r["kind"] == "false positive"
                                       else r.get("dice", 0.0)))


def detection_rows_timepoints(detection: dict[str, Any]) -> list[int]:
    """The time points :func:`detection_figures` counted (those the reference covers)."""
    return [row["timepoint"] for row in detection["timepoints"]]


# ------------------------------------------------------------------------------------------------ the page
def _b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")


def _bland_altman_png(measures: dict[str, dict[str, Any]]) -> bytes:
    from LesionResponseLib.report.plots import _png, _pyplot

    plt = _pyplot()
    names = {"volume_ml": "volume [mL]", "suv_max": "SUVmax", "suv_mean": "SUVmean", "suv_total": "SUVtotal [SUV·mL]"}
    fig, axes = plt.subplots(2, 2, figsize=(8.0, 6.4))  # the four measures of AGREEMENT_MEASURES
    for ax, (measure, f) in zip(np.ravel(axes), measures.items(), strict=True):
        ax.scatter(f["means"], f["differences"], s=12, color="#3a6ea5", alpha=0.8)
        if f["n"]:
            for value, style in ((f["bias"], "-"), (f["lower"], "--"), (f["upper"], "--")):
                ax.axhline(value, color="#b03030", linestyle=style, linewidth=1)
            ax.set_title(f"{names[measure]}\nbias {f['bias']:+.1f} %, LoA {f['lower']:+.1f} to {f['upper']:+.1f} %",
                         fontsize=9)
        ax.axhline(0, color="#888", linewidth=0.6)
        if measure in ("volume_ml", "suv_total"):  # spread over decades; SUVmax and SUVmean are not
            ax.set_xscale("log")
        ax.set_xlabel(f"mean of analysis and reference ({names[measure]})", fontsize=8)
        ax.set_ylabel("difference, % of mean", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _disagreement_png(row: dict[str, Any], out_dir: Path, analysis: Analysis, reference: Reference) -> bytes:
    """An axial PET slice around the disagreement, reference contour green, analysis ROIs magenta."""
    from LesionResponseLib.report.plots import _png, _pyplot

    k = row["timepoint"]
    pet = sitk.ReadImage(str(out_dir / "suv" / f"tp{k}.nii.gz"), sitk.sitkFloat32)
    suv = sitk.GetArrayViewFromImage(pet)
    ours = sitk.GetArrayFromImage(sitk.ReadImage(str(out_dir / "labels" / f"tp{k}.nii.gz")))
    accepted = [r.label for r in analysis.rois if r.timepoint == k and r.status == "accepted"]
    ours = np.isin(ours, accepted)
    theirs = reference.label_array(k) > 0
    if row["kind"] == "false positive":
        centre = np.asarray(pet.TransformPhysicalPointToIndex(tuple(row["centroid_mm"])))[::-1]
    else:
        centre = np.round(np.argwhere(np.isin(reference.label_array(k), row["labels"])).mean(0)).astype(int)
    half = [max(4, int(VIEW_MM / 2 / s)) for s in pet.GetSpacing()[::-1][1:]]
    z = int(np.clip(centre[0], 0, suv.shape[0] - 1))
    window = (z, slice(max(0, centre[1] - half[0]), centre[1] + half[0]),
              slice(max(0, centre[2] - half[1]), centre[2] + half[1]))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(2.6, 2.6))
    crop = suv[window]
    ax.imshow(crop, cmap="gray_r", vmin=0, vmax=max(float(np.percentile(crop, 99.5)), 1.0), origin="upper")
    for mask, colour in ((theirs[window], "#1a9a1a"), (ours[window], "#c0209a")):
        if mask.any():
            ax.contour(mask.astype(float), [0.5], colors=colour, linewidths=1.2)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(_caption(row), fontsize=7)
    return _png(fig)


def _caption(row: dict[str, Any]) -> str:
    if row["kind"] == "missed":
        return f"TP{row['timepoint']} missed: {row['name']}, {row['volume_ml']:.2f} mL"
    if row["kind"] == "false positive":
        return f"TP{row['timepoint']} false positive: {row['roi_id']} ({row['source']}), SUVmax {row['suv_max']:.1f}"
    return f"TP{row['timepoint']} contour: {row['name']}, Dice {row['dice']:.2f}"


def render_evaluation_html(figures: dict[str, Any], analysis: Analysis, out_dir: Path, reference: Reference,
                           measures: dict[str, dict[str, Any]]) -> str:
    import jinja2

    from LesionResponseLib.report.patient import TEMPLATES

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    images = [{"png": _b64(_disagreement_png(row, out_dir, analysis, reference)), "caption": _caption(row)}
              for row in figures["disagreements"][:MAX_IMAGES]]
    return env.get_template("evaluation.html.j2").render(
        patient_id=analysis.patient_id, generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        version=analysis.software_version or __version__, f=figures, images=images,
        n_disagreements=len(figures["disagreements"]), bland_altman=_b64(_bland_altman_png(measures)),
        measure=analysis.parameters.response.measure)


def write_evaluation(out_dir: str | Path, references: Sequence[str | Path], *, timepoint: int | None = None,
                     names: str | None = None, dest: str | Path | None = None,
                     formats: tuple[str, ...] = ("html", "pdf")) -> tuple[dict[str, Any], dict[str, Path]]:
    """Evaluate the analysis in ``out_dir`` against ``references`` and write ``evaluation.json`` (+ HTML, PDF) to
    ``dest`` (default ``OUT/evaluation``); returns the figures and the paths."""
    from LesionResponseLib.report.patient import html_to_pdf

    out = Path(out_dir)
    analysis = load_analysis(out)
    reference, skipped = build_reference(out, analysis, references, timepoint, names)
    figures = evaluation_figures(analysis, out, reference)
    figures["reference"]["skipped"] = skipped
    folder = Path(dest) if dest is not None else out / "evaluation"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "evaluation.json"}
    paths["json"].write_text(json.dumps(figures, indent=1, default=_json_default))
    if "html" in formats or "pdf" in formats:
        measures = {m: bland_altman(figures["matched"], m) for m in AGREEMENT_MEASURES}
        paths["html"] = folder / "evaluation.html"
        paths["html"].write_text(render_evaluation_html(figures, analysis, out, reference, measures),
                                 encoding="utf-8")
        if "pdf" in formats:
            paths["pdf"] = html_to_pdf(paths["html"], folder / "evaluation.pdf")
    return figures, paths


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
