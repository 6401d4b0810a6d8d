"""Agreement of an analysis with a reference: phantom ground truth (``truth.json`` + ``truth/tp{k}_lesions.nii.gz``)
or a site's reference contours (:mod:`LesionResponseLib.analysis.reference`), both a :class:`Reference`.

Correspondence: each output ROI goes to the reference lesion label it overlaps most (both label maps on the
same PET grid; a ROI beside a lesion smaller than 0.5 mL without overlapping it goes to that lesion,
:func:`roi_truth_labels`); an output track goes to the reference track most of its ROIs went to (majority).
Reference tracks are the ``tracks`` entries of the truth dict (splits and merges share one track id).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.analysis.response import roi_measure, track_suv_totals
from LesionResponseLib.config import MEASURES
from LesionResponseLib.datamodel import Analysis

#: A ROI that overlaps no true lesion still finds the true lesion it touches when that lesion is smaller than
#: this (mL; docs/DOMAIN.md's 0.5 mL small-lesion line, 8 PET voxels of 4 mm), see :func:`roi_truth_labels`.
TINY_LESION_ML = 0.5


@dataclass
class Reference:
    """What an analysis is compared with: ``truth`` in the schema of a phantom's ``truth.json``
    (docs/ARCHITECTURE.md: ``n_timepoints``, ``lesions`` with per time point ``present``, ``labels``, ``volume_ml``,
    ``suv_max``, ``suv_total``; ``tracks`` with ``suv_total`` per time point and ``categories`` per follow-up;
    ``heterogeneous``) and the lesion label map of each time point on that time point's PET grid
    (``label_array(k)``, z-y-x). ``kind``: "phantom truth" or "reference contours"; ``source``: where it was read."""

    truth: dict[str, Any]
    label_array: Callable[[int], np.ndarray]
    kind: str = "phantom truth"
    source: str = ""

    @classmethod
    def from_phantom(cls, folder: str | Path) -> Reference:
        """The ground truth of a phantom folder."""
        folder = Path(folder)
        truth = json.loads((folder / "truth.json").read_text())

        def labels(k: int) -> np.ndarray:
            return sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"truth/tp{k}_lesions.nii.gz")))

        return cls(truth, labels, "phantom truth", str(folder))


def as_reference(reference: Reference | str | Path) -> Reference:
    """``reference`` itself, or the :class:`Reference` of a phantom folder."""
    return reference if isinstance(reference, Reference) else Reference.from_phantom(reference)


def covered_timepoints(truth: dict) -> list[int]:
    """The time points the reference covers (all for phantom truth; those with reference files for contours)."""
    return [int(k) for k in truth.get("covered_timepoints", range(int(truth["n_timepoints"])))]


def covered_follow_ups(truth: dict) -> list[int]:
    """Follow-ups whose category the reference can tell: covered, with the baseline covered."""
    covered = covered_timepoints(truth)
    return [k for k in covered if k >= 1 and 0 in covered]


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


def tiny_labels(truth: dict, k: int) -> set[int]:
    """True lesion labels at time point ``k`` of lesions smaller than :data:`TINY_LESION_ML`."""
    return {int(label) for le in truth["lesions"] for label in le["timepoints"][str(k)]["labels"]
            if 0 < float(le["timepoints"][str(k)]["volume_ml"] or 0.0) < TINY_LESION_ML}


def _label_arrays(analysis_dir: str | Path, reference: Reference, k: int) -> tuple[np.ndarray, np.ndarray]:
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(Path(analysis_dir) / "labels" / f"tp{k}.nii.gz")))
    return pred, reference.label_array(k)


def roi_to_truth_track(analysis_dir: str | Path, reference: Reference | str | Path, truth: dict) -> dict[str, int]:
    """Output ROI id → truth track id, by largest voxel overlap with the truth lesion labels (a ROI touching a
    tiny lesion without overlapping it: :func:`roi_truth_labels`)."""
    reference = as_reference(reference)
    label_track = {(int(tp), int(label)): le["track_id"] for le in truth["lesions"]
                   for tp, entry in le["timepoints"].items() for label in entry["labels"]}
    result: dict[str, int] = {}
    for k in range(int(truth["n_timepoints"])):
        pred, true = _label_arrays(analysis_dir, reference, k)
        for p, t in roi_truth_labels(pred, true, tiny_labels(truth, k)).items():
            if (k, t) in label_track:
                result[f"tp{k}-L{p:04d}"] = label_track[(k, t)]
    return result


#: What can be wrong with an output track, against the phantom truth (:func:`track_errors`).
TRACK_ERRORS = ("false positive", "false link", "missed link", "category")


def track_errors(analysis: Analysis, analysis_dir: str | Path, phantom_dir: str | Path) -> dict[int, list[str]]:
    """Per assessed output track: what is wrong with it against the phantom truth (empty when nothing is).

    Each accepted ROI goes to the truth track it overlaps most (:func:`roi_to_truth_track`); a track is wrong by
    ``false positive`` (a ROI on no true lesion), ``false link`` (ROIs of two or more true lesions joined),
    ``missed link`` (its true lesion also has ROIs in another output track) or ``category`` (a follow-up's
    category differs from the true lesion's; for a track of false positives only, any category but ``absent``).
    The true lesion of a track is the one most of its ROIs go to, as in :func:`truth_agreement`. A category is not
    an error where no reader could see the lesion (the ideal observer's d' at a known location below
    :data:`KNOWN_LOCATION_D`, ``truth.json`` ``ideal_snr``) and it reads as such a lesion reads: ``disappearing``
    where the lesion is invisible at the follow-up, ``new`` where at the reference, ``absent`` at both.
    """
    reference = Reference.from_phantom(phantom_dir)
    truth = reference.truth
    accepted = {r.roi_id for r in analysis.rois if r.status == "accepted"}
    owner = {rid: t for rid, t in roi_to_truth_track(analysis_dir, reference, truth).items() if rid in accepted}
    responses = {r.track_id: r for r in analysis.responses}
    snr = track_snrs(truth) if all("ideal_snr" in e for le in truth["lesions"] for e in le["timepoints"].values()) \
        else {}
    holders: dict[int, set[int]] = {}
    for track in analysis.tracks:
        for rid in (r for ids in track.rois.values() for r in ids if r in owner):
            holders.setdefault(owner[rid], set()).add(track.track_id)
    errors: dict[int, list[str]] = {}
    for track in analysis.tracks:
        response = responses.get(track.track_id)
        if response is None:
            continue
        ids = [r for rois in track.rois.values() for r in rois if r in accepted]
        votes = Counter(owner[r] for r in ids if r in owner)
        found = []
        if len(votes) < len(ids) and any(r not in owner for r in ids):
            found.append("false positive")
        if len(votes) > 1:
            found.append("false link")
        if votes and len(holders[votes.most_common(1)[0][0]]) > 1:
            found.append("missed link")
        true_id = votes.most_common(1)[0][0] if votes else None
        true_categories = truth["tracks"][str(true_id)]["categories"] if votes else {}
        if any(response.categories[k] != true_categories.get(str(k), "absent")
               and response.categories[k] != _invisible_reading(snr, true_id, k, analysis.parameters.response.reference)
               for k in response.categories):
            found.append("category")
        errors[track.track_id] = found
    return errors


def interval_calibration(analysis: Analysis, analysis_dir: str | Path, phantom_dir: str | Path) -> dict[str, Any]:
    """How well the ΔSUVtotal intervals (``TrackResponse.delta_interval_pct``) hold the truth.

    Over every matched track (its true lesion: the one most of its ROIs go to) × follow-up where both the analysis
    and the truth have a change (present at the reference and at the follow-up): the true change of the same
    measure's truth (the phantom's SUVtotal, what ``suv_total_pvc`` estimates; docs/confidence-and-review-queue.md),
    whether the interval covers it, and whether the call (the paper's category from the measured change) is wrong,
    split by *indeterminate* and confident calls. The reference follows ``parameters.response.reference``.
    """
    from LesionResponseLib.analysis.response import categorise, reference_timepoint

    reference = Reference.from_phantom(phantom_dir)
    truth = reference.truth
    owner = roi_to_truth_track(analysis_dir, reference, truth)
    params = analysis.parameters
    rows = []
    for track in analysis.tracks:
        response = next((r for r in analysis.responses if r.track_id == track.track_id), None)
        votes = Counter(owner.get(r) for ids in track.rois.values() for r in ids if r in owner)
        if response is None or not votes:
            continue
        true_totals = truth["tracks"][str(votes.most_common(1)[0][0])]["suv_total"]
        totals = {tp: (v if v > 0 else None) for tp, v in enumerate(true_totals)}
        for k, interval in response.delta_interval_pct.items():
            ref_tp = reference_timepoint(totals, k, params.response.reference)
            if interval is None or ref_tp is None or totals.get(k) is None:
                continue
            true_category, true_delta = categorise(totals[ref_tp], totals[k], params)
            rows.append({"track_id": track.track_id, "follow_up": k, "true_delta": true_delta,
                         "delta": response.delta_suv_total_pct[k], "low": interval[0], "high": interval[1],
                         "covered": interval[0] <= true_delta <= interval[1],
                         "indeterminate": bool(response.indeterminate.get(k)),
                         "wrong": response.categories[k] != true_category})
    return calibration_summary(rows, params.response.interval_level)


def calibration_summary(pairs: list[dict], level: float) -> dict[str, Any]:
    """Coverage and wrong calls over ``pairs`` (rows of :func:`interval_calibration`, of one patient or pooled)."""
    undecided = [r for r in pairs if r["indeterminate"]]
    decided = [r for r in pairs if not r["indeterminate"]]

    def share(subset: list[dict], key: str) -> float | None:
        return sum(r[key] for r in subset) / len(subset) if subset else None

    return {"pairs": pairs, "n": len(pairs), "coverage": share(pairs, "covered"), "level": level,
            "n_indeterminate": len(undecided), "wrong_indeterminate": share(undecided, "wrong"),
            "n_confident": len(decided), "wrong_confident": share(decided, "wrong")}


def queue_capture(scores: dict[int, float], wrong: set[int], fractions: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5),
                  ) -> dict[str, Any]:
    """The review queue's curve: for the top fraction ``f`` of tracks by ``scores`` (highest first, ties by id), the
    share of the ``wrong`` tracks it holds (``captured``) and the most any order could hold (``ceiling``: all of
    them, or as many as fit)."""
    order = sorted(scores, key=lambda t: (-scores[t], t))
    n, w = len(order), len(wrong & set(order))
    curve = []
    for f in fractions:
        top = order[:math.ceil(f * n - 1e-9)]
        curve.append({"fraction": f, "tracks": len(top), "captured": len(wrong & set(top)) / w if w else None,
                      "ceiling": min(1.0, len(top) / w) if w else None})
    return {"tracks": n, "wrong": w, "curve": curve}


def _invisible_reading(snr: dict[tuple[int, int], float], true_id: int | None, k: int, reference: str) -> str | None:
    """What a reader sees at follow-up ``k`` of true lesion ``true_id`` where it is below the known-location
    detection limit at the reference (baseline, or the previous scan) or at ``k``; None where it is visible at both
    (or the truth has no ideal-observer d')."""
    if true_id is None or not snr:
        return None
    ref = 0 if reference == "baseline" else k - 1  # nadir: the baseline's visibility is the closest stand-in
    seen_ref, seen_k = snr.get((true_id, ref), 0.0) >= KNOWN_LOCATION_D, snr.get((true_id, k), 0.0) >= KNOWN_LOCATION_D
    if seen_ref and seen_k:
        return None
    return "disappearing" if seen_ref else "new" if seen_k else "absent"


def _track_volumes(truth: dict) -> dict[int, dict[int, float]]:
    volumes: dict[int, dict[int, float]] = {}
    for le in truth["lesions"]:
        for tp, entry in le["timepoints"].items():
            per = volumes.setdefault(le["track_id"], {})
            per[int(tp)] = per.get(int(tp), 0.0) + float(entry.get("volume_ml") or 0.0)
    return volumes


def truth_agreement(analysis: Analysis, analysis_dir: str | Path, phantom_dir: Reference | str | Path,
                    min_volume_ml: float = 2.0) -> dict[str, Any]:
    """Category, heterogeneity and SUVtotal agreement with the phantom truth.

    Returns ``category_agreement`` (matched track × follow-up pairs with equal category / all),
    ``heterogeneity_agreement`` (follow-ups with equal flag / all), ``suv_total_errors_pct`` (signed %
    error of the track SUVtotal for truth tracks whose true volume at that time point is ≥ ``min_volume_ml``)
    and ``suv_total_pvc_errors_pct`` (the same for the partial-volume-corrected SUVtotal), the unmatched
    track counts and the mismatches. ``phantom_dir``: a phantom folder or any :class:`Reference`.
    """
    reference = as_reference(phantom_dir)
    truth = reference.truth
    n = int(truth["n_timepoints"])
    owner = roi_to_truth_track(analysis_dir, reference, truth)
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
        for k in covered_follow_ups(truth):
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
    hetero = [bool(analysis.heterogeneous.get(k)) == bool(truth["heterogeneous"][str(k)])
              for k in covered_follow_ups(truth)]
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


def lesion_pair_agreement(analysis: Analysis, analysis_dir: str | Path, phantom_dir: Reference | str | Path,
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

    ``phantom_dir``: a phantom folder or any :class:`Reference`.
    """
    reference = as_reference(phantom_dir)
    truth = reference.truth
    n = int(truth["n_timepoints"])
    owner = roi_to_truth_track(analysis_dir, reference, truth)
    accepted = {r.roi_id: r for r in analysis.rois if r.status == "accepted"}
    owner = {rid: t for rid, t in owner.items() if rid in accepted}
    responses = {r.track_id: r for r in analysis.responses}
    out_of = _truth_track_owner(analysis, owner)
    volumes = _truth_track_volume(truth)
    pairs: list[dict[str, Any]] = []
    for tid, entry in truth["tracks"].items():
        response = responses.get(out_of.get(int(tid), -1))
        for k in covered_follow_ups(truth):
            true_cat = entry["categories"][str(k)]
            if true_cat == "absent":
                continue
            measured = response.categories.get(k, "absent") if response else "absent"
            large = max(volumes[int(tid)][0], volumes[int(tid)][k]) >= min_volume_ml
            pairs.append({"truth_track": int(tid), "follow_up": k, "truth": true_cat, "measured": measured,
                          "large": large})
    false_positive_rois = sorted(rid for rid in accepted if rid not in owner)
    return {"pairs": pairs, **_pair_figures(pairs), **_detections(truth, analysis_dir, reference, accepted,
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


def _found_labels(truth: dict, pred: np.ndarray, true: np.ndarray, accepted_labels: list[int], k: int,
                  ) -> tuple[set[int], dict[int, int]]:
    """At time point ``k``: the truth labels an accepted ROI overlaps (or, tiny, touches), and each accepted ROI's
    truth label (:func:`roi_truth_labels`)."""
    keep = np.isin(pred, accepted_labels)
    owner = roi_truth_labels(np.where(keep, pred, 0), true, tiny_labels(truth, k))
    return {int(t) for t in np.unique(true[keep & (true > 0)])} | set(owner.values()), owner


def _detections(truth: dict, analysis_dir: str | Path, reference: Reference, accepted: dict,
                min_volume_ml: float) -> dict[str, Any]:
    n = int(truth["n_timepoints"])
    found: set[tuple[int, int]] = set()  # (time point, truth label) overlapped by an accepted ROI (or touched: tiny)
    for k in range(n):
        pred, true = _label_arrays(analysis_dir, reference, k)
        labels, _ = _found_labels(truth, pred, true, [r.label for r in accepted.values() if r.timepoint == k], k)
        found |= {(k, t) for t in labels}
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


def detection_figures(analysis: Analysis, analysis_dir: str | Path, reference: Reference | str | Path,
                      min_volume_ml: float = TINY_LESION_ML) -> dict[str, Any]:
    """Lesion-level detection against ``reference``, per time point (``timepoints``) and pooled, and the matched
    lesions (``matched``) whose contours and measures can be compared.

    Matching rule (that of :func:`lesion_pair_agreement`'s detection): a reference lesion at a time point (all its
    labels there) is **detected** when an accepted ROI overlaps it (or, smaller than :data:`TINY_LESION_ML`,
    touches it); an accepted ROI is a **true positive** when it goes to a reference lesion (the label it overlaps
    most, :func:`roi_truth_labels`), else a false positive. Sensitivity = detected / reference lesions, precision =
    true-positive ROIs / accepted ROIs, F1 their harmonic mean; ``_large``: lesions of at least ``min_volume_ml``.
    A matched lesion is a reference lesion with ROIs going to it: its Dice with their union, and (volume, SUVmax,
    SUVmean, SUVtotal) measured (their union: summed volume and SUVtotal, highest SUVmax) and reference.
    """
    reference = as_reference(reference)
    truth = reference.truth
    rois = {(r.timepoint, r.label): r for r in analysis.rois if r.status == "accepted"}
    rows, matched = [], []
    for k in covered_timepoints(truth):
        pred, true = _label_arrays(analysis_dir, reference, k)
        found, owner = _found_labels(truth, pred, true, [label for tp, label in rois if tp == k], k)
        lesions = [le for le in truth["lesions"] if le["timepoints"][str(k)]["present"]]
        hit = {le["lesion_id"]: any(int(v) in found for v in le["timepoints"][str(k)]["labels"]) for le in lesions}
        large = [le for le in lesions if float(le["timepoints"][str(k)]["volume_ml"]) >= min_volume_ml]
        row = {"timepoint": k, "n_reference": len(lesions), "n_detected": sum(hit.values()),
               "n_reference_large": len(large), "n_detected_large": sum(hit[le["lesion_id"]] for le in large),
               "n_rois": sum(tp == k for tp, _ in rois), "n_true_positive_rois": len(owner)}
        rows.append(_with_rates(row))
        for le in lesions:
            mine = [label for label, t in owner.items() if t in le["timepoints"][str(k)]["labels"]]
            if mine:
                matched.append(_matched_lesion(le, k, mine, pred, true, rois))
    pooled = {key: sum(r[key] for r in rows) for key in rows[0] if key.startswith("n_")} if rows else {}
    return {**_with_rates(pooled), "timepoints": rows, "matched": matched, "n_scans": len(rows),
            "false_positives_per_scan": (pooled.get("n_rois", 0) - pooled.get("n_true_positive_rois", 0))
            / max(1, len(rows))}


def _with_rates(counts: dict[str, Any]) -> dict[str, Any]:
    """``counts`` with sensitivity (all and large lesions), precision and F1."""
    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    sensitivity, precision = ratio(counts.get("n_detected", 0), counts.get("n_reference", 0)), \
        ratio(counts.get("n_true_positive_rois", 0), counts.get("n_rois", 0))
    f1 = 2 * sensitivity * precision / (sensitivity + precision) if sensitivity and precision else 0.0
    return {**counts, "sensitivity": sensitivity, "precision": precision, "f1": f1,
            "sensitivity_large": ratio(counts.get("n_detected_large", 0), counts.get("n_reference_large", 0))}


def _matched_lesion(lesion: dict, k: int, labels: list[int], pred: np.ndarray, true: np.ndarray,
                    rois: dict) -> dict[str, Any]:
    entry = lesion["timepoints"][str(k)]
    mine, theirs = np.isin(pred, labels), np.isin(true, entry["labels"])
    parts = [rois[(k, label)] for label in labels]
    volume = sum(r.volume_ml for r in parts)
    total = sum(r.suv_total for r in parts)
    corrected = sum(roi_measure(r, "suv_total_pvc") for r in parts)
    reference_volume = float(entry["volume_ml"])
    return {"timepoint": k, "lesion_id": lesion["lesion_id"], "track_id": lesion["track_id"],
            "roi_ids": [r.roi_id for r in parts],
            "dice": 2.0 * float((mine & theirs).sum()) / float(mine.sum() + theirs.sum()),
            "measured": {"volume_ml": volume, "suv_max": max(r.suv_max for r in parts),
                         "suv_mean": total / volume if volume else 0.0, "suv_total": total,
                         "suv_total_pvc": corrected},
            "reference": {"volume_ml": reference_volume, "suv_max": float(entry["suv_max"]),
                          "suv_mean": float(entry.get("suv_mean") or (float(entry["suv_total"]) / reference_volume
                                                                      if reference_volume else 0.0)),
                          "suv_total": float(entry["suv_total"])}}


#: Measures compared between matched ROIs and reference lesions (:func:`bland_altman`).
AGREEMENT_MEASURES = ("volume_ml", "suv_max", "suv_mean", "suv_total")


def bland_altman(matched: list[dict[str, Any]], measure: str) -> dict[str, Any]:
    """Agreement of ``measure`` over matched lesions (:func:`detection_figures`), as a Bland-Altman analysis of the
    percentage difference 100 x (measured - reference) / mean of the two (Bland JM, Altman DG, Lancet
    1986;i:307-310; the percentage form because the SUV measures' spread grows with their size): ``bias`` (mean
    difference, %), ``sd``, the 95 % limits of agreement ``bias +- 1.96 sd``, with the means and differences."""
    pairs = [(m["measured"][measure], m["reference"][measure]) for m in matched
             if m["measured"][measure] + m["reference"][measure] > 0]
    means = [(a + b) / 2 for a, b in pairs]
    differences = [100.0 * (a - b) / mean for (a, b), mean in zip(pairs, means, strict=True)]
    if not differences:
        return {"measure": measure, "n": 0, "bias": None, "sd": None, "lower": None, "upper": None,
                "means": [], "differences": []}
    bias, sd = float(np.mean(differences)), float(np.std(differences, ddof=1)) if len(differences) > 1 else 0.0
    return {"measure": measure, "n": len(differences), "bias": bias, "sd": sd, "lower": bias - 1.96 * sd,
            "upper": bias + 1.96 * sd, "means": means, "differences": differences}


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


def reference_agreement(analysis: Analysis, phantom_dir: str | Path) -> list[dict[str, Any]]:
    """Per reference region of the analysis: whether it was placed, the share of its sphere inside the organ by
    the phantom's organ map (``truth/tp{k}_organs.nii.gz``) and its SUVmean's error (%) against the organ's true
    uptake at that scan (``truth.json`` ``timepoints[].organ_suv``: blur- and noise-free)."""
    from LesionResponseLib.analysis.reference_regions import sphere_mask
    from LesionResponseLib.phantom.anatomy import ORGAN_LABELS

    truth = Reference.from_phantom(phantom_dir).truth
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
    truth = Reference.from_phantom(phantom_dir).truth
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


def burden_error_parts(analysis: Analysis, analysis_dir: str | Path, phantom_dir: str | Path,
                       ) -> list[dict[str, Any]]:
    """Per time point, the burden's error against the truth split into its sources (each in % of the true Σ,
    so that for each measure ``matched + false_positive - missed`` is the whole error of
    :func:`burden_agreement`). Lesions and ROIs are paired as :func:`detection_figures` pairs them:

    - ``matched_*``: the ROIs that go to a true lesion (each counted once, also where merged lesions share it)
      against those lesions' truth, relative to the lesions' own
      truth (``*_contour_pct``: the partial-volume and contour error, the figure to set beside the PV-corrected
      SUVtotal's stated accuracy) and as a share of the whole truth (``*_matched_pct``);
    - ``missed_*_pct``: the truth in lesions no ROI goes to (the detection error, a loss);
    - ``false_positive_*_pct``: the ROIs that go to no true lesion (an excess).

    Measures: ``volume`` (against the true volume) and ``suv_total`` and ``suv_total_pvc`` (both against the
    true SUVtotal)."""
    figures = detection_figures(analysis, analysis_dir, phantom_dir)
    truth = as_reference(phantom_dir).truth
    by_id = {r.roi_id: r for r in analysis.rois}
    measures = {"volume": ("volume_ml", "volume_ml"), "suv_total": ("suv_total", "suv_total"),
                "suv_total_pvc": ("suv_total_pvc", "suv_total")}
    rows = []
    for k in covered_timepoints(truth):
        present = [le["timepoints"][str(k)] for le in truth["lesions"] if le["timepoints"][str(k)]["present"]]
        matched = [m for m in figures["matched"] if m["timepoint"] == k]
        matched_ids = {rid for m in matched for rid in m["roi_ids"]}
        rois = [r for r in analysis.rois if r.timepoint == k and r.status == "accepted"]
        row: dict[str, Any] = {"timepoint": k, "n_matched_lesions": len(matched), "n_true": len(present),
                               "n_false_positive_rois": sum(r.roi_id not in matched_ids for r in rois)}
        for name, (roi_key, true_key) in measures.items():
            true_all = sum(float(e[true_key]) for e in present)
            true_matched = sum(m["reference"][true_key] for m in matched)
            measured = sum(getattr(by_id[rid], roi_key) or 0.0 for rid in matched_ids)  # once: merged lesions share ROIs
            false_positive = sum(getattr(r, roi_key) or 0.0 for r in rois if r.roi_id not in matched_ids)

            def share(value: float, of: float) -> float | None:
                return 100.0 * value / of if of > 0 else None

            row.update({f"{name}_contour_pct": share(measured - true_matched, true_matched),
                        f"{name}_matched_pct": share(measured - true_matched, true_all),
                        f"{name}_missed_pct": share(true_all - true_matched, true_all),
                        f"{name}_false_positive_pct": share(false_positive, true_all)})
        rows.append(row)
    return rows


def single_lesion_errors(analysis: Analysis, analysis_dir: str | Path, phantom_dir: str | Path,
                         *, min_volume_ml: float = 2.0) -> list[dict[str, Any]]:
    """Per true lesion × time point of at least ``min_volume_ml`` (true volume) whose ROIs (:func:`detection_figures`)
    go to it alone: the error (%) of their volume, SUVtotal and PV-corrected SUVtotal against its truth - the
    single-lesion accuracy the documentation states, to set beside the burden's (:func:`burden_agreement`). Merged
    lesions sharing ROIs are left out: their truth cannot be split between the ROIs."""
    matched = detection_figures(analysis, analysis_dir, phantom_dir)["matched"]
    owners = Counter(rid for m in matched for rid in m["roi_ids"])
    rows = []
    for m in matched:
        reference, measured = m["reference"], m["measured"]
        if reference["volume_ml"] < min_volume_ml or any(owners[rid] > 1 for rid in m["roi_ids"]):
            continue
        rows.append({"timepoint": m["timepoint"], "lesion_id": m["lesion_id"], "true_volume_ml": reference["volume_ml"],
                     "volume_error_pct": 100.0 * (measured["volume_ml"] / reference["volume_ml"] - 1.0),
                     "suv_total_error_pct": 100.0 * (measured["suv_total"] / reference["suv_total"] - 1.0),
                     "suv_total_pvc_error_pct": 100.0 * (measured["suv_total_pvc"] / reference["suv_total"] - 1.0)})
    return rows


def site_agreement(analysis: Analysis, analysis_dir: str | Path, phantom_dir: str | Path,
                   min_volume_ml: float = TINY_LESION_ML) -> dict[str, Any]:
    """Sites of the accepted ROIs of at least ``min_volume_ml`` that overlap a true lesion (:func:`roi_truth_labels`)
    against that lesion's site (:data:`PHANTOM_SITE_NAMES`): ``right`` of ``n`` and the ``errors`` (ROI id, volume,
    true and measured site)."""
    reference = Reference.from_phantom(phantom_dir)
    truth = reference.truth
    rois = {(r.timepoint, r.label): r for r in analysis.rois if r.status == "accepted" and r.volume_ml >= min_volume_ml}
    right, errors = 0, []
    for k in range(int(truth["n_timepoints"])):
        site_of_label = {int(label): le["site"] for le in truth["lesions"]
                         for label in le["timepoints"][str(k)]["labels"]}
        pred, true = _label_arrays(analysis_dir, reference, k)
        for label, true_label in roi_truth_labels(pred, true, tiny_labels(truth, k)).items():
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
