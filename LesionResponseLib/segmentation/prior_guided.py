"""Detection of a lesion at a *known location*: the prior-guided search of a follow-up (or earlier) scan.

A reader who knows a lesion was at a place looks there again: is there still uptake above the local
background? This module does that for one search region (the lesion's earlier ROI mapped through the
registration and dilated by its uncertainty, :mod:`LesionResponseLib.tracking.priors`), on the SUV PET of
the scan searched, and returns either a ROI mask or "below the detection limit" with the limit in SUV.

**Test statistic (matched filter).** A lesion at or below the PET resolution appears as the point-spread
function (PSF): in noise, the optimal linear detector of a known shape is its matched filter (North 1943;
Barrett & Myers, *Foundations of Image Science*, 2004, ch. 13). The image is filtered with a Gaussian of the
PSF's FWHM and the statistic is the highest filtered SUV ``F`` in the search region.

**Background and noise from the surrounding tissue.** The filtered SUV in a shell
``BACKGROUND_INNER_FWHM``–``BACKGROUND_OUTER_FWHM`` × FWHM around the search region (outside every other
ROI and its spill-out) gives the local background (median ``b``) and noise (1.4826 × median absolute
deviation ``s``: robust to a hot structure in part of the shell). Measuring ``s`` on the *filtered* image
accounts for the noise correlation of the reconstruction and post-filter without modelling it, and any
background structure inflates ``s``, which makes the test more conservative, never less.

**Threshold with a known false-alarm rate.** The filtered noise is a smooth random field, so its maximum over
the region exceeds ``b + z s`` with probability ≈ the expected Euler characteristic of the excursion set,
``Σ_d R_d ρ_d(z)`` (random field theory: Worsley et al., Hum Brain Mapp 1996;4:58-73), with resel counts
``R_d`` of the region (that of a ball of its volume: ``R0 = 1``, ``R1 = 4r/w``, ``R2 = 2πr²/w²``,
``R3 = 4πr³/(3w³)``) and ``w`` the FWHM of the field's smoothness, estimated from the background shell as
``w = sqrt(4 ln 2 · var(F) / var(∂F/∂x))`` per axis (Kiebel et al., NeuroImage 1999;10:756-766; never less
than the filter's FWHM). ``z`` is solved for a false-alarm probability ``α`` per search (default
:data:`FALSE_ALARM_PER_SEARCH` = 0.01: with up to ~30 searches per scan, < 0.3 noise detections per scan, below
the ≤ 1 false-positive ROI per scan the analysis is held to). A Bonferroni bound over resels would be
anti-conservative here (measured: 10 % false alarms instead of 1 % on the synthetic test scenes).
``b + z s`` is recorded as the **detection limit** (filtered SUV) when nothing is found.

**Not a neighbour, not an organ.** The peak tested is the region's highest ``F`` when it is the maximum of
``F`` within one FWHM around it, voxels outside the region included. Uptake that keeps rising beyond the
region's edge belongs to something else (a hot organ, another lesion) and is not a detection; but a lesion
beside such an organ may keep a maximum of its own, lower than the organ's spill-in at the region's edge. So
the highest other local maximum above the limit is tested when it also rises :data:`PROMINENCE_SD` ``s``
above the saddle joining it to higher uptake or to the box's edge (its topographic *prominence*), which keeps
out the noise maxima of a warm organ running through the region (pancreas, an adrenal: ``F`` above the limit
of the fat around, but no maximum standing out of the organ). Voxels of other ROIs, grown by one FWHM, are
never part of the search or of the contour.

**Contour.** Background-corrected fixed fraction of the local maximum (``contour_fraction``, default 0.5):
voxels with ``SUV ≥ b₀ + f (SUVmax − b₀)`` connected to the maximum, ``b₀`` the unfiltered background median
(Daisne et al., Radiother Oncol 2003;69:247-250, source-to-background adaptive thresholds; the "A50 %" method
of Frings et al., J Nucl Med 2010;51:1870-1877, and Boellaard et al., EANM guideline, Eur J Nucl Med Mol
Imaging 2015;42:328-354, where 41-50 % iso-contours are the recommended fixed-threshold methods). The
contour must stay mostly within the region grown by one FWHM: else the peak was on an organ (its contour runs
on through the organ), not a lesion. (Cutting such a contour at the saddle to a hotter neighbour, a marker
watershed, was tried: it found a few more lesions beside organs, but it also made ROIs of the noise maxima of a
warm organ running through the region, 13 of 20 synthetic scenes against 3 of 20 without it.)

**Model evidence.** The uptake test knows intensity only: a lesion a few mm from a kidney or the spleen, or
one that cooled to the liver's level, shows no local maximum of its own or stays under the limit, though the
detection model (which sees the shape and the surroundings) still gives it some probability below its
whole-body operating point (0.5). Where the uptake test finds nothing and the analysis has the model's
probability map of that scan, a probability of at least ``model_threshold`` (default
:data:`MODEL_EVIDENCE_PROBABILITY` = 0.2) in the searched region is a find, contoured as the model's component
at that probability around its most probable voxel (again mostly within the region grown by one FWHM). The
lower threshold is the reader's reasoning made explicit: at a place where a lesion was, the prior odds of a
lesion are far higher than at an arbitrary voxel of the body, so weaker evidence suffices. 0.2 keeps a 10×
margin over the highest probability measured at searches where the lesion had truly gone (0.02 on the
development patients 4300-4301 of ``benchmarks/bench_analysis.py``; 10 of 13 true lesions rejected by the
uptake test there had 0.2-0.5). The record says which evidence found the ROI (``evidence``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.stats import norm

from LesionResponseLib.imaging import ball, robust_median_sd

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
#: Per-search false-alarm probability (see the module docstring for the per-scan budget).
FALSE_ALARM_PER_SEARCH = 0.01
#: Background shell (in PSF FWHM from the search region): from 1.5 FWHM (a blurred edge has < 0.1 % of its
#: spill-out left there) to 3 FWHM (enough voxels for a robust median and MAD, near enough to be local tissue).
BACKGROUND_INNER_FWHM = 1.5
BACKGROUND_OUTER_FWHM = 3.0
#: Fewer background voxels than this (e.g. a region at the edge of the field of view) give no reliable noise.
MIN_BACKGROUND_VOXELS = 30
#: Background-corrected iso-contour fraction of the local maximum (41-50 % methods; 0.5 = A50 %).
CONTOUR_FRACTION = 0.5
#: Most of the contour must lie within the search region grown by one FWHM.
MIN_CONTOUR_INSIDE = 0.5
#: Lesion probability of the detection model at which its evidence is accepted where the uptake test found
#: nothing (module docstring, "Model evidence"); 0 turns model evidence off.
MODEL_EVIDENCE_PROBABILITY = 0.2
#: A probability map given as uint8 holds round(255 p) (steps of 0.004; how the pipeline caches it).
PROBABILITY_UINT8_SCALE = 255.0
#: A local maximum that is not the region's hottest uptake must rise this many noise sd above the saddle
#: joining it to higher uptake (its prominence). Measured on the noise-only synthetic scenes of the tests (4268
#: maxima of the filtered noise): median 0.6 sd, 3.4 % above 2 sd, 0.1 % above 3 sd; a lesion 11 mm from an
#: organ twice as hot rises 2-4 sd, one 7 mm from it 1-2.5 sd, no more than noise.
PROMINENCE_SD = 3.0
#: Version of the detection rule and of where the pipeline searches (``workflow.prior_search``): part of the
#: analysis cache key, so a changed rule is never served stale.
SEARCH_RULE_VERSION = 10


@dataclass
class PriorSearchResult:
    """Outcome of one search. SUV values are in SUV (``*_filtered``: after the PSF matched filter)."""

    found: bool
    reason: str
    limit_suv: float  # detection limit: filtered SUV the peak had to exceed (background + z × noise)
    peak_filtered_suv: float  # filtered SUV of the peak tested (``_tested_peak``; when there is none, the
    #                           highest filtered SUV in the search region)
    background_suv: float  # median filtered SUV of the background shell
    noise_sd_suv: float  # robust sd of the filtered background
    z: float  # threshold in noise sd (random field theory over the region)
    n_resels: float  # region volume / smoothness FWHM³
    peak_suv: float = 0.0  # unfiltered SUVmax of the contour (0 when nothing was found)
    model_probability: float | None = None  # highest model lesion probability in the region (None: not consulted)
    evidence: str = ""  # what found it: "uptake" (the test above) or "model" (model evidence); "" when not found
    mask: np.ndarray | None = None  # (z, y, x) bool on the PET grid when found

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures (no mask), rounded."""
        data = asdict(self)
        data.pop("mask")
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in data.items()}



