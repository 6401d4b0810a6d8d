"""The review queue: every track's score of how likely the automation got it wrong, with the reasons, so a reader
with minutes per patient looks at the likely errors first (docs/confidence-and-review-queue.md).

"Wrong" is what :func:`analysis.truth.track_errors` finds against a phantom's truth: a false-positive ROI, a false
link (two lesions joined), a missed link (one lesion in two tracks) or a category that differs from the truth where
a reader could see the lesion. The score is a logistic model (:data:`MODEL`) of features the analysis itself holds
(:func:`track_features`): weak spots of the automation (ROIs the prior-guided search added, ROIs next to hot
uptake or at the edge of the field of view, links with little overlap, splits and merges, tracks that disappear
and return, small ROIs) and the measurement's own uncertainty (indeterminate categories, low category confidence,
lesions searched for and not found close to the detection limit). Its weights were fitted on development phantom
patients (``benchmarks/fit_review_queue.py``, seeds in :data:`MODEL`) and are evaluated on unseen ones by
``benchmarks/bench_analysis.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from LesionResponseLib.datamodel import Analysis, Link, Track

#: Feature name -> what the reader is told when it raises the score (``{detail}``: the time points and values).
REASONS: dict[str, str] = {
    "indeterminate": "category indeterminate at {detail}",
    "uncertain": "least certain category {detail}",
    "prior_guided": "ROI found by the prior-guided search at {detail}",
    "gap": "disappears and returns ({detail})",
    "disappearing": "disappearing at {detail}",
    "near_limit": "searched, not found, close to the detection limit at {detail}",
    "new": "new at {detail}",
    "single": "one ROI only ({detail})",
    "split_merge": "split or merge at {detail}",
    "weak_link": "link with little overlap ({detail})",
    "hot_surroundings": "next to hot uptake ({detail})",
    "fov_edge": "at the edge of the field of view ({detail})",
    "small": "small ROI ({detail})",
}
FEATURES = tuple(REASONS)

#: The logistic model: score = 1 / (1 + exp(−(intercept + Σ weight × (feature − mean) / sd))). Fitted by
#: ``benchmarks/fit_review_queue.py`` (L2-penalised maximum likelihood on standardised features) on the tracks of
#: the development patients named in ``fitted_on``; a feature whose fitted weight came out negative is kept at 0
#: (each is a known weak spot: it may fail to help, never make a track look safer).
MODEL: dict[str, Any] = {
    "intercept": -0.508,
    "weights": {
        "indeterminate": 0.9534, "uncertain": 0.4249, "prior_guided": 0.0674, "gap": 0.2136, "disappearing": 0.614,
        "near_limit": 0.3939, "new": 0.0, "single": 0.3582, "split_merge": 0.0085, "weak_link": 0.0,
        "hot_surroundings": 0.4684, "fov_edge": 0.0, "small": 0.4907},
    "means": {
        "indeterminate": 1.5926, "uncertain": 0.2215, "prior_guided": 0.1233, "gap": 0.1389,
        "disappearing": 0.3333, "near_limit": 0.3284, "new": 0.0741, "single": 0.037, "split_merge": 0.1204,
        "weak_link": 0.2175, "hot_surroundings": 0.6092, "fov_edge": 0.0, "small": 0.305},
    "sds": {
        "indeterminate": 1.8055, "uncertain": 0.2486, "prior_guided": 0.2135, "gap": 0.3458,
        "disappearing": 0.4714, "near_limit": 0.4178, "new": 0.2619, "single": 0.1889, "split_merge": 0.3254,
        "weak_link": 0.185, "hot_surroundings": 0.369, "fov_edge": 1.0, "small": 0.331},
    "fitted_on": "development patients 4400-4403 and 1 (the demo): 108 tracks, 46 wrong; penalty 1.0",
}
#: A reason is shown when its feature moves the score's log-odds up by at least this much (a quarter of the
#: log-odds between even and 3:1 odds): smaller nudges would list every feature of every track.
REASON_MIN_LOGIT = 0.25


@dataclass
class QueueItem:
    """One track in the review queue."""

    track_id: int
    score: float  # 0..1: how likely the automation is wrong about this track
    reasons: list[str] = field(default_factory=list)  # the largest contributions first
    reviewed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"track_id": self.track_id, "score": round(self.score, 4), "reasons": list(self.reasons),
                "reviewed": self.reviewed}


def _tp_list(tps: list[int]) -> str:
    return ", ".join(f"T{tp}" for tp in sorted(tps))


def track_features(analysis: Analysis, track: Track, rois_by_id: dict | None = None,
                   links_by_roi: dict[str, list[Link]] | None = None) -> tuple[dict[str, float], dict[str, str]]:
    """The queue's features of ``track`` (name -> value, 0 when absent) and their details for the reasons."""
    rois_by_id = rois_by_id if rois_by_id is not None else {r.roi_id: r for r in analysis.rois}
    response = next((r for r in analysis.responses if r.track_id == track.track_id), None)
    rois = [rois_by_id[rid] for ids in track.rois.values() for rid in ids if rid in rois_by_id]
    rois = [r for r in rois if r.status == "accepted"]
    values: dict[str, float] = dict.fromkeys(FEATURES, 0.0)
    details: dict[str, str] = dict.fromkeys(FEATURES, "")
    if response is not None:
        undecided = [k for k, flag in response.indeterminate.items() if flag]
        values["indeterminate"] = float(len(undecided))
        details["indeterminate"] = _tp_list(undecided)
        confidences = {k: c for k, c in response.category_confidence.items() if c is not None}
        if confidences:
            k = min(confidences, key=confidences.get)
            values["uncertain"] = 1.0 - confidences[k]
            details["uncertain"] = f"{response.categories[k]} at T{k}, {100 * confidences[k]:.0f} % sure"
        gone = [k for k, c in response.categories.items() if c == "disappearing"]
        values["disappearing"] = float(bool(gone))
        details["disappearing"] = _tp_list(gone)
        new = [k for k, c in response.categories.items() if c == "new"]
        values["new"] = float(bool(new))
        details["new"] = _tp_list(new)
    present = sorted(tp for tp, ids in track.rois.items() if any(r in rois_by_id for r in ids))
    missing = [tp for tp in range(present[0], present[-1]) if tp not in present] if present else []
    values["gap"] = float(bool(missing))
    details["gap"] = f"absent at {_tp_list(missing)}" if missing else ""
    prior = [r.timepoint for r in rois if r.source == "prior-guided"]
    values["prior_guided"] = len(prior) / max(len(rois), 1)
    details["prior_guided"] = _tp_list(prior)
    values["single"] = float(len(rois) == 1)
    details["single"] = f"T{rois[0].timepoint}" if len(rois) == 1 else ""
    several = [tp for tp, ids in track.rois.items() if len(ids) > 1]
    values["split_merge"] = float(bool(several))
    details["split_merge"] = _tp_list(several)
    ids = {r.roi_id for r in rois}
    links = links_by_roi if links_by_roi is not None else _links_by_roi(analysis.links)
    # links whose both ROIs exist (a reader may have erased one end), in a fixed order: ties give one reason
    overlaps = [(x.overlap, x) for rid in sorted(ids) for x in links.get(rid, [])
                if x.source == "auto" and x.roi_a in rois_by_id and x.roi_b in rois_by_id]
    if overlaps:
        overlap, weakest = min(overlaps, key=lambda item: item[0])
        values["weak_link"] = 1.0 - overlap
        details["weak_link"] = (f"T{rois_by_id[weakest.roi_a].timepoint}–T{rois_by_id[weakest.roi_b].timepoint} "
                                f"{100 * overlap:.0f} %")
    hot = [(min((r.background_suv or 0.0) / max(r.suv_mean, 1e-6), 2.0), r) for r in rois]
    if hot:
        ratio, roi = max(hot, key=lambda item: item[0])
        values["hot_surroundings"] = ratio
        details["hot_surroundings"] = f"SUV {roi.background_suv or 0:.1f} around SUVmean {roi.suv_mean:.1f} at T{roi.timepoint}"
    edge = [r.timepoint for r in rois if r.at_fov_edge]
    values["fov_edge"] = float(bool(edge))
    details["fov_edge"] = _tp_list(edge)
    if rois:
        smallest = min(rois, key=lambda r: r.volume_ml)
        values["small"] = max(0.0, -math.log10(max(smallest.volume_ml, 1e-3)))  # 1 mL -> 0, 0.1 mL -> 1
        details["small"] = f"{smallest.volume_ml:.2f} mL at T{smallest.timepoint}"
    near = _near_limit(analysis, ids)
    values["near_limit"] = near[0]
    details["near_limit"] = near[1]
    return values, details


