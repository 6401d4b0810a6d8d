"""Pure SUV arithmetic (no DICOM): radioactive decay, SUVbw factor, lean body mass and SUL.

Units: activity Bq, activity concentration Bq/mL, time s, weight kg, height m. SUVbw = C × weight (g) /
decayed injected activity (Bq) (DOMAIN.md §3); SUL uses the Janmahasatian lean body mass instead of weight.
"""

from __future__ import annotations

import math

GA68_HALF_LIFE_S = 67.71 * 60  # 4062.6 s (DDEP / NNDC)
F18_HALF_LIFE_S = 109.77 * 60  # 6586.2 s
LU177_HALF_LIFE_S = 6.647 * 86400  # 574,300.8 s


def decay_fraction(elapsed_s: float, half_life_s: float) -> float:
    """Fraction of activity left after ``elapsed_s`` seconds: 2^(−t / T½)."""
    if half_life_s <= 0:
        raise ValueError(f"half-life must be positive, got {half_life_s} s")
    return 2.0 ** (-elapsed_s / half_life_s)


def decayed_activity_bq(activity_bq: float, elapsed_s: float, half_life_s: float) -> float:
    """Activity (Bq) left ``elapsed_s`` seconds after it was ``activity_bq``."""
    return activity_bq * decay_fraction(elapsed_s, half_life_s)


def frame_decay_correction(frame_start_s: float, frame_duration_s: float, half_life_s: float) -> float:
    """Factor turning the mean uncorrected activity of a frame into the activity at time 0.

    The frame starts ``frame_start_s`` after time 0 and lasts ``frame_duration_s``; the counts of a
    decaying source averaged over the frame are A0·e^(−λ·t0)·(1 − e^(−λ·T))/(λ·T), so the correction is
    e^(λ·t0)·λ·T / (1 − e^(−λ·T)) (λ = ln 2 / T½; → e^(λ·t0) for an instantaneous frame).
    """
    lam = math.log(2.0) / half_life_s
    over_frame = 1.0 if frame_duration_s <= 0 else lam * frame_duration_s / -math.expm1(-lam * frame_duration_s)
    return math.exp(lam * frame_start_s) * over_frame


def suv_bw_factor(weight_kg: float, injected_activity_bq: float, uptake_s: float, half_life_s: float) -> float:
    """SUVbw per Bq/mL: weight (g) / (injected activity decayed from injection to scan start, Bq)."""
    return weight_kg * 1000.0 / decayed_activity_bq(injected_activity_bq, uptake_s, half_life_s)


def body_mass_index(weight_kg: float, height_m: float) -> float:
    """BMI in kg/m²."""
    return weight_kg / height_m**2


def lean_body_mass_kg(weight_kg: float, height_m: float, sex: str) -> float:
    """Janmahasatian lean body mass (kg): 9270·W / (6680 + 216·BMI) for men, (8780 + 244·BMI) for women."""
    bmi = body_mass_index(weight_kg, height_m)
    sex = sex.upper()[:1]
    if sex == "M":
        return 9270.0 * weight_kg / (6680.0 + 216.0 * bmi)
    if sex == "F":
        return 9270.0 * weight_kg / (8780.0 + 244.0 * bmi)
    raise ValueError(f"lean body mass needs sex 'M' or 'F', got {sex!r}")


def sul_factor(suv_bw_per_bqml: float, weight_kg: float, height_m: float, sex: str) -> float:
    """SUL (SUV normalised by lean body mass) per Bq/mL: SUVbw factor × LBM / weight."""
    return suv_bw_per_bqml * lean_body_mass_kg(weight_kg, height_m, sex) / weight_kg
