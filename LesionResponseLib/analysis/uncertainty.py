"""Uncertainty of each lesion-ROI's SUVtotal and partial-volume-corrected SUVtotal, from the image itself.

Both measures are linear in the PET voxels once the ROI is fixed: ``SUVtotal = v Σ_{i∈R} x_i`` and
``SUVtotal_pvc = v [Σ_{i∈G} x_i − Σ_{i∈G∖R} x_{s(i)}]`` (``analysis.quantify``: ``G`` the ROI grown by
``PVC_INNER_FWHM`` × FWHM, ``s(i)`` the nearest voxel of the background shell; ``v`` the voxel volume, mL). Two
sources of error are propagated (docs/confidence-and-review-queue.md derives them):

1. **Image noise.** A reconstructed PET's noise is spatially correlated and grows with the uptake. Both are
   measured on the scan (:func:`estimate_noise`) by the variogram of flat tissue, ``γ(L) = ½ E[(x_i − x_{i+L})²]
   = σ²(1 − ρ(L))`` for voxel pairs 1-3 voxels apart along each axis, in bins of local mean SUV: its shape over
   the lags gives a Gaussian correlation per axis, its size the variance, fitted as ``σ²(μ) = a + b·μ`` (counting
   noise plus a randoms-and-scatter floor) through the bins most pairs agree with. A measure ``v Σ_k w_k x_k``
   then has the variance ``v² Σ_{k,l} w_k w_l σ_k σ_l ρ(k − l)`` (:func:`weighted_sum_variance`): white-noise
   propagation (``ρ`` = 1 at 0 only) would underestimate it by the correlated volume ``Σ ρ`` (4-6 voxels on the
   phantom's 4 mm grids).
2. **Contour.** Where the ROI's boundary lies relative to the lesion's true surface is uncertain in two ways.
   (a) The whole boundary sits off by a shift of SD ``quantification.contour_sd_mm`` (1 mm: measured for the
   shipped model, config.py), which moves the measure by the shift × Σ over the boundary faces of what a face's
   sweep adds: the SUV beyond it for SUVtotal; for the corrected SUVtotal the background it displaces (its
   nearest shell voxel's SUV), because count conservation makes the lesion's own edge counts cancel, leaving the
   ``Σ_R b`` term (a ROI too big by ΔV adds ΔV × background). (b) Noise moves the edge locally (``σ(μ)/|∇x|``,
   the displacement of an iso-contour under noise), correlated along the boundary over the PSF's width
   (:func:`edge_correlation`). (c) Where the model's ROI and the contour a reader would draw by the classical rule
   (the background-corrected 50 % iso-contour, ``quantify._threshold_contour_measures``) give different values,
   the measure depends on the contour by at least half that difference (a low-contrast lesion contoured only in
   part, a ROI much larger than its hot spot): the coherent term is the larger of (a) and (c).

The two add in quadrature. Calibration against phantom truth is in docs/confidence-and-review-queue.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.stats import chi2

#: Lags (voxels, along each axis) of the variogram ``γ(L) = ½ E[(x_i − x_{i+L})²] = σ²(1 − ρ(L))``: the
#: difference of two voxels L apart cancels the anatomy (flat over a few voxels inside organs) and keeps the
#: noise; 1-3 voxels span the correlation of clinical reconstructions (ρ(3) < 0.1 for a correlation SD ≤ 1 voxel).
VARIOGRAM_LAGS = (1, 2, 3)
#: The lag whose variogram gives the variance (divided by 1 − ρ(lag)): the shortest, where the anatomy between the
#: two voxels differs least.
VARIANCE_LAG = 1
#: Gaussian σ (voxels) of the local mean SUV a voxel pair is binned by (the uptake level its noise follows).
LOCAL_MEAN_VOXELS = 1.5
#: A bin of local mean SUV agrees with a variance line when its variance lies within this factor of it (the
#: quantile of a bin's 1,000-100,000 pairs is good to a few percent; edges and clipping move bins by 2-100x).
BIN_AGREEMENT = 1.3
#: For Gaussian noise the squared difference of two voxels is σ_d² χ²₁: a low quantile of it per bin (not the mean),
#: rescaled by χ²₁'s, so the pairs across edges (up to half a bin's pairs inside a liver full of lesions) barely count.
PAIR_QUANTILE = 0.25
CHI2_1_QUANTILE = float(chi2.ppf(PAIR_QUANTILE, 1))  # 0.1015
#: Only pairs in flat tissue count: where the smoothed image's gradient over the variogram's reach (3 voxels)
#: changes the uptake by at most this share (organ interiors; lesions and organ edges change it by 50-500 %).
#: The gradient is taken at ``LOCAL_MEAN_VOXELS``, where the noise's own gradient is ~2 % of a liver's uptake.
FLATNESS = 0.1
#: Uptake levels under this many noise SDs have their noise cut short by the reconstruction's non-negativity.
UNCLIPPED_SDS = 2.0
#: Voxels below this local mean SUV are outside the body (air): no noise statistics there.
BODY_SUV = 0.1
#: Bins of local mean SUV (log-spaced) for the variance fit; a bin needs this many voxel pairs to count.
VARIANCE_BINS = 24
MIN_BIN_VOXELS = 200
#: Voxel pairs sampled per lag (a whole-body PET has 4-8 million voxels; this many keep each bin's median within
#: a few percent and the estimate under a second).
PAIR_SAMPLES = 400_000
#: Narrowest and widest noise correlation (Gaussian SD of the equivalent smoothing, voxels) fitted.
CORRELATION_SD_RANGE = (0.2, 3.0)


@dataclass(frozen=True)
class NoiseModel:
    """The noise of one PET: variance ``floor + slope × μ`` (SUV², μ the local mean SUV) and a Gaussian
    autocorrelation ``ρ(Δ) = Π_a exp(−Δ_a² / (4 s_a²))``, ``s`` = ``correlation_sd`` voxels per axis (z, y, x):
    noise as white noise smoothed by a Gaussian of SD ``s``, the shape a reconstruction's post-filter gives it."""

    floor: float
    slope: float
    correlation_sd: tuple[float, float, float]

    def sd(self, mean: np.ndarray) -> np.ndarray:
        """Noise SD (SUV) of voxels whose local mean SUV is ``mean``."""
        return np.sqrt(np.maximum(self.floor + self.slope * np.maximum(mean, 0.0), 0.0))

    @property
    def correlation(self) -> np.ndarray:
        """The autocorrelation on the lag grid (z, y, x; 1 at the centre, out to where it falls below 1 %)."""
        half = max(1, int(np.ceil(np.sqrt(4.0 * np.log(100.0)) * max(self.correlation_sd))))
        lags = np.arange(-half, half + 1, dtype=float)
        axes = [np.exp(-lags ** 2 / (4.0 * s * s)) for s in self.correlation_sd]
        return axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]

    @property
    def correlated_voxels(self) -> float:
        """``Σ ρ``: how many voxels' worth of noise one voxel shares (1 for white noise)."""
        return float(self.correlation.sum())

    def summary(self) -> dict[str, object]:
        """JSON-ready: floor (SUV²), slope (SUV), correlation SD per axis (voxels) and the correlated volume."""
        return {"floor": round(self.floor, 6), "slope": round(self.slope, 6),
                "correlation_sd_voxels": [round(s, 3) for s in self.correlation_sd],
                "correlated_voxels": round(self.correlated_voxels, 3)}


