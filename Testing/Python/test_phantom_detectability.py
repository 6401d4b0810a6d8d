"""The phantom's ideal-observer detectability (truth ``ideal_snr``) and the category ceiling it sets."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from LesionResponseLib.analysis.truth import KNOWN_LOCATION_D, detectability_ceiling, whole_body_d
from LesionResponseLib.phantom import simulate, simulate_patient
from LesionResponseLib.phantom.detectability import ideal_snr, pet_signal


def _blur_to_pet(volume: np.ndarray, sigma: tuple[float, float, float]) -> np.ndarray:
    """The phantom's own whole-image path: PSF blur on the CT grid, then 2 × 2 averaging."""
    return simulate._downsample(ndimage.gaussian_filter(volume, sigma, mode="constant"))


@pytest.mark.parametrize("corner", [(0, 1, 3), (5, 17, 22), (20, 41, 51)])
def test_pet_signal_is_the_whole_image_difference(corner):
    """The lesion's local signal equals blurring the whole scan with and without it, near edges included."""
    rng = np.random.default_rng(3)
    shape, sigma = (26, 48, 56), (0.64, 1.27, 1.27)
    background = rng.uniform(0.5, 6.0, shape).astype(np.float32)
    box = tuple(slice(c, min(c + n, s)) for c, n, s in zip(corner, (5, 6, 7), shape, strict=True))
    change = rng.uniform(1.0, 9.0, tuple(s.stop - s.start for s in box)).astype(np.float32)
    with_lesion = background.copy()
    with_lesion[box] += change
    expected = _blur_to_pet(with_lesion, sigma) - _blur_to_pet(background, sigma)
    pet_box, signal = pet_signal([(box, change)], shape, sigma)
    assert np.abs(signal - expected[pet_box]).max() < 1e-4
    outside = expected.copy()
    outside[pet_box] = 0.0
    assert np.abs(outside).max() < 1e-4  # the box holds the whole signal


def test_ideal_snr_is_the_matched_filter_performance_on_the_phantom_noise():
    """d' predicts the separation of the matched-filter statistic on the phantom's own noise (no post-filter:
    the statistic is Σ s·y/σ², H0 = noise only, H1 = signal + noise), within Monte-Carlo error."""
    acq = simulate.Acquisition(scan_start=simulate.dt.datetime(2025, 1, 1, 10), injection=simulate.dt.datetime(2025, 1, 1, 9),
                               injected_activity_bq=150e6, weight_kg=75.0, height_m=1.75, sex="M",
                               frame_duration_s=120.0, psf_fwhm_mm=6.0, n_beds=4)
    background = np.full((8, 12, 12), 5.0, np.float32)  # liver-like
    signal = np.zeros_like(background)
    signal[3:5, 5:7, 5:7] = [[[2.7, 1.8], [1.8, 1.2]], [[2.1, 1.5], [1.5, 0.9]]]
    sd = simulate._noise_sd(background, acq)
    predicted = ideal_snr(signal, sd)
    rng = np.random.default_rng(0)
    weights = signal / sd**2
    h0 = np.array([np.sum(weights * simulate._noise(background, acq, rng)) for _ in range(3000)])
    h1 = np.array([np.sum(weights * (signal + simulate._noise(background, acq, rng))) for _ in range(3000)])
    measured = (h1.mean() - h0.mean()) / h0.std()
    assert 1.0 < predicted < 6.0  # a faint lesion: the test is informative
    assert measured == pytest.approx(predicted, rel=0.06)


@pytest.fixture(scope="module")
def slab():
    return simulate_patient(11, 2, axial_extent_mm=200, with_ct=False, small_lesions=True)


def test_truth_has_ideal_snr_that_scales_with_noise(slab):
    quiet = simulate_patient(11, 2, axial_extent_mm=200, with_ct=False, small_lesions=True, noise_scale=0.5)
    pairs = [(e["ideal_snr"], q["timepoints"][tp]["ideal_snr"])
             for le, q in zip(slab.truth["lesions"], quiet.truth["lesions"], strict=True)
             for tp, e in le["timepoints"].items() if e["present"]]
    assert len(pairs) >= 5
    for noisy, half in pairs:
        assert half == pytest.approx(2 * noisy, rel=0.02)  # d' ∝ 1 / noise sd
    absent = [e["ideal_snr"] for le in slab.truth["lesions"] for e in le["timepoints"].values() if not e["present"]]
    assert all(v == 0.0 for v in absent)


def test_ideal_snr_does_not_depend_on_the_ct(slab):
    """bench_analysis completes old phantoms' truth without rendering the CT: the d' must be the same."""
    with_ct = simulate_patient(11, 2, axial_extent_mm=200, with_ct=True, small_lesions=True)
    assert with_ct.truth["lesions"] == slab.truth["lesions"]