def _crop(region: np.ndarray, pad_vox: np.ndarray) -> tuple[slice, ...]:
    where = np.argwhere(region)
    low = np.maximum(where.min(axis=0) - pad_vox, 0)
    high = np.minimum(where.max(axis=0) + pad_vox + 1, region.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))


def _distance_band(region: np.ndarray, spacing: np.ndarray, inner_mm: float, outer_mm: float) -> np.ndarray:
    distance = ndimage.distance_transform_edt(~region, sampling=spacing)
    return (distance > inner_mm) & (distance <= outer_mm)


def search_known_location(pet_suv: sitk.Image, region: np.ndarray, psf_fwhm_mm: float,
                          *, others: np.ndarray | None = None, false_alarm: float = FALSE_ALARM_PER_SEARCH,
                          contour_fraction: float = CONTOUR_FRACTION, min_volume_ml: float = 0.0,
                          probability: np.ndarray | None = None,
                          model_threshold: float = MODEL_EVIDENCE_PROBABILITY) -> PriorSearchResult:
    """Look for a lesion inside ``region`` of ``pet_suv`` (module docstring for the rule).

    Args:
        pet_suv: SUV PET of the scan searched.
        region: (z, y, x) bool array on that grid: where the lesion should be (mapped prior + margin).
        psf_fwhm_mm: reconstructed resolution (mm FWHM) of that PET.
        others: (z, y, x) array, > 0 at voxels of other lesion-ROIs of that scan (never searched or taken).
        false_alarm: false-alarm probability per search.
        contour_fraction: background-corrected iso-contour fraction of the local maximum.
        min_volume_ml: a contour smaller than this (mL) is reported as not found.
        probability: (z, y, x) lesion probability of the detection model on that grid (floats 0-1, or uint8
            :data:`PROBABILITY_UINT8_SCALE` × p), consulted where the uptake test finds nothing (model evidence); None: uptake test only.
        model_threshold: probability at which model evidence is accepted (0: never).
    """
    spacing = np.asarray(pet_suv.GetSpacing()[::-1], float)  # z, y, x mm
    fwhm = float(psf_fwhm_mm)
    region = np.asarray(region, bool)
    if not region.any():
        return not_searched("empty search region")
    box = _crop(region, np.ceil((BACKGROUND_OUTER_FWHM + 2) * fwhm / spacing).astype(int))
    suv = sitk.GetArrayViewFromImage(pet_suv)[box].astype(np.float32)
    region = region[box]
    blocked = np.zeros(region.shape, bool) if others is None else np.asarray(others)[box] > 0
    blocked = ndimage.binary_dilation(blocked, ball(spacing, fwhm)) if blocked.any() else blocked
    filtered = ndimage.gaussian_filter(suv, fwhm * FWHM_TO_SIGMA / spacing, mode="nearest")
    searched = region & ~blocked
    shell = _distance_band(region, spacing, BACKGROUND_INNER_FWHM * fwhm, BACKGROUND_OUTER_FWHM * fwhm) & ~blocked
    if not searched.any():
        return not_searched("search region lies within other lesion-ROIs")
    if int(shell.sum()) < MIN_BACKGROUND_VOXELS:
        return not_searched(f"only {int(shell.sum())} background voxels around the region")
    background, noise = robust_median_sd(filtered[shell])
    smoothness = max(fwhm, _smoothness_fwhm(filtered, shell, spacing))
    volume_mm3 = float(searched.sum()) * float(np.prod(spacing))
    n_resels = volume_mm3 / smoothness**3
    z = rft_threshold(volume_mm3, smoothness, false_alarm)
    limit = background + z * max(noise, 1e-6)
    peak_index, no_peak = _tested_peak(filtered, searched, spacing, fwhm=fwhm, limit=limit,
                                       min_prominence=PROMINENCE_SD * max(noise, 1e-6))
    peak = float(filtered[peak_index])
    figures = dict(limit_suv=limit, peak_filtered_suv=peak, background_suv=background, noise_sd_suv=noise, z=z,
                   n_resels=n_resels)
    shape = sitk.GetArrayViewFromImage(pet_suv).shape
    min_voxels = min_volume_ml * 1000.0 / float(np.prod(spacing))

    def not_by_uptake(reason: str) -> PriorSearchResult:
        if probability is None or model_threshold <= 0:
            return PriorSearchResult(False, reason, **figures)
        cropped = as_probability(np.asarray(probability)[box])
        mask, p_max = _model_evidence(cropped, searched, region, blocked=blocked, spacing=spacing, fwhm=fwhm,
                                      threshold=model_threshold)
        if mask is None or mask.sum() < min_voxels:
            return PriorSearchResult(False, reason, **figures, model_probability=p_max)
        return PriorSearchResult(True, f"found by model evidence ({reason})", **figures,
                                 peak_suv=float(suv[mask].max()), model_probability=p_max, evidence="model",
                                 mask=_uncropped(mask, box, shape))

    if no_peak:
        return not_by_uptake(no_peak)
    if peak <= limit:
        return not_by_uptake("below the detection limit")
    mask, suv_max = _contour(suv, shell, searched, region=region, blocked=blocked, peak_index=peak_index,
                             spacing=spacing, fwhm=fwhm, fraction=contour_fraction)
    if mask is None:
        return not_by_uptake("contour leaks out of the search region")
    if mask.sum() < min_voxels:
        return not_by_uptake("contour smaller than the minimum ROI volume")
    return PriorSearchResult(True, "found", **figures, peak_suv=suv_max, evidence="uptake",
                             mask=_uncropped(mask, box, shape))