_MODELS: dict[tuple, NoiseModel] = {}  # recent scans' models: a review edit re-measures one scan many times
MODELS_KEPT = 16


def noise_of(suv: np.ndarray) -> NoiseModel:
    """:func:`estimate_noise` of ``suv``, remembered for the last :data:`MODELS_KEPT` scans (keyed on the shape and a
    hash of every 5th voxel: the same scan, not the same array object)."""
    key = (suv.shape, hash(np.ascontiguousarray(suv[::5, ::5, ::5]).tobytes()))
    if key not in _MODELS:
        if len(_MODELS) >= MODELS_KEPT:
            _MODELS.pop(next(iter(_MODELS)))
        _MODELS[key] = estimate_noise(suv)
    return _MODELS[key]


def estimate_noise(suv: np.ndarray, seed: int = 0) -> NoiseModel:
    """The :class:`NoiseModel` of a PET (``suv``: z, y, x array of SUV) measured on the image: per axis and lag,
    the variogram in bins of local mean SUV (medians, so edges do not count); the per-axis correlation SD from its
    shape over the lags; the variance from the longest lag, fitted as ``floor + slope × μ``."""
    x = np.asarray(suv, dtype=np.float32)
    mean = ndimage.gaussian_filter(x, LOCAL_MEAN_VOXELS)
    gradient = ndimage.gaussian_gradient_magnitude(x, LOCAL_MEAN_VOXELS)
    rng = np.random.default_rng(seed)
    gamma = {}  # (axis, lag) -> (bin centres, variogram per bin, pairs per bin)
    # flat tissue: the anatomy changes by less than FLATNESS of the uptake over the variogram's reach
    body = np.flatnonzero((mean > BODY_SUV) & (gradient * max(VARIOGRAM_LAGS) <= FLATNESS * mean))
    if body.size < MIN_BIN_VOXELS:
        return NoiseModel(0.0, 0.0, (CORRELATION_SD_RANGE[0],) * 3)
    edges = np.geomspace(BODY_SUV, max(float(mean.max()), 2 * BODY_SUV), VARIANCE_BINS + 1)
    flat_x, flat_mean = x.ravel(), mean.ravel()
    index = np.stack(np.unravel_index(body, x.shape))
    for axis in range(3):
        for lag in VARIOGRAM_LAGS:
            ok = body[index[axis] + lag < x.shape[axis]]  # pairs (i, i + lag along axis) inside the image
            picked = rng.choice(ok, size=min(PAIR_SAMPLES, ok.size), replace=False)
            other = picked + lag * int(np.prod(x.shape[axis + 1:]))
            d2 = (flat_x[picked] - flat_x[other]) ** 2
            gamma[(axis, lag)] = _binned_variogram(0.5 * (flat_mean[picked] + flat_mean[other]), d2, edges)
    correlation_sd = tuple(_fit_correlation_sd({lag: gamma[(axis, lag)] for lag in VARIOGRAM_LAGS
                                                if (axis, lag) in gamma}) for axis in range(3))
    lag = VARIANCE_LAG
    rows = [(level, value / (1.0 - np.exp(-lag ** 2 / (4.0 * correlation_sd[axis] ** 2))), n)
            for axis in range(3) for level, value, n in gamma.get((axis, lag), {}).values()]
    centres, variances, counts = (np.array(column, dtype=float) for column in zip(*rows, strict=True))
    floor, slope = _variance_fit(centres, variances, counts)
    return NoiseModel(floor, slope, correlation_sd)


