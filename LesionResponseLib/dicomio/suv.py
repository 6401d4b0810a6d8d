"""Pure SUV arithmetic (no DICOM): radioactive decay, SUVbw factor, body-size normalisations and SUL.

Units: activity Bq, activity concentration Bq/mL, time s, weight kg, height m (cm where a formula says so).
SUVbw = C × weight (g) / decayed injected activity (Bq) (docs/DOMAIN.md §3). The body-size formulas are those
of DICOM PS3.3 SUV Type (0054,1006) as written out in the SUV computation manual of Vácha et al. (OncoRay,
2026, CC BY 4.0, https://oncoray.github.io/suv_computation/): LBM (Morgan), LBMJAMES128 (James 1976),
LBMJANMA (Janmahasatian 2005), IBW, and BSA (Du Bois 1916). PatientSex ``O`` (other) has no published
formula; the manual's choice, the mean of the male and female values, is used (:func:`by_sex`).
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


def average_count_rate_time_s(frame_duration_s: float, half_life_s: float) -> float:
    """Seconds after a frame's start at which a decaying source's activity equals its mean over the frame.

    T_ave = (1/λ)·ln(λT / (1 − e^(−λT))), λ = ln 2 / T½, T the frame duration (DICOM PS3.3 C.8.9.4.1.5,
    Frame Reference Time, example 2). Slightly before T/2; 0 for an instantaneous frame. Note
    ``frame_decay_correction(t0, T) == exp(λ·(t0 + T_ave))``.
    """
    if frame_duration_s <= 0:
        return 0.0
    lam = math.log(2.0) / half_life_s
    return math.log(lam * frame_duration_s / -math.expm1(-lam * frame_duration_s)) / lam


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


def by_sex(male: float, female: float, sex: str) -> float:
    """The male or female value of a sex-specific formula; ``O`` (other): their mean (Vácha et al. manual)."""
    sex = sex.upper()[:1]
    if sex not in ("M", "F", "O"):
        raise ValueError(f"sex-specific formula needs sex 'M', 'F' or 'O', got {sex!r}")
    return {"M": male, "F": female, "O": (male + female) / 2.0}[sex]


def lbm_morgan_kg(weight_kg: float, height_cm: float, sex: str) -> float:
    """SUVType LBM (Morgan): 1.10·W − 120·(W/H)² for men, 1.07·W − 148·(W/H)² for women (W kg, H cm)."""
    ratio = (weight_kg / height_cm) ** 2
    return by_sex(1.10 * weight_kg - 120.0 * ratio, 1.07 * weight_kg - 148.0 * ratio, sex)


def lbm_james128_kg(weight_kg: float, height_cm: float, sex: str) -> float:
    """SUVType LBMJAMES128 (James 1976): 1.10·W − 128·(W/H)² for men, 1.07·W − 148·(W/H)² for women (kg, cm)."""
    ratio = (weight_kg / height_cm) ** 2
    return by_sex(1.10 * weight_kg - 128.0 * ratio, 1.07 * weight_kg - 148.0 * ratio, sex)


def lbm_janmahasatian_kg(weight_kg: float, height_m: float, sex: str) -> float:
    """SUVType LBMJANMA: :func:`lean_body_mass_kg`, and for sex ``O`` the mean of the male and female values."""
    return by_sex(lean_body_mass_kg(weight_kg, height_m, "M"), lean_body_mass_kg(weight_kg, height_m, "F"), sex)


def ideal_body_weight_kg(height_cm: float, sex: str) -> float:
    """SUVType IBW: 48.0 + 1.06·(H − 152) kg for men, 45.5 + 0.91·(H − 152) kg for women (H cm).

    The manual's formula (after Sugawara et al., Radiology 1999;213:521–525); the manual's reference object
    DRO_2_2 is built with it (the Devine formula would put it 2–3 % off).
    """
    return by_sex(48.0 + 1.06 * (height_cm - 152.0), 45.5 + 0.91 * (height_cm - 152.0), sex)


def body_surface_area_m2(weight_kg: float, height_cm: float) -> float:
    """Du Bois body-surface area (m²): 0.007184 · H^0.725 · W^0.425 (H cm, W kg); Units CM2ML / SUVType BSA."""
    return 0.007184 * height_cm**0.725 * weight_kg**0.425


#: SUVType (0054,1006) values of a GML series normalised by a mass (kg) other than the body weight.
MASS_SUV_TYPES = ("LBM", "LBMJAMES128", "LBMJANMA", "IBW")


def normalising_mass_kg(suv_type: str, weight_kg: float, height_m: float, sex: str) -> float:
    """The mass (kg) an SUV of ``suv_type`` (LBM, LBMJAMES128, LBMJANMA or IBW) is normalised by.

    SUVbw = SUV_type × weight / this mass (the manual's back-computation, both masses in kg).
    """
    height_cm = 100.0 * height_m
    if suv_type == "LBM":
        return lbm_morgan_kg(weight_kg, height_cm, sex)
    if suv_type == "LBMJAMES128":
        return lbm_james128_kg(weight_kg, height_cm, sex)
    if suv_type == "LBMJANMA":
        return lbm_janmahasatian_kg(weight_kg, height_m, sex)
    if suv_type == "IBW":
        return ideal_body_weight_kg(height_cm, sex)
    raise ValueError(f"no normalising mass for SUVType {suv_type!r}; expected one of {', '.join(MASS_SUV_TYPES)}")