def _uncropped(mask: np.ndarray, box: tuple[slice, ...], shape: tuple[int, ...]) -> np.ndarray:
    full = np.zeros(shape, bool)
    full[box] = mask
    return full


def _model_evidence(probability: np.ndarray, searched: np.ndarray, region: np.ndarray, *, blocked: np.ndarray,
                    spacing: np.ndarray, fwhm: float, threshold: float) -> tuple[np.ndarray | None, float]:
    """The model's component at ``threshold`` around its most probable voxel of the searched region (None when
    below ``threshold`` or when the component lies mostly outside the region grown by one FWHM), and that
    highest probability."""
    p = np.where(searched, probability, 0.0)
    p_max = float(p.max())
    if p_max < threshold:
        return None, p_max
    at = np.unravel_index(int(np.argmax(p)), p.shape)
    components, _ = ndimage.label(probability >= threshold)
    component = components == components[at]
    inside = component & ndimage.binary_dilation(region, ball(spacing, fwhm)) & ~blocked
    if inside.sum() < MIN_CONTOUR_INSIDE * component.sum():
        return None, p_max
    return inside, p_max


def as_probability(values: np.ndarray) -> np.ndarray:
    """Model probabilities as floats 0-1 (a uint8 map holds :data:`PROBABILITY_UINT8_SCALE` × p)."""
    return values / PROBABILITY_UINT8_SCALE if values.dtype == np.uint8 else values