def test_ideal_snr_follows_lesion_contrast(slab):
    """Among one scan's lesions of the same site, d' grows with volume x (SUVmax - its tissue), roughly."""
    rows = [(e["volume_ml"] * e["suv_max"], e["ideal_snr"]) for le in slab.truth["lesions"]
            for e in le["timepoints"].values() if e["present"] and le["site"] != "liver"]
    strength, snr = np.array(rows).T
    assert len(rows) >= 4
    assert np.corrcoef(np.argsort(np.argsort(strength)), np.argsort(np.argsort(snr)))[0, 1] > 0.6


def test_whole_body_threshold():
    # 70 L of body in (8.1 mm)^3 resolution cells: 1.3e5 cells, one false alarm per scan -> z of 7.5e-6
    assert whole_body_d(70_000.0, 8.1) == pytest.approx(4.33, abs=0.01)
    assert whole_body_d(70_000.0, 8.1, false_alarms_per_scan=10) < whole_body_d(70_000.0, 8.1)
    assert KNOWN_LOCATION_D == pytest.approx(2.326, abs=1e-3)


def _truth(snr: dict[int, list[float]]) -> dict:
    return {"n_timepoints": 3, "lesions": [
        {"lesion_id": t, "track_id": t, "timepoints": {str(k): {"ideal_snr": v} for k, v in enumerate(values)}}
        for t, values in snr.items()]}


def test_ceiling_counts_what_an_ideal_observer_can_call():
    truth = _truth({
        1: [20.0, 8.0, 3.0],   # decreasing, visible throughout: achievable
        2: [20.0, 1.0, 0.5],   # decreasing below the known-location limit at follow-ups: called disappearing
        3: [0.0, 3.0, 3.0],    # new, faint at every scan, but found by the multi-scan search (4.2 combined)
        4: [0.0, 2.5, 2.5],    # new, visible where known but not found by a search (3.5 combined < 4)
        5: [1.0, 30.0, 30.0],  # increasing from below the limit: called new
        6: [6.0, 0.0, 0.0],    # disappearing, visible at baseline
    })
    pairs = [{"truth_track": t, "follow_up": k, "truth": c, "measured": m, "large": t != 2}
             for t, k, c, m in [(1, 1, "decreasing", "decreasing"), (1, 2, "decreasing", "stable"),
                                (2, 1, "decreasing", "disappearing"), (2, 2, "decreasing", "disappearing"),
                                (3, 1, "new", "new"), (3, 2, "new", "new"), (4, 1, "new", "absent"),
                                (4, 2, "new", "absent"), (5, 1, "increasing", "new"), (5, 2, "increasing", "new"),
                                (6, 1, "disappearing", "disappearing"), (6, 2, "disappearing", "disappearing")]]
    c = detectability_ceiling(truth, pairs, blind_d=4.0)
    # achievable: 1@1, 1@2, 3@1, 3@2, 6@1, 6@2
    assert c["n_all"] == 12 and c["ceiling_all"] == pytest.approx(6 / 12)
    assert c["n_large"] == 10 and c["ceiling_large"] == pytest.approx(6 / 10)
    assert c["n_decreasing"] == 4 and c["ceiling_decreasing"] == pytest.approx(2 / 4)
    assert c["n_achievable_all"] == 6 and c["agreement_achievable_all"] == pytest.approx(5 / 6)
    assert c["agreement_achievable_decreasing"] == pytest.approx(1 / 2)
    known = detectability_ceiling(truth, pairs, blind_d=KNOWN_LOCATION_D)
    assert known["ceiling_all"] == pytest.approx(8 / 12)  # with every location known, track 4 counts


def test_ceiling_needs_a_phantom_with_ideal_snr():
    with pytest.raises(ValueError, match="regenerate the phantom"):
        detectability_ceiling({"n_timepoints": 2, "lesions": [{"track_id": 1, "timepoints": {"0": {}}}]}, [], 4.0)


def test_a_roi_touching_a_tiny_lesion_is_that_lesion():
    """Truth correspondence: overlap first; a ROI overlapping nothing goes to a touched lesion < 0.5 mL only."""
    from LesionResponseLib.analysis.truth import roi_truth_labels

    true = np.zeros((12, 12, 12), np.int64)
    true[2, 2, 2] = 5                 # tiny lesion (one voxel)
    true[6:10, 6:10, 6:10] = 7        # large lesion
    true[2, 9, 9] = 9                 # tiny lesion with no ROI near it
    pred = np.zeros_like(true)
    pred[3, 3, 3] = 1                 # diagonal neighbour of lesion 5
    pred[6:8, 5, 6:8] = 2             # beside the large lesion, overlapping nothing
    pred[8, 8, 8] = 3                 # inside the large lesion
    pred[4:6, 2, 2] = 4               # two voxels from lesion 5: no
    pred[2, 9, 10] = 6                # beside lesion 9 ...
    pred[2, 9, 11] = 6                # ... a two-voxel ROI
    owner = roi_truth_labels(pred, true, tiny_labels={5, 9})
    assert owner == {1: 5, 3: 7, 6: 9}
    assert roi_truth_labels(pred, true) == {3: 7}  # without tiny lesions: overlap only
