"""Validation of tracking against known truth (phantom ``truth.json``): link scores and landmark error.

Definitions (used by the benchmarks and tests):

- **True track of a ROI**: the ``track_id`` of every truth lesion listing that ROI's label at that time
  point (a merged ROI belongs to the one track its parts share).
- **True links**: for each truth lesion, its ROIs at two consecutive time points *of its presence*
  (a lesion absent at time point 1 links time points 0 and 2). When both sides hold several labels
  (the children of a split followed over time) only equal label values are linked (the phantom keeps a
  child's label); otherwise every pair is linked (split: parent to each child; merge: each part to the
  merged ROI).
- **Link precision**: fraction of output links whose two ROIs share a true track.
  **Link recall**: fraction of true links present in the output.
- **Pairwise precision / recall** of the track partition over all pairs of ROIs (same track or not).
- **Split/merge tracks correct**: true tracks that contain a split or merge whose ROI set equals exactly
  one output track's ROI set.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.datamodel import LesionROI, Link, Track, roi_id_for


def label_rois(labels: sitk.Image, timepoint: int, pet_suv: sitk.Image | None = None) -> list[LesionROI]:
    """Geometric ROI measures of a label map (centroid LPS mm, volume mL; SUV from ``pet_suv`` if given).

    A light stand-in for ``analysis.measure_rois`` used by validation code (no SUVpeak: set to SUVmax).
    """
    shape = sitk.LabelShapeStatisticsImageFilter()
    shape.Execute(labels)
    stats = sitk.LabelIntensityStatisticsImageFilter()
    if pet_suv is not None:
        stats.Execute(labels, sitk.Cast(pet_suv, sitk.sitkFloat32))
    voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    rois = []
    for label in shape.GetLabels():
        n = int(shape.GetNumberOfPixels(label))
        suv_max = stats.GetMaximum(label) if pet_suv is not None else 0.0
        suv_mean = stats.GetMean(label) if pet_suv is not None else 0.0
        rois.append(LesionROI(roi_id=roi_id_for(timepoint, int(label)), timepoint=timepoint, label=int(label),
                              centroid_mm=tuple(float(c) for c in shape.GetCentroid(label)),
                              volume_ml=n * voxel_ml, suv_max=suv_max, suv_mean=suv_mean, suv_peak=suv_max,
                              suv_total=suv_mean * n * voxel_ml, n_voxels=n))
    return rois


def truth_tracks(truth: dict) -> dict[str, set[int]]:
    """ROI id -> true track ids, from a phantom truth dict."""
    owner: dict[str, set[int]] = defaultdict(set)
    for lesion in truth["lesions"]:
        for tp, entry in lesion["timepoints"].items():
            if entry.get("present"):
                for label in entry["labels"]:
                    owner[roi_id_for(int(tp), int(label))].add(int(lesion["track_id"]))
    return dict(owner)


def truth_links(truth: dict) -> set[tuple[str, str]]:
    """True links (earlier ROI id, later ROI id) as defined in the module docstring."""
    links: set[tuple[str, str]] = set()
    for lesion in truth["lesions"]:
        present = sorted(int(tp) for tp, e in lesion["timepoints"].items() if e.get("present"))
        for s, t in zip(present, present[1:], strict=False):
            la = [int(x) for x in lesion["timepoints"][str(s)]["labels"]]
            lb = [int(x) for x in lesion["timepoints"][str(t)]["labels"]]
            pairs = [(a, a) for a in la if a in lb] if len(la) > 1 and len(lb) > 1 else \
                [(a, b) for a in la for b in lb]
            links.update((roi_id_for(s, a), roi_id_for(t, b)) for a, b in pairs)
    return links


def score_links(links: list[Link], tracks: list[Track], truth: dict) -> dict[str, float]:
    """Link and partition scores of an output against phantom truth (see the module docstring)."""
    owner = truth_tracks(truth)
    true = truth_links(truth)
    got = {(link.roi_a, link.roi_b) for link in links}
    correct = sum(1 for a, b in got if owner.get(a, set()) & owner.get(b, set()))
    scores = {
        "n_links": float(len(got)), "n_true_links": float(len(true)),
        "link_precision": correct / len(got) if got else 1.0,
        "link_recall": len(got & true) / len(true) if true else 1.0,
    }
    scores.update(_pairwise(tracks, owner))
    scores.update(_split_merge(tracks, truth, owner))
    return scores


def _pairwise(tracks: list[Track], owner: dict[str, set[int]]) -> dict[str, float]:
    out_track = {r: t.track_id for t in tracks for ids in t.rois.values() for r in ids}
    ids = sorted(set(out_track) & set(owner))
    tp = fp = fn = 0
    for a, b in combinations(ids, 2):
        same_out = out_track[a] == out_track[b]
        same_true = bool(owner[a] & owner[b])
        tp += same_out and same_true
        fp += same_out and not same_true
        fn += same_true and not same_out
    return {"pair_precision": tp / (tp + fp) if tp + fp else 1.0,
            "pair_recall": tp / (tp + fn) if tp + fn else 1.0}


def _split_merge(tracks: list[Track], truth: dict, owner: dict[str, set[int]]) -> dict[str, float]:
    events = {int(les["track_id"]) for les in truth["lesions"] if les.get("kind") in ("split", "merge")}
    members: dict[int, set[str]] = defaultdict(set)
    for roi_id, track_ids in owner.items():
        for track_id in track_ids:
            members[track_id].add(roi_id)
    out_sets = [frozenset(r for ids in t.rois.values() for r in ids) for t in tracks]
    correct = sum(1 for tid in events if frozenset(members[tid]) in out_sets)
    exact = sum(1 for tid in members if frozenset(members[tid]) in out_sets)
    return {"n_split_merge_tracks": float(len(events)), "split_merge_correct": float(correct),
            "tracks_exact": exact / len(members) if members else 1.0}


def landmark_errors(transform: sitk.Transform, truth: dict, fixed_tp: int, moving_tp: int) -> np.ndarray:
    """Registration error (mm) at true lesion centres present once at both time points.

    Each true centroid at ``fixed_tp`` is mapped through ``transform`` (fixed -> moving points) and
    compared with the true centroid at ``moving_tp``. Split and merge lesions are left out.
    """
    errors = []
    for lesion in truth["lesions"]:
        if lesion.get("kind") in ("split", "merge"):
            continue
        a = lesion["timepoints"].get(str(fixed_tp), {})
        b = lesion["timepoints"].get(str(moving_tp), {})
        if a.get("present") and b.get("present") and len(a["labels"]) == 1 and len(b["labels"]) == 1:
            mapped = np.asarray(transform.TransformPoint(tuple(float(c) for c in a["centroid_mm"])))
            errors.append(float(np.linalg.norm(mapped - np.asarray(b["centroid_mm"]))))
    return np.asarray(errors)


def motion_transform(fixed_motion, moving_motion, reference: sitk.Image, spacing_mm: float = 8.0) -> sitk.Transform:
    """The true fixed -> moving point map of two phantom scans, as a displacement field transform.

    ``fixed_motion`` / ``moving_motion`` are phantom ``Motion`` objects (``to_anatomical`` maps scan
    points to the anatomical frame, ``to_scanner`` back). The field covers ``reference``'s extent on a
    ``spacing_mm`` grid (8 mm: the motion is smooth on 60-140 mm scales) and is interpolated linearly.
    """
    size = [max(2, int(np.ceil(n * s / spacing_mm)) + 1) for n, s in zip(reference.GetSize(),
                                                                          reference.GetSpacing(), strict=True)]
    grid = sitk.Image(size, sitk.sitkVectorFloat64, 3)
    grid.SetOrigin(reference.GetOrigin())
    grid.SetDirection(reference.GetDirection())
    grid.SetSpacing([spacing_mm] * 3)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), axis=-1).reshape(-1, 3)
    direction = np.asarray(reference.GetDirection()).reshape(3, 3)
    points = (idx * spacing_mm) @ direction.T + np.asarray(reference.GetOrigin())
    anatomical = np.stack(fixed_motion.to_anatomical(points[:, 0], points[:, 1], points[:, 2]), axis=1)
    moved = moving_motion.to_scanner(anatomical)
    field = (moved - points).reshape(size[0], size[1], size[2], 3).transpose(2, 1, 0, 3)
    image = sitk.GetImageFromArray(np.ascontiguousarray(field), isVector=True)
    image.CopyInformation(grid)
    return sitk.DisplacementFieldTransform(image)


def most_overlapped_labels(pred: np.ndarray, true: np.ndarray) -> dict[int, int]:
    """Predicted label -> the true label it overlaps most (two (z, y, x) label arrays on one grid); predicted
    labels overlapping no true label are absent."""
    both = (pred > 0) & (true > 0)
    width = int(true.max(initial=0)) + 1
    codes, counts = np.unique(pred[both].astype(np.int64) * width + true[both], return_counts=True)
    best: dict[int, tuple[int, int]] = {}
    for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
        label, true_label = divmod(code, width)
        if count > best.get(label, (0, 0))[0]:
            best[label] = (count, true_label)
    return {label: true_label for label, (_, true_label) in best.items()}


def truth_correspondence(pred: dict[int, sitk.Image], truth_labels: dict[int, sitk.Image]) -> dict[str, str]:
    """Predicted ROI id -> the truth ROI id it overlaps most (same time point); unmatched ROIs are absent."""
    mapping = {}
    for tp, image in pred.items():
        owner = most_overlapped_labels(sitk.GetArrayViewFromImage(image).astype(np.int64),
                                       sitk.GetArrayViewFromImage(truth_labels[tp]).astype(np.int64))
        mapping.update({roi_id_for(tp, label): roi_id_for(tp, true_label) for label, true_label in owner.items()})
    return mapping


def score_segmented(links: list[Link], tracks: list[Track], truth: dict, mapping: dict[str, str]) -> dict[str, float]:
    """:func:`score_links` for ROIs from a segmentation: each ROI stands for the truth ROI it overlaps most.

    Links or ROIs touching no truth lesion (false positives of the segmentation) are left out and counted
    in ``n_links_unmatched``; ``detectable_link_recall`` counts only true links whose two ROIs were found.
    """
    kept = [Link(roi_a=mapping[x.roi_a], roi_b=mapping[x.roi_b]) for x in links
            if x.roi_a in mapping and x.roi_b in mapping]
    as_truth = [Track(t.track_id, {tp: sorted({mapping[r] for r in ids if r in mapping})
                                   for tp, ids in t.rois.items()}) for t in tracks]
    scores = score_links(kept, as_truth, truth)
    found = set(mapping.values())
    detectable = {pair for pair in truth_links(truth) if pair[0] in found and pair[1] in found}
    got = {(x.roi_a, x.roi_b) for x in kept}
    scores["n_links_unmatched"] = float(len(links) - len(kept))
    scores["detectable_link_recall"] = len(got & detectable) / len(detectable) if detectable else 1.0
    scores["n_detectable_links"] = float(len(detectable))
    return scores