#: A ROI lies on physiological uptake when at least this share of its voxels has a model ``physiological``
#: probability of at least the model's ``physiological_threshold`` (the majority: a lesion touching a kidney keeps
#: its own voxels, which the output was trained to leave out, and PSF spill adds a rim of one voxel or two).
PHYSIOLOGICAL_SHARE = 0.5
#: The probability used where a model's own ``ModelConfig.physiological_threshold`` is not given.
PHYSIOLOGICAL_PROBABILITY = 0.5


def physiological_share(mask: np.ndarray, physiological: np.ndarray,
                        threshold: float = PHYSIOLOGICAL_PROBABILITY) -> float:
    """Share (0-1) of ``mask``'s voxels whose model ``physiological`` probability (0-1, or uint8 as
    :func:`as_probability`) is at least ``threshold`` (the model's ``physiological_threshold``); 0 for an
    empty mask."""
    if not mask.any():
        return 0.0
    return float((as_probability(np.asarray(physiological)[mask]) >= threshold).mean())


def rft_threshold(volume_mm3: float, smoothness_fwhm_mm: float, false_alarm: float) -> float:
    """``z`` at which a smooth Gaussian field (FWHM ``smoothness_fwhm_mm``) over a ball of ``volume_mm3``
    exceeds ``z`` with probability ``false_alarm`` (expected Euler characteristic, Worsley et al. 1996)."""
    radius = (3.0 * volume_mm3 / (4.0 * math.pi)) ** (1.0 / 3.0)
    w = smoothness_fwhm_mm
    resels = (1.0, 4.0 * radius / w, 2.0 * math.pi * radius**2 / w**2, 4.0 * math.pi * radius**3 / (3.0 * w**3))
    c = 4.0 * math.log(2.0)

    def expected_ec(z: float) -> float:
        g = math.exp(-z * z / 2.0)
        densities = (float(norm.sf(z)), math.sqrt(c) / (2 * math.pi) * g, c / (2 * math.pi) ** 1.5 * z * g,
                     c**1.5 / (2 * math.pi) ** 2 * (z * z - 1.0) * g)
        return sum(r * d for r, d in zip(resels, densities, strict=True))

    low, high = float(norm.isf(false_alarm)), 10.0  # E[EC] >= the single-voxel tail; decreasing beyond z = 1
    for _ in range(60):
        mid = (low + high) / 2.0
        low, high = (mid, high) if expected_ec(mid) > false_alarm else (low, mid)
    return high