def _binned_variogram(levels: np.ndarray, d2: np.ndarray, edges: np.ndarray
                      ) -> dict[int, tuple[float, float, int]]:
    """Per bin (index) of local mean SUV with enough pairs: (median level, ½ quantile(d²) / χ²₁'s quantile, pairs)."""
    which = np.digitize(levels, edges) - 1
    out = {}
    for k in range(len(edges) - 1):
        inside = which == k
        n = int(inside.sum())
        if n >= MIN_BIN_VOXELS:
            out[k] = (float(np.median(levels[inside])),
                      0.5 * float(np.quantile(d2[inside], PAIR_QUANTILE)) / CHI2_1_QUANTILE, n)
    return out


def _fit_correlation_sd(by_lag: dict[int, dict[int, tuple[float, float, int]]]) -> float:
    """The Gaussian correlation SD (voxels) whose variogram shape ``(1 − ρ(L)) / (1 − ρ(L_max))`` best fits the
    measured ``γ(L) / γ(L_max)`` of every uptake bin (least squares weighted by pairs)."""
    longest = max(by_lag)
    rows = [(lag, by_lag[lag][k][1] / max(by_lag[longest][k][1], 1e-12), min(by_lag[lag][k][2], by_lag[longest][k][2]))
            for lag in by_lag if lag != longest for k in by_lag[lag] if k in by_lag[longest]]
    if not rows:
        return CORRELATION_SD_RANGE[0]
    lags, ratios, weights = (np.array(column, dtype=float) for column in zip(*rows, strict=True))
    grid = np.geomspace(*CORRELATION_SD_RANGE, 400)[:, None]
    shape = (1.0 - np.exp(-lags ** 2 / (4 * grid ** 2))) / (1.0 - np.exp(-longest ** 2 / (4 * grid ** 2)))
    return float(grid[int(np.argmin(np.sum(weights * (shape - ratios) ** 2, axis=1))), 0])