def _links_by_roi(links: list[Link]) -> dict[str, list[Link]]:
    by_roi: dict[str, list[Link]] = {}
    for link in links:
        by_roi.setdefault(link.roi_a, []).append(link)
        by_roi.setdefault(link.roi_b, []).append(link)
    return by_roi


def _near_limit(analysis: Analysis, roi_ids: set[str]) -> tuple[float, str]:
    """How close the searches for this track that found nothing came to the detection limit: the largest share of
    the way from the background to the limit that the filtered peak reached (1 = at the limit), and where."""
    best, where = 0.0, []
    for record in analysis.prior_searches:
        if record.found or not set(record.prior_rois) & roi_ids:
            continue
        limit, peak, background = record.limit_suv, record.peak_filtered_suv, record.background_suv
        if None in (limit, peak, background) or not all(map(math.isfinite, (limit, peak, background))) \
                or limit <= background:
            continue
        share = max(0.0, min((peak - background) / (limit - background), 1.0))
        if share > best + 1e-9:
            best, where = share, [record.timepoint]
        elif abs(share - best) <= 1e-9 and share > 0:
            where.append(record.timepoint)
    return best, (f"{_tp_list(where)}, {100 * best:.0f} % of the way" if where else "")


def logit_contributions(values: dict[str, float], model: dict[str, Any] = MODEL) -> dict[str, float]:
    """Each feature's share of the log-odds: weight × standardised value."""
    return {name: model["weights"][name] * (values[name] - model["means"][name]) / model["sds"][name]
            for name in FEATURES}