def _smoothness_fwhm(filtered: np.ndarray, shell: np.ndarray, spacing: np.ndarray) -> float:
    """FWHM (mm) of the filtered noise field from the variance of its finite differences in ``shell``."""
    values = filtered[shell]
    variance = robust_median_sd(values)[1] ** 2
    widths = []
    for axis, step in enumerate(spacing):
        pair = np.take(shell, range(1, shell.shape[axis]), axis) & np.take(shell, range(shell.shape[axis] - 1), axis)
        diff = (np.diff(filtered, axis=axis) / step)[pair]
        if diff.size < MIN_BACKGROUND_VOXELS or variance <= 0:
            continue
        gradient_variance = robust_median_sd(diff)[1] ** 2
        if gradient_variance > 0:
            widths.append(math.sqrt(4.0 * math.log(2.0) * variance / gradient_variance))
    return float(np.exp(np.mean(np.log(widths)))) if widths else 0.0


def not_searched(reason: str) -> PriorSearchResult:
    """The result of a search that was not run (``reason`` says why): not found, no figures (NaN)."""
    nan = float("nan")
    return PriorSearchResult(False, reason, nan, nan, nan, nan, nan, 0.0)


def _tested_peak(filtered: np.ndarray, searched: np.ndarray, spacing: np.ndarray, *, fwhm: float, limit: float,
                 min_prominence: float) -> tuple[tuple[int, ...], str]:
    """The peak the test is about, and why there is none to test ("" when there is).

    When the region's highest ``F`` is a *local maximum* (the maximum within one FWHM around it, voxels outside
    the region included) above ``limit``, it is tested. Otherwise the region's hottest uptake is the slope of
    something beyond it, and the highest other local maximum above ``limit`` is tested if it also stands
    ``min_prominence`` above the saddle joining it to higher uptake (:func:`_prominence`): a lesion beside a hot
    organ keeps a maximum of its own though the organ's spill-in is higher at the region's edge, while a noise
    maximum on a warm organ that runs through the region (pancreas, an adrenal) barely rises above its
    neighbours. Otherwise the region's highest ``F`` is reported with the reason.
    """
    local_max = filtered >= ndimage.maximum_filter(filtered, footprint=ball(spacing, fwhm), mode="nearest") - 1e-6
    candidates = searched & local_max & (filtered > limit)
    highest = np.unravel_index(int(np.argmax(np.where(searched, filtered, -np.inf))), filtered.shape)
    if candidates[highest]:
        return highest, ""  # the region's hottest uptake is a maximum of its own: the plain test
    flat = np.flatnonzero(candidates)
    for at in flat[np.argsort(-filtered.ravel()[flat])]:  # hottest first
        index = np.unravel_index(int(at), filtered.shape)
        if _prominence(filtered, index) >= min_prominence:
            return index, ""
    if candidates.any():
        return highest, "uptake above the limit, but no maximum stands out of its surroundings (organ tissue)"
    if filtered[highest] > limit:
        return highest, "uptake rises beyond the search region (organ or other lesion)"
    return highest, ""


