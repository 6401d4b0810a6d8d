"""Track response: ΔSUVtotal, categories per follow-up, heterogeneity, patterns (docs/DOMAIN.md §1, §4).

Rules (the paper's, made precise):

- The measure is ``params.response.measure``: ``suv_total_pvc`` (partial-volume corrected,
  :mod:`LesionResponseLib.analysis.quantify`; the default) or ``suv_total`` (SUVmean × volume, docs/DOMAIN.md §4,
  the paper's); "SUVtotal" below is that measure. An ROI measured before the corrected value existed falls
  back to ``suv_total``.
- Only **accepted** ROIs count. A track is *present* at a time point when it has at least one accepted ROI
  there; its SUVtotal there is the sum over those ROIs (a split counts whole). Rejected ROIs contribute
  nothing; a track whose ROIs are all rejected gets no :class:`TrackResponse`.
- Reference (``params.response.reference``): ``baseline`` = time point 0; ``previous`` = time point k−1; ``nadir`` =
  the earlier time point (< k) where the track was present with the lowest SUVtotal (absent ones skipped;
  no earlier presence = reference absent).
- Category at follow-up k: reference present and present now → ΔSUVtotal % = 100 (now − ref) / ref, then
  ``decreasing`` if Δ < ``decrease_threshold_pct``, ``increasing`` if Δ > ``increase_threshold_pct``, else
  ``stable``; reference present, absent now → ``disappearing`` (Δ = −100); reference absent, present now →
  ``new`` (Δ undefined: None); absent at both → ``absent`` (None).
- Heterogeneity at follow-up k (patient level): at least one ``new``/``increasing`` track **and** at least
  one ``decreasing``/``disappearing`` track.
- Uncertainty (docs/confidence-and-review-queue.md): a track's SUVtotal has the SD of its ROIs' (in quadrature:
  their noise and contours are independent; ``LesionROI.suv_total_sd`` / ``suv_total_pvc_sd``). The change is a
  ratio, so its interval is taken on the log scale: ``ln(now/ref) ± z·√((σ_now/now)² + (σ_ref/ref)²)``, ``z`` the
  normal quantile of ``params.response.interval_level`` (90 %: ±1.645), which keeps the interval inside −100 %.
  A category whose interval holds a threshold (−30 % or +30 %) is *indeterminate*; the category stays the
  paper's rule. ``category_confidence`` is the probability, under the same normal model, that the true change
  lies in the band of the category called. Without the ROIs' SDs (an older analysis) there is no interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from statistics import NormalDist

from LesionResponseLib.config import REFERENCES, AnalysisParameters
from LesionResponseLib.datamodel import LesionROI, Track, TrackResponse

GROWING = frozenset({"new", "increasing"})
SHRINKING = frozenset({"decreasing", "disappearing"})


def roi_measure(roi: LesionROI, measure: str = "suv_total") -> float:
    """The ROI's SUVtotal (SUV·mL) as ``measure`` says (``suv_total`` or ``suv_total_pvc``)."""
    if measure == "suv_total_pvc" and roi.suv_total_pvc is not None:
        return roi.suv_total_pvc
    return roi.suv_total


def roi_measure_sd(roi: LesionROI, measure: str = "suv_total") -> float | None:
    """SD (SUV·mL) of :func:`roi_measure` (None when the analysis predates it)."""
    if measure == "suv_total_pvc" and roi.suv_total_pvc is not None:
        return roi.suv_total_pvc_sd
    return roi.suv_total_sd


def _accepted(track: Track, rois_by_id: dict[str, LesionROI], tp: int) -> list[LesionROI]:
    rois = [rois_by_id[r] for r in track.rois.get(tp, []) if r in rois_by_id]
    return [r for r in rois if r.status == "accepted"]


def track_suv_totals(track: Track, rois_by_id: dict[str, LesionROI], n_timepoints: int,
                     measure: str = "suv_total") -> dict[int, float | None]:
    """SUVtotal (SUV·mL, ``measure``) of ``track`` per time point, summed over accepted ROIs; None where absent."""
    totals: dict[int, float | None] = {}
    for tp in range(n_timepoints):
        accepted = _accepted(track, rois_by_id, tp)
        totals[tp] = sum(roi_measure(r, measure) for r in accepted) if accepted else None
    return totals


