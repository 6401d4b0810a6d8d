"""Agreement of an analysis with phantom ground truth (``truth.json`` + ``truth/tp{k}_lesions.nii.gz``).

Correspondence: each output ROI goes to the truth lesion label it overlaps most (both label maps on the
same PET grid); an output track goes to the truth track most of its ROIs went to (majority). Truth tracks
are the ``tracks`` entries of ``truth.json`` (splits and merges share one track id).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.analysis.response import MEASURES, track_suv_totals
from LesionResponseLib.datamodel import Analysis


def roi_to_truth_track(analysis_dir: str | Path, phantom_dir: str | Path, truth: dict) -> dict[str, int]:
    """Output ROI id → truth track id, by largest voxel overlap with the truth lesion labels."""
    label_track = {(int(tp), int(label)): le["track_id"] for le in truth["lesions"]
                   for tp, entry in le["timepoints"].items() for label in entry["labels"]}
    result: dict[str, int] = {}
    for k in range(int(truth["n_timepoints"])):
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(Path(analysis_dir) / "labels" / f"tp{k}.nii.gz")))
        true = sitk.GetArrayFromImage(sitk.ReadImage(str(Path(phantom_dir) / f"truth/tp{k}_lesions.nii.gz")))
        both = (pred > 0) & (true > 0)
        pairs = Counter(zip(pred[both].tolist(), true[both].tolist(), strict=True))
        best: dict[int, tuple[int, int]] = {}
        for (p, t), count in pairs.items():
            if count > best.get(p, (0, 0))[0]:
                best[p] = (count, t)
        for p, (_, t) in best.items():
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
    found: set[tuple[int, int]] = set()  # (time point, truth label) with an accepted ROI overlapping it most
    for k in range(n):
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(Path(analysis_dir) / "labels" / f"tp{k}.nii.gz")))
        true = sitk.GetArrayFromImage(sitk.ReadImage(str(Path(phantom_dir) / f"truth/tp{k}_lesions.nii.gz")))
        keep = np.isin(pred, [r.label for r in accepted.values() if r.timepoint == k])
        found |= {(k, int(t)) for t in np.unique(true[keep & (true > 0)])}
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
