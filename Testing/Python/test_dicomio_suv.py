"""The pure SUV arithmetic against analytic values (decay, SUVbw, Janmahasatian LBM, SUL)."""

from __future__ import annotations

import math

import pytest

from LesionResponseLib.dicomio.suv import (
    GA68_HALF_LIFE_S,
    LU177_HALF_LIFE_S,
    average_count_rate_time_s,
    body_mass_index,
    body_surface_area_m2,
    by_sex,
    decay_fraction,
    decayed_activity_bq,
    frame_decay_correction,
    lean_body_mass_kg,
    normalising_mass_kg,
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


def test_average_count_rate_time_is_where_the_activity_equals_its_frame_mean():
    lam = math.log(2) / GA68_HALF_LIFE_S
    duration = 600.0
    n = 100000
    mean = sum(math.exp(-lam * duration * (k + 0.5) / n) for k in range(n)) / n  # relative to the frame start
    t_ave = average_count_rate_time_s(duration, GA68_HALF_LIFE_S)
    assert math.exp(-lam * t_ave) == pytest.approx(mean, rel=1e-9)
    assert 0 < t_ave < duration / 2 and average_count_rate_time_s(0.0, GA68_HALF_LIFE_S) == 0.0
    assert frame_decay_correction(900.0, duration, GA68_HALF_LIFE_S) == pytest.approx(math.exp(lam * (900 + t_ave)))


def test_body_size_normalisations_and_sex_other():
    # 80 kg, 1.80 m; formulas of the SUV computation manual (H in cm, W in kg)
    assert normalising_mass_kg("LBM", 80, 1.8, "M") == pytest.approx(1.10 * 80 - 120 * (80 / 180) ** 2)
    assert normalising_mass_kg("LBMJAMES128", 80, 1.8, "F") == pytest.approx(1.07 * 80 - 148 * (80 / 180) ** 2)
    assert normalising_mass_kg("LBMJANMA", 80, 1.8, "O") == pytest.approx((61.73 + 50.09) / 2, abs=0.01)
    assert normalising_mass_kg("IBW", 80, 1.8, "M") == pytest.approx(48.0 + 1.06 * 28)
    assert body_surface_area_m2(80, 180) == pytest.approx(0.007184 * 180**0.725 * 80**0.425)
    assert body_surface_area_m2(80, 180) == pytest.approx(1.996, abs=1e-3)  # Du Bois tables: ≈ 2.0 m²
    assert by_sex(10.0, 20.0, "o") == 15.0
    with pytest.raises(ValueError, match="sex 'M', 'F' or 'O'"):
        by_sex(1.0, 2.0, "U")
    with pytest.raises(ValueError, match="no normalising mass for SUVType 'BSA'"):
        normalising_mass_kg("BSA", 80, 1.8, "M")
