"""Agreement of an analysis with phantom ground truth (``truth.json`` + ``truth/tp{k}_lesions.nii.gz``).

Correspondence: each output ROI goes to the truth lesion label it overlaps most (both label maps on the
same PET grid; a ROI beside a lesion smaller than 0.5 mL without overlapping it goes to that lesion,
:func:`roi_truth_labels`); an output track goes to the truth track most of its ROIs went to (majority). Truth tracks
are the ``tracks`` entries of ``truth.json`` (splits and merges share one track id).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.analysis.response import track_suv_totals
from LesionResponseLib.config import MEASURES
from LesionResponseLib.datamodel import Analysis

#: A ROI that overlaps no true lesion still finds the true lesion it touches when that lesion is smaller than
#: this (mL; docs/DOMAIN.md's 0.5 mL small-lesion line, 8 PET voxels of 4 mm), see :func:`roi_truth_labels`.
TINY_LESION_ML = 0.5


def roi_truth_labels(pred: np.ndarray, true: np.ndarray, tiny_labels: set[int] | frozenset = frozenset(),
                     ) -> dict[int, int]:
    """Output ROI label → the true lesion label it overlaps most (both (z, y, x) label arrays on one grid).

    A ROI overlapping no true lesion goes to the lesion of ``tiny_labels`` that the ROI grown by one voxel (26
    neighbours) overlaps most: the truth mask of a lesion smaller than a PET voxel is its single most-covered
    voxel, and the PSF (5-7 mm FWHM, more than one 4 mm voxel) with noise puts such a lesion's peak, and the
    contour around it, on a neighbour as often as on that voxel. Without it a correct find of a 0.1 mL lesion
    would count as a false positive and the lesion as missed. Larger lesions need a real overlap.
    """
    from scipy import ndimage

    from LesionResponseLib.tracking.evaluate import most_overlapped_labels as most_overlapped

    owner = most_overlapped(pred, true)
    unmatched = [v for v in np.unique(pred[pred > 0]).tolist() if v not in owner]
    if unmatched and tiny_labels:
        grown = ndimage.grey_dilation(np.where(np.isin(pred, unmatched), pred, 0), size=(3, 3, 3))
        near = most_overlapped(grown, np.where(np.isin(true, sorted(tiny_labels)), true, 0))
        owner.update({label: t for label, t in near.items() if label in unmatched})
    return owner


def _tiny_labels(truth: dict, k: int) -> set[int]:
    """True lesion labels at time point ``k`` of lesions smaller than :data:`TINY_LESION_ML`."""
    return {int(label) for le in truth["lesions"] for label in le["timepoints"][str(k)]["labels"]
            if 0 < float(le["timepoints"][str(k)]["volume_ml"] or 0.0) < TINY_LESION_ML}


def _label_arrays(analysis_dir: str | Path, phantom_dir: str | Path, k: int) -> tuple[np.ndarray, np.ndarray]:
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(Path(analysis_dir) / "labels" / f"tp{k}.nii.gz")))
    true = sitk.GetArrayFromImage(sitk.ReadImage(str(Path(phantom_dir) / f"truth/tp{k}_lesions.nii.gz")))
    return pred, true


def roi_to_truth_track(analysis_dir: str | Path, phantom_dir: str | Path, truth: dict) -> dict[str, int]:
    """Output ROI id → truth track id, by largest voxel overlap with the truth lesion labels (a ROI touching a
    tiny lesion without overlapping it: :func:`roi_truth_labels`)."""
    label_track = {(int(tp), int(label)): le["track_id"] for le in truth["lesions"]
                   for tp, entry in le["timepoints"].items() for label in entry["labels"]}
    result: dict[str, int] = {}
    for k in range(int(truth["n_timepoints"])):
        pred, true = _label_arrays(analysis_dir, phantom_dir, k)
        for p, t in roi_truth_labels(pred, true, _tiny_labels(truth, k)).items():
            if (k, t) in label_track:
                result[f"tp{k}-L{p:04d}"] = label_track[(k, t)]
    return result


def _track_volumes(truth: dict) -> dict[int, dict[int, float]]:
    volumes: dict[int, dict[int, float]] = {}
    for le in truth["lesions"]:
        for tp, entry in le["timepoints"].items():
            per = volumes.setdefault(le["track_id"], {})
            per[int(tp)] = per.get(int(tp), 0.0) + float(entry.get("volume_ml") or 0.0)
    return volumes


def truth_agreement(analysis: Analysis, analysis_dir: str | Path, phantom_dir: str | Path,
                    min_volume_ml: float = 2.0) -> dict[str, Any]:
    """Category, heterogeneity and SUVtotal agreement with the phantom truth.

    Returns ``category_agreement`` (matched track × follow-up pairs with equal category / all),
    ``heterogeneity_agreement`` (follow-ups with equal flag / all), ``suv_total_errors_pct`` (signed %
    error of the track SUVtotal for truth tracks whose true volume at that time point is ≥ ``min_volume_ml``)
    and ``suv_total_pvc_errors_pct`` (the same for the partial-volume-corrected SUVtotal), the unmatched
    track counts and the mismatches.
    """
    truth = json.loads((Path(phantom_dir) / "truth.json").read_text())
    n = int(truth["n_timepoints"])
    owner = roi_to_truth_track(analysis_dir, phantom_dir, truth)
    responses = {r.track_id: r for r in analysis.responses}
    volumes = _track_volumes(truth)
    agree = total = 0
    mismatches: list[dict[str, Any]] = []
    errors: dict[str, list[float]] = {m: [] for m in MEASURES}
    rois_by_id = {r.roi_id: r for r in analysis.rois}
    matched_truth: set[int] = set()
    for track in analysis.tracks:
        votes = Counter(owner.get(r) for ids in track.rois.values() for r in ids if r in owner)
        response = responses.get(track.track_id)
        if not votes or response is None:
            continue
        true_id = votes.most_common(1)[0][0]
        matched_truth.add(true_id)
        entry = truth["tracks"][str(true_id)]
        for k in range(1, n):
            total += 1
            agree += response.categories[k] == entry["categories"][str(k)]
            if response.categories[k] != entry["categories"][str(k)]:
                mismatches.append({"track_id": track.track_id, "truth_track": true_id, "follow_up": k,
                                   "measured": response.categories[k], "truth": entry["categories"][str(k)]})
        for measure in MEASURES:
            measured = track_suv_totals(track, rois_by_id, n, measure)
            for k in range(n):
                if volumes[true_id].get(k, 0.0) >= min_volume_ml and entry["suv_total"][k] > 0:
                    errors[measure].append(100.0 * ((measured[k] or 0.0) / entry["suv_total"][k] - 1.0))
    hetero = [bool(analysis.heterogeneous.get(k)) == bool(truth["heterogeneous"][str(k)]) for k in range(1, n)]
    return {
        "category_agreement": agree / total if total else None, "category_pairs": total,
        "heterogeneity_agreement": float(np.mean(hetero)) if hetero else None,
        "heterogeneous_truth": {int(k): v for k, v in truth["heterogeneous"].items()},
        "suv_total_errors_pct": errors["suv_total"], "suv_total_pvc_errors_pct": errors["suv_total_pvc"],
        "truth_tracks": len(truth["tracks"]), "truth_tracks_found": len(matched_truth),
        "mismatches": mismatches,
    }


def _truth_track_owner(analysis: Analysis, owner: dict[str, int]) -> dict[int, int]:
    """Truth track id → the output track holding most of the ROIs that went to it."""
    votes: dict[int, Counter] = {}
    for track in analysis.tracks:
        for ids in track.rois.values():
            for rid in ids:
                if rid in owner:
                    votes.setdefault(owner[rid], Counter())[track.track_id] += 1
    return {true_id: counter.most_common(1)[0][0] for true_id, counter in votes.items()}


def _truth_track_volume(truth: dict) -> dict[int, list[float]]:
    n = int(truth["n_timepoints"])
    volumes: dict[int, list[float]] = {}
    for le in truth["lesions"]:
        per = volumes.setdefault(int(le["track_id"]), [0.0] * n)
        for tp, entry in le["timepoints"].items():
            per[int(tp)] += float(entry.get("volume_ml") or 0.0)
    return volumes


def lesion_pair_agreement(analysis: Analysis, analysis_dir: str | Path, phantom_dir: str | Path,
                          min_volume_ml: float = 0.5) -> dict[str, Any]:
    """Categories over **all** true lesion × follow-up pairs, detection by history, and false positives.

    - A pair is a truth track × follow-up ``k`` whose true category is not ``absent``; its measured category
      is that of the output track holding most of the truth track's ROIs (a truth track never detected
      counts as measured ``absent``). ``large`` pairs: true volume at the reference (baseline) or at ``k``
      ≥ ``min_volume_ml``.
    - Detection: a truth lesion at time point ``k`` is found when an accepted output ROI overlaps it most;
      *follow-up* detections are of lesions present at an earlier time point, *first* detections of lesions
      at their first appearance (baseline included).
    - False positives: accepted output ROIs overlapping no truth lesion, per scan, by ``LesionROI.source``;
      their ids in ``false_positive_rois``.
    """
    truth = json.loads((Path(phantom_dir) / "truth.json").read_text())
    n = int(truth["n_timepoints"])
    owner = roi_to_truth_track(analysis_dir, phantom_dir, truth)
    accepted = {r.roi_id: r for r in analysis.rois if r.status == "accepted"}
    owner = {rid: t for rid, t in owner.items() if rid in accepted}
    responses = {r.track_id: r for r in analysis.responses}
    out_of = _truth_track_owner(analysis, owner)
    volumes = _truth_track_volume(truth)
    pairs: list[dict[str, Any]] = []
    for tid, entry in truth["tracks"].items():
        response = responses.get(out_of.get(int(tid), -1))
        for k in range(1, n):
            true_cat = entry["categories"][str(k)]
            if true_cat == "absent":
                continue
            measured = response.categories.get(k, "absent") if response else "absent"
            large = max(volumes[int(tid)][0], volumes[int(tid)][k]) >= min_volume_ml
            pairs.append({"truth_track": int(tid), "follow_up": k, "truth": true_cat, "measured": measured,
                          "large": large})
    false_positive_rois = sorted(rid for rid in accepted if rid not in owner)
    return {"pairs": pairs, **_pair_figures(pairs), **_detections(truth, analysis_dir, phantom_dir, accepted,
                                                                   min_volume_ml),
            "false_positives": _false_positives(accepted, false_positive_rois, n),
            "false_positive_rois": false_positive_rois}


def _pair_figures(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    def share(rows: list[dict[str, Any]]) -> float | None:
        return sum(r["truth"] == r["measured"] for r in rows) / len(rows) if rows else None

    decreasing = [r for r in pairs if r["truth"] == "decreasing"]
    return {"agreement_all": share(pairs), "n_all": len(pairs),
            "agreement_large": share([r for r in pairs if r["large"]]), "n_large": sum(r["large"] for r in pairs),
            "decreasing_recall": share(decreasing), "n_decreasing": len(decreasing),
            "confusions": Counter((r["truth"], r["measured"]) for r in pairs if r["truth"] != r["measured"])}


def _detections(truth: dict, analysis_dir: str | Path, phantom_dir: str | Path, accepted: dict,
                min_volume_ml: float) -> dict[str, Any]:
    n = int(truth["n_timepoints"])
    found: set[tuple[int, int]] = set()  # (time point, truth label) overlapped by an accepted ROI (or touched: tiny)
    for k in range(n):
        pred, true = _label_arrays(analysis_dir, phantom_dir, k)
        keep = np.isin(pred, [r.label for r in accepted.values() if r.timepoint == k])
        found |= {(k, int(t)) for t in np.unique(true[keep & (true > 0)])}
        found |= {(k, t) for t in roi_truth_labels(np.where(keep, pred, 0), true, _tiny_labels(truth, k)).values()}
    rows = {"follow_up": [], "first": []}
    for le in truth["lesions"]:
        seen = False
        for k in range(n):
            entry = le["timepoints"][str(k)]
            if not entry["present"]:
                continue
            hit = any((k, int(label)) in found for label in entry["labels"])
            rows["follow_up" if seen else "first"].append((hit, float(entry["volume_ml"]) >= min_volume_ml))
            seen = True
    out = {}
    for kind, values in rows.items():
        large = [hit for hit, big in values if big]
        out[f"detection_{kind}"] = sum(h for h, _ in values) / len(values) if values else None
        out[f"detection_{kind}_large"] = sum(large) / len(large) if large else None
        out[f"n_{kind}"], out[f"n_{kind}_large"] = len(values), len(large)
    return out


def _false_positives(accepted: dict, roi_ids: list[str], n_scans: int) -> dict[str, float]:
    counts = Counter(accepted[rid].source for rid in roi_ids)
    return {"per_scan": sum(counts.values()) / n_scans,
            **{f"per_scan_{source}": count / n_scans for source, count in counts.items()}}


#: Ideal-observer d' that one test at a known location needs to detect a lesion half the time at a 1 %
#: false-alarm probability (the standard normal's 99th percentile): a follow-up searched where a lesion was.
KNOWN_LOCATION_D = 2.326


def whole_body_d(body_ml: float, fwhm_mm: float, false_alarms_per_scan: float = 1.0) -> float:
    """Ideal-observer d' that a search of the whole body needs to detect a lesion half the time with
    ``false_alarms_per_scan`` (the issue's budget: 1): the normal quantile of one false alarm per
    ``body_ml / fwhm_mm³`` independent resolution cells (Bonferroni over resels, Worsley et al., Hum Brain Mapp
    1996;4:58-73). ``body_ml`` in mL, ``fwhm_mm`` the image resolution in mm."""
    from scipy.stats import norm

    cells = max(body_ml / (fwhm_mm / 10.0) ** 3, 1.0)
    return float(norm.isf(min(false_alarms_per_scan / cells, 0.5)))


def track_snrs(truth: dict) -> dict[tuple[int, int], float]:
    """(truth track, time point) → the ideal observer's d' of the track there (its lesions' ``ideal_snr``
    combined in quadrature; 0 when absent). Needs a phantom of this version (``truth.json`` with ``ideal_snr``)."""
    snr2: dict[tuple[int, int], float] = {}
    for lesion in truth["lesions"]:
        for tp, entry in lesion["timepoints"].items():
            if "ideal_snr" not in entry:
                raise ValueError("truth.json has no ideal_snr: regenerate the phantom with this version "
                                 "(LesionResponseLib.phantom.generate_patient)")
            key = (int(lesion["track_id"]), int(tp))
            snr2[key] = snr2.get(key, 0.0) + float(entry["ideal_snr"] or 0.0) ** 2
    return {key: value ** 0.5 for key, value in snr2.items()}


def detectability_ceiling(truth: dict, pairs: list[dict[str, Any]], blind_d: float,
                          known_d: float = KNOWN_LOCATION_D) -> dict[str, Any]:
    """The best category agreement any detector can reach on ``pairs`` (:func:`lesion_pair_agreement`'s), by
    the ideal observer's detectability of each lesion (``phantom.detectability``).

    A pair is *achievable* when its truth track can be found at all, its combined d' over every time point
    reaching ``blind_d`` (:func:`whole_body_d`: a multi-scan search with perfect registration), and the lesion
    is visible (d' ≥ ``known_d``) where its category needs it: at the baseline (not for *new*) and at the
    follow-up (not for *disappearing*). A lesion below that is called *disappearing* or *new* (the rule of
    docs/DOMAIN.md §1), which its true category is not. Generous on purpose: the ideal observer knows the lesion's
    shape, sees it half the time at the threshold, and its categories have no measurement error; no reader or
    algorithm does better. Returns the ceilings (``all``, ``large``, ``decreasing``), their counts and the
    measured agreement over the achievable pairs only (``agreement_achievable_*``).
    """
    snr = track_snrs(truth)
    n = int(truth["n_timepoints"])
    found = {t: sum(snr.get((t, k), 0.0) ** 2 for k in range(n)) ** 0.5 >= blind_d for t in {t for t, _ in snr}}
    rows = []
    for p in pairs:
        track, k = p["truth_track"], p["follow_up"]
        visible_before = p["truth"] == "new" or snr.get((track, 0), 0.0) >= known_d
        visible_after = p["truth"] == "disappearing" or snr.get((track, k), 0.0) >= known_d
        rows.append({**p, "achievable": found.get(track, False) and visible_before and visible_after})

    def share(subset: list[dict[str, Any]], key: str) -> float | None:
        return sum(bool(r[key]) for r in subset) / len(subset) if subset else None

    out: dict[str, Any] = {"blind_d": blind_d, "known_d": known_d}
    for name, subset in (("all", rows), ("large", [r for r in rows if r["large"]]),
                         ("decreasing", [r for r in rows if r["truth"] == "decreasing"])):
        achievable = [dict(r, ok=r["measured"] == r["truth"]) for r in subset if r["achievable"]]
        out[f"ceiling_{name}"] = share(subset, "achievable")
        out[f"n_{name}"], out[f"n_achievable_{name}"] = len(subset), len(achievable)
        out[f"agreement_achievable_{name}"] = share(achievable, "ok")
    return out


# ------------------------------------------------------------------ reference regions, burden and sites
#: The phantom's lesion sites in the analysis' names (``datamodel.LESION_SITES``): its mesenteric lesions lie in
#: the peritoneal cavity.
PHANTOM_SITE_NAMES: dict[str, str] = {"mesentery": "peritoneum/other"}


def _phantom_truth(phantom_dir: str | Path) -> dict:
    return json.loads((Path(phantom_dir) / "truth.json").read_text())


def reference_agreement(analysis: Analysis, phantom_dir: str | Path) -> list[dict[str, Any]]:
    """Per reference region of the analysis: whether it was placed, the share of its sphere inside the organ by
    the phantom's organ map (``truth/tp{k}_organs.nii.gz``) and its SUVmean's error (%) against the organ's true
    uptake at that scan (``truth.json`` ``timepoints[].organ_suv``: blur- and noise-free)."""
    from LesionResponseLib.analysis.reference_regions import sphere_mask
    from LesionResponseLib.phantom.anatomy import ORGAN_LABELS

    truth = _phantom_truth(phantom_dir)
    rows = []
    for region in analysis.reference_regions:
        row: dict[str, Any] = {"timepoint": region.timepoint, "organ": region.organ, "placed": region.placed,
                               "warnings": list(region.warnings)}
        if region.placed:
            organs = sitk.ReadImage(str(Path(phantom_dir) / "truth" / f"tp{region.timepoint}_organs.nii.gz"))
            inside = sphere_mask(organs, region.centre_mm, region.diameter_mm)
            true_suv = truth["timepoints"][region.timepoint].get("organ_suv", {}).get(region.organ)
            if true_suv is None:
                raise ValueError(f"{phantom_dir}/truth.json has no organ_suv: regenerate the phantom with this "
                                 "version (LesionResponseLib.phantom.generate_patient)")
            row.update(truth_organ_share=float((sitk.GetArrayViewFromImage(organs)[inside]
                                                == ORGAN_LABELS[region.organ]).mean()),
                       suv_mean=region.suv_mean, true_suv=float(true_suv),
                       error_pct=100.0 * (region.suv_mean / float(true_suv) - 1.0))
        rows.append(row)
    return rows


def burden_agreement(analysis: Analysis, phantom_dir: str | Path) -> list[dict[str, Any]]:
    """Per time point: the analysis' tumour volume and total uptake (accepted ROIs: Σ volume, Σ SUVtotal, Σ
    PV-corrected SUVtotal) against the truth's (Σ true volume and Σ true SUVtotal of the lesions present), with
    the signed errors (%)."""
    truth = _phantom_truth(phantom_dir)
    rows = []
    for k in range(int(truth["n_timepoints"])):
        present = [le["timepoints"][str(k)] for le in truth["lesions"] if le["timepoints"][str(k)]["present"]]
        true_volume = sum(float(e["volume_ml"]) for e in present)
        true_total = sum(float(e["suv_total"]) for e in present)
        rois = [r for r in analysis.rois if r.timepoint == k and r.status == "accepted"]
        measured = {"volume_ml": sum(r.volume_ml for r in rois), "suv_total": sum(r.suv_total for r in rois),
                    "suv_total_pvc": sum(r.suv_total_pvc or 0.0 for r in rois)}

        def error(value: float, reference: float) -> float | None:
            return 100.0 * (value / reference - 1.0) if reference > 0 else None

        rows.append({"timepoint": k, "n_true": len(present), "n_rois": len(rois), "true_volume_ml": true_volume,
                     "true_suv_total": true_total, **measured,
                     "volume_error_pct": error(measured["volume_ml"], true_volume),
                     "suv_total_error_pct": error(measured["suv_total"], true_total),
                     "suv_total_pvc_error_pct": error(measured["suv_total_pvc"], true_total)})
    return rows


def site_agreement(analysis: Analysis, analysis_dir: str | Path, phantom_dir: str | Path,
                   min_volume_ml: float = TINY_LESION_ML) -> dict[str, Any]:
    """Sites of the accepted ROIs of at least ``min_volume_ml`` that overlap a true lesion (:func:`roi_truth_labels`)
    against that lesion's site (:data:`PHANTOM_SITE_NAMES`): ``right`` of ``n`` and the ``errors`` (ROI id, volume,
    true and measured site)."""
    truth = _phantom_truth(phantom_dir)
    rois = {(r.timepoint, r.label): r for r in analysis.rois if r.status == "accepted" and r.volume_ml >= min_volume_ml}
    right, errors = 0, []
    for k in range(int(truth["n_timepoints"])):
        site_of_label = {int(label): le["site"] for le in truth["lesions"]
                         for label in le["timepoints"][str(k)]["labels"]}
        pred, true = _label_arrays(analysis_dir, phantom_dir, k)
        for label, true_label in roi_truth_labels(pred, true, _tiny_labels(truth, k)).items():
            roi = rois.get((k, int(label)))
            if roi is None or true_label not in site_of_label:
                continue
            expected = PHANTOM_SITE_NAMES.get(site_of_label[true_label], site_of_label[true_label])
            if roi.site == expected:
                right += 1
            else:
                errors.append({"roi_id": roi.roi_id, "volume_ml": roi.volume_ml, "truth": expected,
                               "measured": roi.site})
    n = right + len(errors)
    return {"n": n, "right": right, "share": right / n if n else None, "errors": errors}