def track_suv_sds(track: Track, rois_by_id: dict[str, LesionROI], n_timepoints: int,
                  measure: str = "suv_total") -> dict[int, float | None]:
    """SD (SUV·mL) of :func:`track_suv_totals` per time point: its ROIs' SDs in quadrature; None where absent or
    where a ROI has no SD."""
    sds: dict[int, float | None] = {}
    for tp in range(n_timepoints):
        values = [roi_measure_sd(r, measure) for r in _accepted(track, rois_by_id, tp)]
        sds[tp] = math.sqrt(sum(v * v for v in values)) if values and None not in values else None
    return sds


def reference_timepoint(totals: dict[int, float | None], k: int, reference: str) -> int | None:
    """The time point whose SUVtotal is follow-up ``k``'s reference (None when the reference is absent)."""
    if reference == "baseline":
        return 0 if totals.get(0) is not None else None
    if reference == "previous":
        return k - 1 if totals.get(k - 1) is not None else None
    if reference == "nadir":
        earlier = [(v, tp) for tp, v in totals.items() if tp < k and v is not None]
        return min(earlier)[1] if earlier else None
    raise ValueError(f"reference must be one of {REFERENCES}, not {reference!r}")


def reference_value(totals: dict[int, float | None], k: int, reference: str) -> float | None:
    """The reference SUVtotal for follow-up ``k`` (None when the reference is absent)."""
    tp = reference_timepoint(totals, k, reference)
    return None if tp is None else totals[tp]


def log_change_sd(ref: float, ref_sd: float, now: float, now_sd: float) -> float:
    """SD of ``ln(now / ref)`` for independent errors (first order): the relative SDs in quadrature."""
    return math.hypot(ref_sd / ref, now_sd / now)


def delta_interval(ref: float, ref_sd: float, now: float, now_sd: float, level: float) -> tuple[float, float]:
    """(low, high) % change interval at confidence ``level``, on the log scale (module notes)."""
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    centre, spread = math.log(now / ref), z * log_change_sd(ref, ref_sd, now, now_sd)
    return 100.0 * math.expm1(centre - spread), 100.0 * math.expm1(centre + spread)


def category_confidence(ref: float, ref_sd: float, now: float, now_sd: float, category: str,
                        params: AnalysisParameters) -> float:
    """Probability that the true change lies in the band of ``category`` (decreasing/stable/increasing), with the
    true log change normal around the measured one (:func:`log_change_sd`)."""
    sd = log_change_sd(ref, ref_sd, now, now_sd)
    centre = math.log(now / ref)
    low = math.log1p(params.response.decrease_threshold_pct / 100.0)
    high = math.log1p(params.response.increase_threshold_pct / 100.0)
    if sd <= 0:
        return 1.0
    dist = NormalDist(centre, sd)
    if category == "decreasing":
        return dist.cdf(low)
    if category == "increasing":
        return 1.0 - dist.cdf(high)
    return dist.cdf(high) - dist.cdf(low)


def categorise(ref: float | None, now: float | None, params: AnalysisParameters) -> tuple[str, float | None]:
    """Category and ΔSUVtotal % of one follow-up given reference and current SUVtotal (None = absent)."""
    if ref is None:
        return ("absent", None) if now is None else ("new", None)
    if now is None:
        return "disappearing", -100.0
    if ref <= 0:  # a present ROI has positive SUVtotal; guard against a zero/negative reference anyway
        return ("increasing" if now > ref else "stable"), None
    delta = 100.0 * (now - ref) / ref
    if delta < params.response.decrease_threshold_pct:
        return "decreasing", delta
    if delta > params.response.increase_threshold_pct:
        return "increasing", delta
    return "stable", delta


def _step_signs(totals: dict[int, float | None], params: AnalysisParameters) -> list[int]:
    """+1 / −1 / 0 for each consecutive pair of time points (beyond the stable band, appear/disappear)."""
    signs = []
    for tp in range(1, len(totals)):
        category, _ = categorise(totals[tp - 1], totals[tp], params)
        signs.append(1 if category in GROWING else -1 if category in SHRINKING else 0)
    return signs