def _prominence(filtered: np.ndarray, index: tuple, steps: int = 16) -> float:
    """Topographic prominence of the maximum at ``index`` (filtered SUV): its height above the highest level
    at which its island ``{F ≥ level}`` joins higher uptake or reaches the edge of the box (bisection over
    the level; a lesion in fat rises to its peak from the background, a noise bump on an organ only from the
    organ's noisy plateau)."""
    top = float(filtered[index])
    higher = filtered > top + 1e-6
    low, high = float(filtered.min()), top
    for _ in range(steps):
        level = (low + high) / 2.0
        islands, _ = ndimage.label(filtered >= level)
        island = islands == islands[index]
        joined = bool((island & higher).any()) or _touches_edge(island)
        low, high = (level, high) if joined else (low, level)
    return top - low


def _touches_edge(mask: np.ndarray) -> bool:
    return any(np.take(mask, edge, axis).any() for axis in range(mask.ndim) for edge in (0, -1))


def _contour(suv: np.ndarray, shell: np.ndarray, searched: np.ndarray, *, region: np.ndarray,
             blocked: np.ndarray,
             peak_index: tuple, spacing: np.ndarray, fwhm: float, fraction: float) -> tuple[np.ndarray | None, float]:
    """Background-corrected iso-contour around the peak (None when it leaks out of the region)."""
    near_peak = np.zeros(suv.shape, bool)
    near_peak[peak_index] = True
    near_peak = ndimage.binary_dilation(near_peak, ball(spacing, fwhm / 2)) & searched
    maximum_at = np.unravel_index(int(np.argmax(np.where(near_peak, suv, -np.inf))), suv.shape)
    suv_max = float(suv[maximum_at])
    level = float(np.median(suv[shell]))
    level += fraction * (suv_max - level)
    components, _ = ndimage.label(suv >= level)
    component = components == components[maximum_at]
    allowed = ndimage.binary_dilation(region, ball(spacing, fwhm))
    inside = component & allowed & ~blocked
    if inside.sum() < MIN_CONTOUR_INSIDE * component.sum():
        return None, suv_max
    return inside, suv_max
