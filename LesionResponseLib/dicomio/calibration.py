"""SUV calibration of a PET series from its headers, vendor-neutral (docs/DOMAIN.md §3).

The recipe is the SUV computation manual of Vácha et al. (OncoRay / IBSI, 2026, CC BY 4.0,
https://oncoray.github.io/suv_computation/), which extends the QIBA vendor-neutral pseudo-code (Kinahan et al.,
QIBA FDG-PET/CT profile) and follows DICOM PS3.3 C.8.9.1 (PET Series: Units, SUVType, DecayCorrection),
C.8.9.2 (PET Isotope) and C.8.9.4 (PET Image: FrameReferenceTime, ActualFrameDuration).

Every voxel v = stored × RescaleSlope + RescaleIntercept (per slice) becomes SUVbw = v × ``voxel_to_suv``
× ``slice_factors[file]`` (1 unless DecayCorrection is NONE). W is the body weight (kg; W_g in g), D the injected
activity (Bq), λ = ln 2 / T½, t_adm the injection, t_ref the reference time (:mod:`suv_times`):

=====================  ===========================================  ==============================================
method                 stored values v                              SUVbw
=====================  ===========================================  ==============================================
BQML/START             Bq/mL decay-corrected to t_ref               v · W_g / (D · e^(−λ(t_ref − t_adm)))
BQML/GE-reprocessed    same; t_ref from GE (0009,100D)              same
BQML/ADMIN             Bq/mL decay-corrected to t_adm               v · W_g / D
BQML/NONE-corrected    Bq/mL, not decay-corrected                   v · W_g / D · λT / (1 − e^(−λT)) · e^(λ(t_acq − t_adm))
                                                                    per file (T = ActualFrameDuration)
CNTS/Philips           counts; (7053,1000) SUV Scale Factor f       v · f
CNTS/Philips-activity  counts; (7053,1009) Activity Conc. factor a  v · a is Bq/mL, then the BQML row of the series'
                                                                    DecayCorrection
GML                    SUVbw (SUVType BW or absent)                 v
GML/<SUVType>          SUV normalised by LBM, LBMJAMES128,          v · W / M (M the normalising mass in kg,
                       LBMJANMA or IBW                              :func:`suv.normalising_mass_kg`)
CM2ML/BSA              SUVbsa, cm²/mL (Du Bois BSA)                 v · W_g / (BSA_m² · 10⁴)
=====================  ===========================================  ==============================================

``suv_factor`` is always SUVbw per Bq/mL at the reference time (W_g / decayed D), NaN when the dose or the
times are unknown for an already normalised (GML/CM2ML) series.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import pydicom

from LesionResponseLib.dicomio import suv_times
from LesionResponseLib.dicomio.errors import SuvTagError, fail, tag
from LesionResponseLib.dicomio.index import Instance, Series
from LesionResponseLib.dicomio.nuclides import NUCLIDES, meaning_contradicts, nuclide_for_code
from LesionResponseLib.dicomio.suv import (
    MASS_SUV_TYPES,
    body_surface_area_m2,
    by_sex,
    decayed_activity_bq,
    frame_decay_correction,
    lean_body_mass_kg,
    normalising_mass_kg,
)
from LesionResponseLib.dicomio.suv_times import Notes, acquisition_datetime, positive_number

#: Injected activities outside 1 MBq–20 GBq are almost surely in the wrong unit.
PLAUSIBLE_DOSE_BQ = (1e6, 2e10)
#: The same range in MBq (the unit NM objects use, PS3.3 C.8.4.10): a value in it is far below any Bq dose.
PLAUSIBLE_DOSE_MBQ = (PLAUSIBLE_DOSE_BQ[0] / 1e6, PLAUSIBLE_DOSE_BQ[1] / 1e6)
PLAUSIBLE_WEIGHT_KG = (2.0, 400.0)
#: A PatientWeight above 1000 cannot be kg (the manual's rule): it is read as grams.
GRAMS_ABOVE = 1000.0
PLAUSIBLE_HEIGHT_M = (0.4, 2.5)
#: Philips private factors from weight/dose may differ from the header recipe by rounding; beyond 2 % warn.
PHILIPS_AGREEMENT = 0.02
PHILIPS_CREATOR = "Philips PET Private Group"
PHILIPS_SUV_SCALE, PHILIPS_ACTIVITY_SCALE = 0x00, 0x09  # elements (7053,xx00) and (7053,xx09)
SUPPORTED_UNITS = ("BQML", "CNTS", "GML", "CM2ML")
#: Tags that must be identical in every file of one PET series (else the SUV would depend on the file read).
SERIES_CONSTANT = ("Units", "SUVType", "DecayCorrection", "PatientWeight", "PatientSize", "PatientSex",
                   "SeriesDate", "SeriesTime")
RADIOPHARM_CONSTANT = ("RadionuclideTotalDose", "RadionuclideHalfLife", "RadiopharmaceuticalStartTime",
                       "RadiopharmaceuticalStartDateTime")

STORED_VALUES = {"START": "Bq/mL decay-corrected to the scan start", "ADMIN": "Bq/mL decay-corrected to injection",
                 "NONE": "Bq/mL not decay-corrected", "CNTS": "Philips counts (private scale factors)",
                 "GML": "SUVbw (g/mL)", "CM2ML": "SUVbsa (cm²/mL)"}


@dataclass
class SuvResult:
    """How one PET series becomes SUV (see the module docstring for ``method`` and ``voxel_to_suv``)."""

    suv_factor: float  # SUVbw per Bq/mL at scan start (nan when not computable, e.g. GML without dose)
    voxel_to_suv: float  # rescaled voxel value → SUVbw
    method: str
    stored_values: str  # what the rescaled voxel values mean
    scan_datetime: dt.datetime
    scan_start_source: str  # suv_times.SOURCE_*: where the reference time came from
    injection_datetime: dt.datetime | None = None
    injected_activity_bq: float | None = None
    decayed_activity_bq: float | None = None  # injected activity decayed to the scan start
    half_life_s: float | None = None
    weight_kg: float | None = None
    height_m: float | None = None
    sex: str | None = None
    sul_factor: float | None = None  # SUL per Bq/mL (Janmahasatian), None when sex or height unknown
    slice_factors: dict[str, float] = field(default_factory=dict)  # Instance.key → extra factor (DecayCorrection NONE)
    warnings: list[str] = field(default_factory=list)
    normalisation: str = ""  # how the stored values became SUVbw, with the formula's numbers
    assumptions: list[str] = field(default_factory=list)  # every rule applied to imperfect headers

    @property
    def uptake_time_s(self) -> float | None:
        if self.injection_datetime is None:
            return None
        return (self.scan_datetime - self.injection_datetime).total_seconds()


# ---------------------------------------------------------------- header checks


def _instances(pet_headers: Series | Sequence[Instance] | Sequence[pydicom.Dataset]) -> list[Instance]:
    if isinstance(pet_headers, Series):
        return list(pet_headers.instances)
    out = []
    for item in pet_headers:
        out.append(item if isinstance(item, Instance) else Instance(str(getattr(item, "filename", "") or "?"), item))
    if not out:
        raise ValueError("compute_suv_factor needs at least one PET header")
    return out


def _radiopharm(inst: Instance):
    seq = inst.get("RadiopharmaceuticalInformationSequence")
    return seq[0] if seq else None


def _upper(inst: Instance, keyword: str) -> str:
    return str(inst.get(keyword, "") or "").strip().upper()


def check_consistent(instances: list[Instance]) -> None:
    """Raise :class:`SuvTagError` when a tag that SUV depends on differs between files of the series."""
    first = instances[0]
    first_item = _radiopharm(first)
    for inst in instances[1:]:
        for key in SERIES_CONSTANT:
            a, b = first.get(key), inst.get(key)
            if str(a or "") != str(b or ""):
                raise _contradiction(first, inst, key, a, b)
        item = _radiopharm(inst)
        for key in RADIOPHARM_CONSTANT:
            a = first_item.get(key) if first_item else None
            b = item.get(key) if item else None
            if str(a or "") != str(b or ""):
                raise _contradiction(first, inst, key, a, b)


def _contradiction(first: Instance, inst: Instance, key: str, a, b) -> SuvTagError:
    return fail(SuvTagError, inst.path, f"{tag(key)} is {str(b)!r} here but {str(a)!r} in {first.path} "
                "(same PET series): the SUV would depend on which file is read",
                "Re-export the series from the scanner or PACS; do not mix files of different exports.")


def _units(first: Instance) -> tuple[str, str]:
    """Units and SUVType, refused when not convertible to SUVbw or contradictory (PS3.3 C.8.9.1.1.3/…1.4)."""
    units, suv_type = _upper(first, "Units"), _upper(first, "SUVType")
    if units not in SUPPORTED_UNITS:
        raise fail(SuvTagError, first.path, f"PET {tag('Units')} is {units or 'missing'!r}; SUV needs BQML, CNTS "
                   "(Philips), GML or CM2ML (CPS, PROPCNTS, PROPCPS, 1CM… have no defined conversion to Bq/mL)",
                   "Choose a quantitative PET series (attenuation- and decay-corrected, Bq/mL).")
    allowed = {"GML": ("", "BW", *MASS_SUV_TYPES), "CM2ML": ("", "BSA")}.get(units)
    if allowed is not None and suv_type not in allowed:
        raise fail(SuvTagError, first.path, f"{tag('SUVType')} {suv_type!r} contradicts {tag('Units')} {units} "
                   f"(expected {', '.join(t or 'absent' for t in allowed)})",
                   "Fix Units or SUVType, or export the series in BQML.")
    return units, suv_type


def _half_life(inst: Instance, item, notes: Notes) -> float:
    """RadionuclideHalfLife (s), else the half-life of the RadionuclideCodeSequence nuclide (assumption)."""
    value = positive_number(item.get("RadionuclideHalfLife"))
    if value is not None:
        return value
    codes = item.get("RadionuclideCodeSequence") or []
    code = codes[0] if codes else None
    nuclide = nuclide_for_code(code.get("CodeValue", ""), code.get("CodingSchemeDesignator", "")) if code else None
    known = ", ".join(n.name for n in NUCLIDES)
    if nuclide is None:
        raise fail(SuvTagError, inst.path, f"missing {tag('RadionuclideHalfLife')} and no known "
                   f"{tag('RadionuclideCodeSequence')} code (known: {known}; PS3.16 CID 4020)",
                   "Add the half-life in seconds (Ga-68: 4062.6, F-18: 6586.2) to the "
                   "RadiopharmaceuticalInformationSequence.")
    meaning = str(code.get("CodeMeaning", "") or "")
    if meaning_contradicts(nuclide, meaning):
        raise fail(SuvTagError, inst.path, f"missing {tag('RadionuclideHalfLife')}, and "
                   f"{tag('RadionuclideCodeSequence')} code {code.get('CodeValue')} ({nuclide.name}) contradicts "
                   f"its CodeMeaning {meaning!r}: the nuclide is ambiguous",
                   "Add the half-life in seconds to the RadiopharmaceuticalInformationSequence.")
    notes.assumptions.append(f"{tag('RadionuclideHalfLife')} missing: used {nuclide.half_life_s:.1f} s of "
                             f"{nuclide.name} from RadionuclideCodeSequence code {code.get('CodeValue')} "
                             f"({meaning or 'no meaning'})")
    return nuclide.half_life_s


def _weight(inst: Instance, override_kg: float | None, notes: Notes) -> float:
    """Body weight (kg): ``override_kg``, else PatientWeight (grams above 1000 converted), plausibility-checked."""
    header = positive_number(inst.get("PatientWeight")) or 0.0
    if override_kg is not None:
        if header > 0 and abs(header - override_kg) > 0.05:
            notes.warnings.append(f"{tag('PatientWeight')} {header:g} in the headers replaced by {override_kg} kg")
        notes.assumptions.append(f"weight {override_kg:g} kg given by the user (--weight-kg)")
        weight = float(override_kg)
    elif header <= 0:
        raise fail(SuvTagError, inst.path, f"missing or zero {tag('PatientWeight')}: SUVbw needs the body weight",
                   "Pass weight_kg= (CLI: --weight-kg KG) or add it, e.g. `dcmodify -i \"(0010,1030)=72\" FILES`.")
    elif header > GRAMS_ABOVE:
        weight = header / 1000.0
        notes.assumptions.append(f"{tag('PatientWeight')} {header:g} > {GRAMS_ABOVE:g} cannot be kg: read as "
                                 f"grams, {weight:g} kg")
    else:
        weight = header
    if not PLAUSIBLE_WEIGHT_KG[0] <= weight <= PLAUSIBLE_WEIGHT_KG[1]:
        raise fail(SuvTagError, inst.path, f"{tag('PatientWeight')} {weight:g} kg is implausible (expected "
                   f"{PLAUSIBLE_WEIGHT_KG[0]:g}–{PLAUSIBLE_WEIGHT_KG[1]:g} kg)", "Correct the weight (kg), or pass "
                   "--weight-kg KG.")
    return weight


def _dose(inst: Instance, item, notes: Notes) -> float:
    """RadionuclideTotalDose in Bq; a value in the plausible MBq range is converted (assumption)."""
    dose = positive_number(item.get("RadionuclideTotalDose"))
    if dose is None:
        raise fail(SuvTagError, inst.path, f"missing or zero {tag('RadionuclideTotalDose')}: injected activity "
                   "unknown", "Add the injected activity in Bq to the RadiopharmaceuticalInformationSequence.")
    if PLAUSIBLE_DOSE_BQ[0] <= dose <= PLAUSIBLE_DOSE_BQ[1]:
        return dose
    if PLAUSIBLE_DOSE_MBQ[0] <= dose <= PLAUSIBLE_DOSE_MBQ[1]:
        notes.assumptions.append(f"{tag('RadionuclideTotalDose')} {dose:g} is far below any plausible dose in Bq: "
                                 f"read as MBq, {dose * 1e6:.6g} Bq")
        return dose * 1e6
    raise fail(SuvTagError, inst.path, f"{tag('RadionuclideTotalDose')} {dose:g} is implausible both in Bq (expected "
               "1 MBq–20 GBq) and in MBq (1–20,000)", "Store the injected activity in Bq.")


def _body(inst: Instance, notes: Notes) -> tuple[float | None, str | None]:
    height = positive_number(inst.get("PatientSize"))
    sex = _upper(inst, "PatientSex")[:1] or None
    if height is not None and not PLAUSIBLE_HEIGHT_M[0] <= height <= PLAUSIBLE_HEIGHT_M[1]:
        notes.warnings.append(f"{tag('PatientSize')} {height} is not a height in m: SUL not computed")
        height = None
    return height, sex if sex in ("M", "F", "O") else None


def _note_intercepts(instances: list[Instance], notes: Notes) -> None:
    intercepts = sorted({float(i.get("RescaleIntercept", 0) or 0) for i in instances})
    nonzero = [b for b in intercepts if b != 0]
    if nonzero:
        notes.assumptions.append(f"{tag('RescaleIntercept')} nonzero ({min(nonzero):g}…{max(nonzero):g}; PET should "
                                 "have 0): applied per slice, value = stored × RescaleSlope + RescaleIntercept")


# ---------------------------------------------------------------- the recipe


def compute_suv_factor(pet_headers: Series | Sequence[Instance] | Sequence[pydicom.Dataset], *,
                       weight_kg: float | None = None) -> SuvResult:
    """How the PET series of ``pet_headers`` becomes SUVbw (module docstring), or :class:`SuvTagError`.

    Args:
        pet_headers: every file's header of one PET series (an index ``Series``, ``Instance``s or datasets).
        weight_kg: body weight to use instead of PatientWeight (kg); a differing header value is warned about.
    """
    instances = _instances(pet_headers)
    first = instances[0]
    check_consistent(instances)
    units, suv_type = _units(first)
    notes = Notes()
    half_life, half_life_error = _optional(lambda: _half_life(first, _radiopharm_item(first), notes))
    start, start_source = suv_times.reference_time(instances, half_life, notes)
    height, sex = _body(first, notes)
    _note_intercepts(instances, notes)
    if units in ("GML", "CM2ML"):
        result = _normalised(instances, (units, suv_type), (start, start_source), half_life=(half_life,
                                                                                             half_life_error),
                             weight_kg=weight_kg, notes=notes)
    else:
        if half_life_error is not None:
            raise half_life_error
        result = _from_dose(instances, start, start_source, half_life=half_life, weight_kg=weight_kg,
                            notes=notes)
        if units == "BQML":
            _apply_decay_convention(result, instances, notes)
        else:
            _philips(result, instances, notes)
    result.height_m, result.sex = height, sex
    result.warnings, result.assumptions = notes.warnings, notes.assumptions
    _add_sul(result)
    return result


def _optional(compute):
    """(value, None), or (None, the SuvTagError) when the value cannot be had from the headers."""
    try:
        return compute(), None
    except SuvTagError as err:
        return None, err


def _radiopharm_item(first: Instance):
    item = _radiopharm(first)
    if item is None:
        raise fail(SuvTagError, first.path, f"missing {tag('RadiopharmaceuticalInformationSequence')}: no injected "
                   "activity or injection time", "SUV needs the radiopharmaceutical module; re-export the PET "
                   "from the scanner or PACS with it.")
    return item


def _from_dose(instances: list[Instance], start: dt.datetime, start_source: str, *, half_life: float,
               weight_kg: float | None, notes: Notes) -> SuvResult:
    """SUVbw per Bq/mL at the reference time: W_g / (D · e^(−λ(t_ref − t_adm)))."""
    first = instances[0]
    item = _radiopharm_item(first)
    dose = _dose(first, item, notes)
    injection = suv_times.injection_time(first, item, start, notes)
    weight = _weight(first, weight_kg, notes)
    decayed = decayed_activity_bq(dose, (start - injection).total_seconds(), half_life)
    factor = weight * 1000.0 / decayed
    method = "BQML/GE-reprocessed" if start_source == suv_times.SOURCE_GE else "BQML/START"
    normalisation = (f"SUVbw = Bq/mL × {weight:g} kg × 1000 / ({dose / 1e6:.6g} MBq decayed "
                     f"{(start - injection).total_seconds() / 60:.1f} min to the reference time)")
    return SuvResult(factor, factor, method, STORED_VALUES["START"], start, start_source, injection, dose, decayed,
                     half_life, weight, normalisation=normalisation)


def _apply_decay_convention(result: SuvResult, instances: list[Instance], notes: Notes) -> None:
    """DecayCorrection START (nothing to do), ADMIN (undecayed dose) or NONE (per-file correction to t_adm)."""
    first = instances[0]
    decay = _upper(first, "DecayCorrection")
    if decay == "START":
        return
    if decay == "ADMIN":
        result.voxel_to_suv = result.weight_kg * 1000.0 / result.injected_activity_bq
        result.method, result.stored_values = "BQML/ADMIN", STORED_VALUES["ADMIN"]
        result.normalisation = (f"SUVbw = Bq/mL (decay-corrected to the injection) × {result.weight_kg:g} kg × 1000 "
                                f"/ {result.injected_activity_bq / 1e6:.6g} MBq")
        return
    if decay != "NONE":
        raise fail(SuvTagError, first.path, f"{tag('DecayCorrection')} is {decay or 'missing'!r}; expected START, "
                   "ADMIN or NONE", "Add the decay-correction convention of the series.")
    corrected = str(first.get("CorrectedImage", "") or "").upper()
    if "DECY" in corrected:
        raise fail(SuvTagError, first.path, f"{tag('DecayCorrection')} is NONE but {tag('CorrectedImage')} lists "
                   "DECY: whether the image is decay-corrected is contradictory (correcting it again would raise "
                   "the SUV by e^(λ·uptake))", "Fix DecayCorrection or CorrectedImage (dcmodify) to what the "
                   "scanner did.")
    for inst in instances:
        result.slice_factors[inst.key] = _frame_to_injection(inst, result)
    result.voxel_to_suv = result.weight_kg * 1000.0 / result.injected_activity_bq
    result.method, result.stored_values = "BQML/NONE-corrected", STORED_VALUES["NONE"]
    result.normalisation = (f"SUVbw = Bq/mL × {result.weight_kg:g} kg × 1000 / {result.injected_activity_bq / 1e6:.6g}"
                            " MBq × λT / (1 − e^(−λT)) × e^(λ(t_acq − t_adm)) per file")
    notes.assumptions.append("DecayCorrection NONE: each file decay-corrected from its own AcquisitionTime to the "
                             "injection, averaged over its ActualFrameDuration (manual's DC = NONE formula)")


def _frame_to_injection(inst: Instance, result: SuvResult) -> float:
    """λT / (1 − e^(−λT)) · e^(λ(t_acq − t_adm)) of one file (:func:`suv.frame_decay_correction`)."""
    acquired = acquisition_datetime(inst)
    duration_ms = positive_number(inst.get("ActualFrameDuration"))
    if acquired is None or duration_ms is None:
        missing = tag("AcquisitionTime") if acquired is None else tag("ActualFrameDuration")
        raise fail(SuvTagError, inst.path, f"DecayCorrection NONE needs each file's acquisition start and frame "
                   f"duration; {missing} is missing or zero", "Export the series with its frame timing tags.")
    since_injection_s = (acquired - result.injection_datetime).total_seconds()
    return frame_decay_correction(since_injection_s, duration_ms / 1000.0, result.half_life_s)


def _philips_factor(first: Instance, element: int, name: str, notes: Notes) -> float | None:
    """A Philips private scale factor (7053,xxEE) > 0: in the block of its creator, or in block 10 when the creator
    (7053,0010) was stripped (anonymisers do) and no other creator claims that block (assumption)."""
    value = positive_number(suv_times.private_value(first, 0x7053, PHILIPS_CREATOR, element))
    if value is not None:
        return value
    ds = first.header
    orphan = 0x70531000 | element
    if 0x70530010 in ds or orphan not in ds:
        return None
    value = positive_number(ds[orphan].value)
    if value is not None:
        notes.assumptions.append(f"Philips {name} (7053,{0x1000 | element:04X}) found without its private creator "
                                 f"(7053,0010) '{PHILIPS_CREATOR}' (removed by an anonymiser?); no other creator "
                                 "claims the block, so it is used")
    return value


def _philips(result: SuvResult, instances: list[Instance], notes: Notes) -> None:
    """Units CNTS: SUV Scale Factor (7053,1000), else Activity Concentration Scale Factor (7053,1009) → Bq/mL."""
    first = instances[0]
    suv_scale = _philips_factor(first, PHILIPS_SUV_SCALE, "SUV Scale Factor", notes)
    activity_scale = _philips_factor(first, PHILIPS_ACTIVITY_SCALE, "Activity Concentration Scale Factor", notes)
    if suv_scale is None and activity_scale is None:
        raise fail(SuvTagError, first.path, f"PET {tag('Units')} CNTS without the Philips private SUV Scale Factor "
                   f"(7053,1000) nor the Activity Concentration Scale Factor (7053,1009) (creator "
                   f"'{PHILIPS_CREATOR}'): the counts cannot be converted to SUV",
                   "Export the series with Philips private tags, or in BQML.")
    if suv_scale is None:
        _apply_decay_convention(result, instances, notes)
        result.voxel_to_suv *= activity_scale
        result.method, result.stored_values = "CNTS/Philips-activity", STORED_VALUES["CNTS"]
        result.normalisation = (f"Bq/mL = counts × Activity Concentration Scale Factor (7053,1009) "
                                f"{activity_scale:g}; then {result.normalisation}")
        return
    result.voxel_to_suv = suv_scale
    result.method, result.stored_values = "CNTS/Philips", STORED_VALUES["CNTS"]
    result.normalisation = f"SUVbw = counts × Philips SUV Scale Factor (7053,1000) {suv_scale:g}"
    if activity_scale is None:
        notes.warnings.append("Philips Activity Concentration Scale Factor (7053,1009) missing: suv_factor from "
                              "weight and decayed dose")
        return
    from_private = suv_scale / activity_scale
    deviation = from_private / result.suv_factor - 1
    if abs(deviation) > PHILIPS_AGREEMENT:
        notes.warnings.append(f"Philips SUV factor from private tags ({from_private:.6g} per Bq/mL) differs by "
                              f"{100 * deviation:+.1f} % from weight / decayed dose; the private one is used")
    result.suv_factor = from_private


def _normalised(instances: list[Instance], unit_type: tuple[str, str], reference: tuple[dt.datetime, str],
                *, half_life: tuple[float | None, SuvTagError | None], weight_kg: float | None,
                notes: Notes) -> SuvResult:
    """Units GML / CM2ML: the stored SUV is turned back into SUVbw (module docstring table)."""
    first = instances[0]
    (units, suv_type), (start, start_source) = unit_type, reference
    try:
        if half_life[1] is not None:
            raise half_life[1]
        result = _from_dose(instances, start, start_source, half_life=half_life[0], weight_kg=weight_kg,
                            notes=notes)
    except SuvTagError as err:
        notes.warnings.append(f"{units} series: voxels are normalised SUV already; suv_factor per Bq/mL unknown "
                              f"({err})")
        weight = None if suv_type in ("", "BW") else _weight(first, weight_kg, notes)
        result = SuvResult(float("nan"), 1.0, units, STORED_VALUES[units], start, start_source, weight_kg=weight)
    result.stored_values = STORED_VALUES[units]
    result.method, result.voxel_to_suv, result.normalisation = _back_to_bw(first, units, suv_type,
                                                                           result.weight_kg, notes)
    return result


def _back_to_bw(first: Instance, units: str, suv_type: str, weight: float | None,
                notes: Notes) -> tuple[str, float, str]:
    """(method, voxel_to_suv, normalisation) of a GML or CM2ML series: SUVbw = SUV_type × W / M."""
    if units == "GML" and suv_type in ("", "BW"):
        if not suv_type:
            notes.assumptions.append(f"{tag('SUVType')} absent: GML values taken as SUVbw (the manual's default)")
        return "GML", 1.0, "stored values are SUVbw (Units GML, SUVType BW)"
    height_m = _required_height(first, units, suv_type)
    if units == "CM2ML":
        bsa = body_surface_area_m2(weight, 100.0 * height_m)
        return ("CM2ML/BSA", weight / (10.0 * bsa), f"SUVbw = SUVbsa × {weight:g} kg × 1000 / ({bsa:.4f} m² × 10⁴) "
                f"(Du Bois BSA, height {height_m:g} m)")
    sex = _required_sex(first, suv_type, notes)
    mass = normalising_mass_kg(suv_type, weight, height_m, sex)
    if mass <= 0:
        raise fail(SuvTagError, first.path, f"{tag('SUVType')} {suv_type} gives a normalising mass of {mass:.1f} kg "
                   f"for {weight:g} kg and {height_m:g} m", "Check PatientWeight and PatientSize.")
    return (f"GML/{suv_type}", weight / mass, f"SUVbw = SUV{suv_type.lower()} × {weight:g} kg / {mass:.2f} kg "
            f"({suv_type}, height {height_m:g} m, sex {sex})")


def _required_height(first: Instance, units: str, suv_type: str) -> float:
    height = positive_number(first.get("PatientSize"))
    if height is None or not PLAUSIBLE_HEIGHT_M[0] <= height <= PLAUSIBLE_HEIGHT_M[1]:
        raise fail(SuvTagError, first.path, f"{tag('PatientSize')} is {first.get('PatientSize')!r} (missing or not "
                   f"a height in m): Units {units} SUVType {suv_type or 'BSA'} needs the patient's height to give "
                   "SUVbw", "Add the height in metres, e.g. `dcmodify -i \"(0010,1020)=1.75\" FILES`.")
    return height


def _required_sex(first: Instance, suv_type: str, notes: Notes) -> str:
    sex = _upper(first, "PatientSex")[:1]
    if sex not in ("M", "F", "O"):
        raise fail(SuvTagError, first.path, f"{tag('PatientSex')} is {first.get('PatientSex')!r} (missing or not "
                   f"M/F/O): SUVType {suv_type} has sex-specific formulas", "Add the patient's sex, e.g. "
                   "`dcmodify -i \"(0010,0040)=F\" FILES`.")
    if sex == "O":
        notes.assumptions.append(f"PatientSex O: {suv_type} is the mean of its male and female formulas (the "
                                 "manual's choice; no published formula)")
    return sex


def _add_sul(result: SuvResult) -> None:
    """SUL factor (Janmahasatian LBM, PERCIST); sex O uses the mean of the male and female LBM."""
    if result.height_m and result.sex and result.weight_kg and result.suv_factor == result.suv_factor:
        lbm = by_sex(*(lean_body_mass_kg(result.weight_kg, result.height_m, s) for s in "MF"), result.sex)
        result.sul_factor = result.suv_factor * lbm / result.weight_kg
        if result.sex == "O":
            result.assumptions.append("SUL for PatientSex O: mean of the male and female Janmahasatian LBM")
        return
    missing = [name for name, ok in ((tag("PatientSize"), result.height_m),
                                     (tag("PatientSex") + " M/F/O", result.sex)) if not ok]
    if missing:
        result.warnings.append(f"SUL (lean body mass) not computed: {' and '.join(missing)} missing")