def _variance_fit(centres: np.ndarray, variances: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    """``variance = floor + slope × μ`` through the bins most voxel pairs agree with (within ``BIN_AGREEMENT``):
    the line through each two bins is tried and the one with the most pairs in agreeing bins refitted on them.
    Edges only add variance (levels between organs), the reconstruction's non-negativity only takes it away (air,
    cold tissue on a noisy scan: bins under ``UNCLIPPED_SDS`` noise SDs are left out); the organs whose noise is
    counting noise agree on one line."""
    unclipped = centres >= UNCLIPPED_SDS * np.sqrt(variances)
    if unclipped.sum() >= 2:
        centres, variances, counts = centres[unclipped], variances[unclipped], counts[unclipped]
    best, best_support = np.ones(len(centres), bool), -1.0
    for i in range(len(centres)):
        for j in range(i + 1, len(centres)):
            if centres[j] == centres[i]:
                continue
            slope = (variances[j] - variances[i]) / (centres[j] - centres[i])
            floor = variances[i] - slope * centres[i]
            if slope < 0 or floor < 0:
                continue
            ratio = variances / np.maximum(floor + slope * centres, 1e-12)
            agree = (ratio <= BIN_AGREEMENT) & (ratio >= 1.0 / BIN_AGREEMENT)
            support = float(counts[agree].sum())
            if support > best_support:
                best, best_support = agree, support
    return _fit_line(centres[best], variances[best], counts[best])


def _fit_line(centres: np.ndarray, variances: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    """``variance = floor + slope × μ`` by least squares on the relative error (weights: √pairs per bin)."""
    if centres.size == 0:
        return 0.0, 0.0
    if centres.size == 1:
        return float(variances[0]), 0.0
    w = np.sqrt(counts) / np.maximum(variances, 1e-12)
    design = np.stack([np.ones_like(centres), centres], axis=1) * w[:, None]
    (floor, slope), *_ = np.linalg.lstsq(design, variances * w, rcond=None)
    if slope < 0:  # not counting-like: one variance for all uptake levels
        return float(np.average(variances, weights=counts)), 0.0
    if floor < 0:  # a pure counting model through the origin
        return 0.0, float(np.sum(counts * variances) / np.sum(counts * centres))
    return float(floor), float(slope)


# ---------------------------------------------------------------------------------------------- propagation
def weighted_sum_variance(weights: np.ndarray, sd: np.ndarray, correlation: np.ndarray) -> float:
    """Variance of ``Σ_k w_k x_k`` for noise of SD ``sd`` and autocorrelation ``correlation`` (same-shape
    ``weights`` and ``sd`` arrays: a box around the voxels that count, zero elsewhere)."""
    u = weights * sd
    if not u.any():
        return 0.0
    h = correlation.shape[0] // 2
    padded = np.pad(u, h)
    spread = ndimage.correlate(padded, correlation, mode="constant")
    return float(max(np.sum(padded * spread), 0.0))


def edge_shift_voxels(noise_sd: np.ndarray, gradient: np.ndarray, voxel_mm: float) -> np.ndarray:
    """How far (voxels, at most one) noise moves a lesion's edge at each voxel: ``σ/|∇x|``, the displacement of an
    iso-contour under noise (``gradient`` in SUV/mm)."""
    return np.minimum(noise_sd / np.maximum(gradient, 1e-6) / voxel_mm, 1.0)


def edge_correlation(psf_fwhm_mm: float, spacing_xyz: tuple[float, float, float]) -> np.ndarray:
    """Correlation of the edge errors of two voxels of a ROI's boundary by their distance (z, y, x lag grid, 1 at
    the centre): a Gaussian of the PSF's FWHM. Where a blurred edge falls is decided over the PSF's width, so
    boundary voxels closer than that share it (a small lesion's whole boundary moves as one), farther ones not."""
    sigma = psf_fwhm_mm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / np.asarray(spacing_xyz, dtype=float)[::-1]
    half = np.ceil(3.0 * sigma).astype(int)
    axes = [np.exp(-0.5 * (np.arange(-h, h + 1) / s) ** 2) for h, s in zip(half, sigma, strict=True)]
    return axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
