"""The uncertainty of SUVtotal and corrected SUVtotal (analysis.uncertainty, quantify.roi_uncertainties) against
known truth: synthetic PETs whose noise (level, growth with uptake, spatial correlation) is drawn by the test, and
the spread of the measures over many noise draws of one lesion."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from LesionResponseLib.analysis.quantify import pvc_suv_totals, roi_uncertainties
from LesionResponseLib.analysis.uncertainty import NoiseModel, estimate_noise, weighted_sum_variance

SPACING = (4.0, 4.0, 4.0)
VOXEL_ML = 0.064


def _anatomy(shape=(64, 80, 80)) -> np.ndarray:
    """Noise-free SUV: fat 0.3, a liver block 5, a spleen block 18 (blurred edges)."""
    mu = np.full(shape, 0.3, np.float32)
    mu[6:58, 6:42, 6:42] = 5.0
    mu[10:54, 46:76, 46:76] = 18.0
    return ndimage.gaussian_filter(mu, 1.5)


def _noise(rng, mu: np.ndarray, smoothing: float, liver_cov: float = 0.12) -> tuple[np.ndarray, float]:
    """Counting-like noise (variance ∝ uptake + 0.5) smoothed by a Gaussian of ``smoothing`` voxels (the correlation
    of a post-filtered reconstruction), scaled to ``liver_cov`` at SUV 5; returns it and the variance slope."""
    impulse = np.zeros((15, 15, 15))
    impulse[7, 7, 7] = 1.0
    gain = float((ndimage.gaussian_filter(impulse, smoothing) ** 2).sum())
    slope = (liver_cov * 5.0) ** 2 / 5.5  # variance = slope × (μ + 0.5) after smoothing
    white = rng.standard_normal(mu.shape).astype(np.float32) * np.sqrt(slope / gain * (mu + 0.5))
    return ndimage.gaussian_filter(white, smoothing), slope


@pytest.mark.parametrize("smoothing", [0.5, 1.0])
def test_noise_level_growth_and_correlation_are_measured_on_the_image(smoothing) -> None:
    rng = np.random.default_rng(4450)
    mu = _anatomy()
    noise, slope = _noise(rng, mu, smoothing)
    model = estimate_noise(mu + noise)
    assert model.slope == pytest.approx(slope, rel=0.25)  # variance growth with uptake
    assert model.sd(np.array(5.0)) == pytest.approx(np.sqrt(slope * 5.5), rel=0.15)  # the liver's noise
    # the correlation: white noise smoothed by σ voxels has a Gaussian autocorrelation of SD √2 σ per axis
    assert np.allclose(model.correlation_sd, smoothing, rtol=0.2)
    truth = NoiseModel(slope * 0.5, slope, (smoothing,) * 3)
    assert model.correlated_voxels == pytest.approx(truth.correlated_voxels, rel=0.5)


def test_correlated_noise_propagates_to_the_spread_of_both_measures() -> None:
    """One lesion in a liver, 60 noise draws: the predicted noise SD of SUVtotal and of the corrected SUVtotal
    matches their spread; white-noise propagation would be ~2x too small."""
    rng = np.random.default_rng(4451)
    shape = (40, 40, 40)
    mu = np.full(shape, 5.0, np.float32)
    z, y, x = np.ogrid[:40, :40, :40]
    lesion = (z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 9  # ~7 voxels radius 3: a 1.5 mL lesion
    mu[lesion] = 20.0
    mu = ndimage.gaussian_filter(mu, 0.6)
    labels = lesion.astype(np.uint16)
    draws = []
    for _ in range(60):
        noise, slope = _noise(rng, mu, 0.75)
        suv = mu + noise
        draws.append((float(suv[lesion].sum()) * VOXEL_ML, pvc_suv_totals(labels, suv, SPACING, psf_fwhm_mm=6.0)[1]))
    spread = np.std(np.array(draws), axis=0, ddof=1)
    model = NoiseModel(slope * 0.5, slope, (0.75,) * 3)
    predicted = roi_uncertainties(labels, mu, SPACING, np.array([1]), model, psf_fwhm_mm=6.0)[1]
    assert predicted.suv_total_noise == pytest.approx(spread[0], rel=0.3)
    assert predicted.suv_total_pvc_noise == pytest.approx(spread[1], rel=0.3)
    white = roi_uncertainties(labels, mu, SPACING, np.array([1]), NoiseModel(slope * 0.5, slope, (0.01,) * 3),
                              psf_fwhm_mm=6.0)[1]
    assert white.suv_total_noise < 0.6 * spread[0]


def test_weighted_sum_variance_is_the_quadratic_form() -> None:
    """Σ w_k w_l σ_k σ_l ρ(k − l) for two voxels two apart along x with ρ(2) known."""
    correlation = NoiseModel(1.0, 0.0, (0.8, 0.8, 0.8)).correlation
    h = correlation.shape[0] // 2
    weights = np.zeros((1, 1, 3))
    weights[0, 0, 0], weights[0, 0, 2] = 1.0, 1.0
    sd = np.full(weights.shape, 2.0)
    rho2 = correlation[h, h, h + 2]
    assert weighted_sum_variance(weights, sd, correlation) == pytest.approx(4.0 * (2.0 + 2.0 * rho2))


def test_a_roi_at_the_end_of_the_field_of_view_and_one_beside_hot_uptake_are_flagged() -> None:
    suv = np.full((30, 40, 40), 1.0, np.float32)
    suv[:, 20:, 29:] = 15.0  # a hot organ, 3 voxels (12 mm, inside the background shell) from ROI 2
    labels = np.zeros(suv.shape, np.uint16)
    labels[0:3, 8:11, 8:11] = 1  # in the first slice
    labels[14:17, 24:27, 24:27] = 2
    labels[14:17, 5:8, 5:8] = 3
    suv[labels > 0] = 10.0
    out = roi_uncertainties(labels, suv, SPACING, np.array([1, 2, 3]), NoiseModel(0.01, 0.01, (0.5,) * 3), psf_fwhm_mm=6.0)
    assert out[1].at_fov_edge and not out[2].at_fov_edge and not out[3].at_fov_edge
    assert out[2].background_suv == pytest.approx(15.0) and out[3].background_suv == pytest.approx(1.0)
