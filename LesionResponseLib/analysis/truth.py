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
