"""The pure SUV arithmetic against analytic values (decay, SUVbw, Janmahasatian LBM, SUL)."""

from __future__ import annotations

import math

import pytest

from LesionResponseLib.dicomio.suv import (
    GA68_HALF_LIFE_S,
    LU177_HALF_LIFE_S,
    body_mass_index,
    decay_fraction,
    decayed_activity_bq,
    frame_decay_correction,
    lean_body_mass_kg,
    sul_factor,
    suv_bw_factor,
)


def test_half_lives_are_the_published_values():
    assert GA68_HALF_LIFE_S == pytest.approx(4062.6, abs=0.1)  # 67.71 min
    assert LU177_HALF_LIFE_S == pytest.approx(6.647 * 86400)


@pytest.mark.parametrize(("elapsed", "expected"), [(0, 1.0), (4062.6, 0.5), (2 * 4062.6, 0.25), (-4062.6, 2.0)])
def test_decay_fraction_halves_every_half_life(elapsed, expected):
    assert decay_fraction(elapsed, 4062.6) == pytest.approx(expected, rel=1e-12)


def test_decay_needs_a_positive_half_life():
    with pytest.raises(ValueError, match="half-life must be positive"):
        decay_fraction(10, 0)


def test_suv_bw_factor_is_weight_over_decayed_dose():
    # 70 kg, 150 MBq, scanned exactly one half-life later: 70,000 g / 75 MBq
    assert suv_bw_factor(70, 150e6, GA68_HALF_LIFE_S, GA68_HALF_LIFE_S) == pytest.approx(70e3 / 75e6, rel=1e-12)
    assert decayed_activity_bq(150e6, 3600, GA68_HALF_LIFE_S) == pytest.approx(150e6 * math.exp(-math.log(2) * 3600
                                                                                              / 4062.6), rel=1e-6)


def test_frame_decay_correction_matches_the_integral():
    lam = math.log(2) / GA68_HALF_LIFE_S
    start, duration = 600.0, 180.0
    # mean of e^(−λt) over [start, start + duration], computed numerically
    n = 100000
    mean = sum(math.exp(-lam * (start + duration * (k + 0.5) / n)) for k in range(n)) / n
    assert frame_decay_correction(start, duration, GA68_HALF_LIFE_S) == pytest.approx(1 / mean, rel=1e-8)
    assert frame_decay_correction(start, 0.0, GA68_HALF_LIFE_S) == pytest.approx(math.exp(lam * start), rel=1e-12)


def test_janmahasatian_lean_body_mass():
    # 80 kg, 1.80 m: BMI 24.69; men 9270·80 / (6680 + 216·BMI), women 9270·80 / (8780 + 244·BMI)
    bmi = 80 / 1.8**2
    assert body_mass_index(80, 1.8) == pytest.approx(24.691358, rel=1e-6)
    assert lean_body_mass_kg(80, 1.8, "M") == pytest.approx(741600 / (6680 + 216 * bmi), rel=1e-12)
    assert lean_body_mass_kg(80, 1.8, "M") == pytest.approx(61.73, abs=0.01)  # 741600 / 12013.33
    assert lean_body_mass_kg(80, 1.8, "F") == pytest.approx(50.09, abs=0.01)  # 741600 / 14804.69
    assert sul_factor(1e-3, 80, 1.8, "F") == pytest.approx(1e-3 * 50.092 / 80, rel=1e-4)
    with pytest.raises(ValueError, match="sex 'M' or 'F'"):
        lean_body_mass_kg(80, 1.8, "O")