def score_track(values: dict[str, float], model: dict[str, Any] = MODEL) -> float:
    """The model's probability (0..1) that the automation is wrong about a track with these features."""
    logit = model["intercept"] + sum(logit_contributions(values, model).values())
    return 1.0 / (1.0 + math.exp(-max(min(logit, 50.0), -50.0)))


def review_queue(analysis: Analysis, model: dict[str, Any] = MODEL) -> list[QueueItem]:
    """Every assessed track with its score and reasons, unreviewed first, then by score (highest first), then id."""
    rois_by_id = {r.roi_id: r for r in analysis.rois}
    links = _links_by_roi(analysis.links)
    assessed = {r.track_id for r in analysis.responses}
    reviewed = set(analysis.reviewed_tracks)
    items = []
    for track in analysis.tracks:
        if track.track_id not in assessed:
            continue
        values, details = track_features(analysis, track, rois_by_id, links)
        contributions = logit_contributions(values, model)
        reasons = [REASONS[name].format(detail=details[name]) for name, c in
                   sorted(contributions.items(), key=lambda item: -item[1])
                   if c >= REASON_MIN_LOGIT and values[name] > 0]
        items.append(QueueItem(track.track_id, score_track(values, model), reasons, track.track_id in reviewed))
    items.sort(key=lambda item: (item.reviewed, -item.score, item.track_id))
    return items


def unreviewed(analysis: Analysis) -> list[QueueItem]:
    """The queue's items not marked reviewed, likeliest errors first."""
    return [item for item in review_queue(analysis) if not item.reviewed]