def track_pattern(totals: dict[int, float | None], params: AnalysisParameters) -> str:
    """The pattern of one track over all time points (``totals``: time point → SUVtotal or None).

    - ``baseline-only``: the analysis has no follow-up, so no change can be seen.
    - ``new-then-resolved``: first present at a follow-up and absent at the final time point.
    - ``new``: first present at a follow-up and still present at the final time point.
    - ``disappeared-then-returned``: present at baseline, absent at some follow-up, present again later.
    - ``non-monotonic``: present at baseline, and consecutive changes beyond the stable band (appearing and
      disappearing included) go both up and down.
    - ``monotonic``: otherwise (all consecutive changes go one way or stay within the stable band).
    """
    n = len(totals)
    present = [totals[tp] is not None for tp in range(n)]
    if n <= 1:
        return "baseline-only"
    if not present[0]:
        return "new" if present[-1] else "new-then-resolved"
    first_gap = next((tp for tp in range(n) if not present[tp]), None)
    if first_gap is not None and any(present[first_gap:]):
        return "disappeared-then-returned"
    signs = _step_signs(totals, params)
    return "non-monotonic" if (1 in signs and -1 in signs) else "monotonic"


def assess_track(track: Track, rois_by_id: dict[str, LesionROI], n_timepoints: int,
                 params: AnalysisParameters) -> TrackResponse | None:
    """Response of one track, or None when it has no accepted ROI at all."""
    measure = params.response.measure
    totals = track_suv_totals(track, rois_by_id, n_timepoints, measure)
    if all(v is None for v in totals.values()):
        return None
    sds = track_suv_sds(track, rois_by_id, n_timepoints, measure)
    response = TrackResponse(track_id=track.track_id, suv_total={tp: v or 0.0 for tp, v in totals.items()},
                             categories={}, delta_suv_total_pct={}, pattern=track_pattern(totals, params),
                             suv_total_sd={tp: v or 0.0 for tp, v in sds.items()})
    for k in range(1, n_timepoints):
        ref_tp = reference_timepoint(totals, k, params.response.reference)
        ref = None if ref_tp is None else totals[ref_tp]
        category, delta = categorise(ref, totals[k], params)
        response.categories[k], response.delta_suv_total_pct[k] = category, delta
        measured = delta is not None and ref_tp is not None and sds[ref_tp] is not None and sds[k] is not None
        if measured:
            args = (ref, sds[ref_tp], totals[k], sds[k])
            low, high = delta_interval(*args, params.response.interval_level)
            response.delta_interval_pct[k] = [low, high]
            response.category_confidence[k] = category_confidence(*args, category, params)
            thresholds = (params.response.decrease_threshold_pct, params.response.increase_threshold_pct)
            response.indeterminate[k] = any(low < t < high for t in thresholds)
        else:
            response.delta_interval_pct[k], response.category_confidence[k] = None, None
            response.indeterminate[k] = False
    return response


def heterogeneity(responses: Iterable[TrackResponse], n_timepoints: int) -> dict[int, bool]:
    """Per follow-up k ≥ 1: at least one new-or-increasing and one decreasing-or-disappearing track."""
    responses = list(responses)
    flags = {}
    for k in range(1, n_timepoints):
        cats = {r.categories.get(k) for r in responses}
        flags[k] = bool(cats & GROWING) and bool(cats & SHRINKING)
    return flags


def assess_response(tracks: list[Track], rois: list[LesionROI], n_timepoints: int,
                    params: AnalysisParameters | None = None) -> tuple[list[TrackResponse], dict[int, bool]]:
    """Per-track responses (tracks with ≥ 1 accepted ROI, in ``tracks`` order) and heterogeneity flags."""
    params = params or AnalysisParameters()
    rois_by_id = {r.roi_id: r for r in rois}
    responses = [r for t in tracks if (r := assess_track(t, rois_by_id, n_timepoints, params)) is not None]
    return responses, heterogeneity(responses, n_timepoints)


def roi_categories(tracks: list[Track], responses: list[TrackResponse], rois: list[LesionROI]) -> dict[str, str]:
    """``rois.csv`` category per ROI id: ``baseline`` at time point 0, else its track's category there.

    Rejected ROIs and ROIs outside any assessed track get an empty category (their status says why).
    """
    by_track = {r.track_id: r for r in responses}
    owner = {rid: t.track_id for t in tracks for ids in t.rois.values() for rid in ids}
    result = {}
    for roi in rois:
        response = by_track.get(owner.get(roi.roi_id, -1))
        if roi.status != "accepted" or response is None:
            result[roi.roi_id] = ""
        elif roi.timepoint == 0:
            result[roi.roi_id] = "baseline"
        else:
            result[roi.roi_id] = response.categories.get(roi.timepoint, "")
    return result


def track_ids_by_roi(tracks: list[Track]) -> dict[str, int]:
    """ROI id → track id."""
    return {rid: t.track_id for t in tracks for ids in t.rois.values() for rid in ids}
