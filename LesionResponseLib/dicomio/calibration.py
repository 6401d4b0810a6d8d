"""SUV calibration of a PET series from its headers, vendor-neutral (DOMAIN.md §3; QIBA / Kinahan recipe).

``suv_factor`` is SUVbw per Bq/mL at scan start: weight (g) / injected activity decayed to the scan start
(Bq), whatever the vendor stores. ``voxel_to_suv`` multiplies the *rescaled* voxel values of the series
(pixel × RescaleSlope + RescaleIntercept, per slice) to give SUVbw:

============================  =========================================  =====================================
method                        stored (rescaled) values                   voxel_to_suv
============================  =========================================  =====================================
BQML/START                    Bq/mL decay-corrected to the scan start    suv_factor
BQML/GE-reprocessed           same; scan start from GE (0009,100D)       suv_factor
BQML/ADMIN                    Bq/mL decay-corrected to injection         weight / undecayed dose
BQML/NONE-corrected           Bq/mL not decay-corrected (opt-in)         suv_factor × per-slice frame correction
CNTS/Philips                  counts; (7053,1000) × value = SUVbw        Philips SUV Scale Factor
GML                           SUVbw already                              1
============================  =========================================  =====================================
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import pydicom

from LesionResponseLib.dicomio.errors import SuvTagError, fail, tag
from LesionResponseLib.dicomio.index import Instance, Series
from LesionResponseLib.dicomio.suv import (
    F18_HALF_LIFE_S,
    GA68_HALF_LIFE_S,
    decayed_activity_bq,
    frame_decay_correction,
    lean_body_mass_kg,
)

#: Half-lives (s) by RadionuclideCodeSequence code value (SNOMED CT and legacy SNOMED RT), used only when
#: RadionuclideHalfLife is missing: the code identifies the nuclide unambiguously.
KNOWN_HALF_LIVES_S = {"35337001": GA68_HALF_LIFE_S, "C-131A3": GA68_HALF_LIFE_S,
                      "77004003": F18_HALF_LIFE_S, "C-111A1": F18_HALF_LIFE_S}
#: Injected activities outside 1 MBq–20 GBq are almost surely in the wrong unit (MBq, mCi).
PLAUSIBLE_DOSE_BQ = (1e6, 2e10)
#: Uptake beyond 6 h (≈ 5.3 Ga-68 half-lives, < 3 % activity left) is almost surely a date/time error.
MAX_UPTAKE_S = 6 * 3600.0
PLAUSIBLE_WEIGHT_KG = (2.0, 400.0)
PLAUSIBLE_HEIGHT_M = (0.4, 2.5)
#: Philips private factors from weight/dose may differ from the header recipe by rounding; beyond 2 % warn.
PHILIPS_AGREEMENT = 0.02
PHILIPS_CREATOR = "Philips PET Private Group"
GE_CREATOR = "GEMS_PETD_01"
#: Tags that must be identical in every file of one PET series (else the SUV would depend on the file read).
SERIES_CONSTANT = ("Units", "DecayCorrection", "PatientWeight", "PatientSize", "PatientSex", "SeriesDate",
                   "SeriesTime")
RADIOPHARM_CONSTANT = ("RadionuclideTotalDose", "RadionuclideHalfLife", "RadiopharmaceuticalStartTime",
                       "RadiopharmaceuticalStartDateTime")

STORED_VALUES = {"START": "Bq/mL decay-corrected to the scan start", "ADMIN": "Bq/mL decay-corrected to injection",
                 "NONE": "Bq/mL not decay-corrected", "CNTS": "Philips counts (private scale factors)",
                 "GML": "SUVbw (g/mL)"}


@dataclass
class SuvResult:
    """How one PET series becomes SUV (see the module docstring for ``method`` and ``voxel_to_suv``)."""

    suv_factor: float  # SUVbw per Bq/mL at scan start (nan when not computable, e.g. GML without dose)
    voxel_to_suv: float  # rescaled voxel value → SUVbw
    method: str
    stored_values: str  # what the rescaled voxel values mean
    scan_datetime: dt.datetime
    scan_start_source: str  # "SeriesDate/SeriesTime", "GE private (0009,100D)", "earliest AcquisitionTime"
    injection_datetime: dt.datetime | None = None
    injected_activity_bq: float | None = None
    decayed_activity_bq: float | None = None  # injected activity decayed to the scan start
    half_life_s: float | None = None
    weight_kg: float | None = None
    height_m: float | None = None
    sex: str | None = None
    sul_factor: float | None = None  # SUL per Bq/mL (Janmahasatian), None when sex or height unknown
    slice_factors: dict[str, float] = field(default_factory=dict)  # file → extra factor (DecayCorrection NONE)
    warnings: list[str] = field(default_factory=list)

    @property
    def uptake_time_s(self) -> float | None:
        if self.injection_datetime is None:
            return None
        return (self.scan_datetime - self.injection_datetime).total_seconds()


# ---------------------------------------------------------------- DICOM date/time parsing


def parse_da_tm(date: str | None, time: str | None) -> dt.datetime | None:
    """A datetime from DICOM DA and TM strings (TM may be HH, HHMM, HHMMSS, HHMMSS.ffffff, or with colons)."""
    if not date or not time:
        return None
    date, time = str(date).strip().replace(".", "").replace("-", ""), str(time).strip().replace(":", "")
    try:
        base = dt.datetime.strptime(date[:8], "%Y%m%d")
        hh, mm = int(time[0:2]), int(time[2:4]) if len(time) >= 4 else 0
        ss = float(time[4:]) if len(time) > 4 else 0.0
    except ValueError:
        return None
    return base + dt.timedelta(hours=hh, minutes=mm, seconds=ss)


def parse_dt(value: str | None) -> dt.datetime | None:
    """A naive datetime from a DICOM DT string (the UTC offset is dropped: all times of a study share it)."""
    if not value:
        return None
    text = str(value).strip()
    for sign in ("+", "-"):
        if sign in text[8:]:
            text = text[: 8 + text[8:].index(sign)]
    return parse_da_tm(text[:8], text[8:] or "000000")


def acquisition_datetime(inst: Instance) -> dt.datetime | None:
    """AcquisitionDateTime, else AcquisitionDate + AcquisitionTime, of one file."""
    return parse_dt(inst.get("AcquisitionDateTime")) or parse_da_tm(inst.get("AcquisitionDate"),
                                                                    inst.get("AcquisitionTime"))


def private_value(inst: Instance, group: int, creator: str, element: int):
    """A private element's value found by its creator string (any block), or None."""
    ds = inst.header
    for block in range(0x10, 0x100):
        creator_tag = (group << 16) | block
        if creator_tag not in ds:
            continue
        if str(ds[creator_tag].value).strip() == creator:
            full = (group << 16) | (block << 8) | element
            return ds[full].value if full in ds else None
    return None


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


def scan_start(instances: list[Instance]) -> tuple[dt.datetime, str]:
    """Scan start for decay correction, and where it came from (DOMAIN.md §3)."""
    first = instances[0]
    acquisitions = [t for t in (acquisition_datetime(i) for i in instances) if t is not None]
    earliest = min(acquisitions) if acquisitions else None
    series_dt = parse_da_tm(first.get("SeriesDate"), first.get("SeriesTime"))
    if series_dt is not None and (earliest is None or series_dt <= earliest):
        return series_dt, "SeriesDate/SeriesTime"
    ge = parse_dt(private_value(first, 0x0009, GE_CREATOR, 0x0D))
    if ge is not None:
        return ge, "GE private scan datetime (0009,100D)"
    if earliest is not None:
        return earliest, "earliest AcquisitionDate/AcquisitionTime"
    raise fail(SuvTagError, first.path, f"no {tag('SeriesDate')}/{tag('SeriesTime')} nor "
               f"{tag('AcquisitionDate')}/{tag('AcquisitionTime')}: the scan start is unknown, so the injected "
               "activity cannot be decay-corrected", "Export the PET with its original date and time tags.")


def _half_life(inst: Instance, item, warnings: list[str]) -> float:
    value = item.get("RadionuclideHalfLife")
    if value not in (None, "") and float(value) > 0:
        return float(value)
    codes = item.get("RadionuclideCodeSequence") or []
    code = str(codes[0].get("CodeValue", "")) if codes else ""
    if code in KNOWN_HALF_LIVES_S:
        warnings.append(f"{tag('RadionuclideHalfLife')} missing: used {KNOWN_HALF_LIVES_S[code]:.1f} s from "
                        f"RadionuclideCodeSequence code {code} ({codes[0].get('CodeMeaning', '')})")
        return KNOWN_HALF_LIVES_S[code]
    raise fail(SuvTagError, inst.path, f"missing {tag('RadionuclideHalfLife')} and no known "
               f"{tag('RadionuclideCodeSequence')} code", "Add the half-life in seconds (Ga-68: 4062.6, F-18: "
               "6586.2) to the RadiopharmaceuticalInformationSequence.")


def _injection(inst: Instance, item, start: dt.datetime) -> dt.datetime:
    injection = parse_dt(item.get("RadiopharmaceuticalStartDateTime"))
    source = tag("RadiopharmaceuticalStartDateTime")
    if injection is None:
        time = item.get("RadiopharmaceuticalStartTime")
        if not time:
            raise fail(SuvTagError, inst.path, f"missing {source} and {tag('RadiopharmaceuticalStartTime')}: "
                       "injection time unknown", "Add the injection time to the RadiopharmaceuticalInformationSequence.")
        clock = parse_da_tm(start.strftime("%Y%m%d"), time)
        if clock is None:
            raise fail(SuvTagError, inst.path, f"unreadable {tag('RadiopharmaceuticalStartTime')} {time!r}",
                       "Fix the tag (format HHMMSS).")
        injection, source = clock, tag("RadiopharmaceuticalStartTime")
        if injection > start and (start - (injection - dt.timedelta(days=1))).total_seconds() <= MAX_UPTAKE_S:
            injection -= dt.timedelta(days=1)  # injected before midnight, scanned after it
    uptake = (start - injection).total_seconds()
    if uptake < 0:
        raise fail(SuvTagError, inst.path, f"injection ({source} → {injection}) is {-uptake / 60:.1f} min after "
                   f"the scan start ({start})", "Correct the injection or series date/time tags.")
    if uptake > MAX_UPTAKE_S:
        raise fail(SuvTagError, inst.path, f"injection ({source} → {injection}) and scan start ({start}) give an "
                   f"uptake time of {uptake / 3600:.1f} h (more than {MAX_UPTAKE_S / 3600:.0f} h)",
                   "Check the injection and series date/time tags.")
    return injection


def _weight(inst: Instance, override_kg: float | None, warnings: list[str]) -> float:
    value = inst.get("PatientWeight")
    header = float(value) if value not in (None, "") else 0.0
    if override_kg is not None:
        if header > 0 and abs(header - override_kg) > 0.05:
            warnings.append(f"{tag('PatientWeight')} {header} kg in the headers replaced by {override_kg} kg")
        weight = float(override_kg)
    elif header <= 0:
        raise fail(SuvTagError, inst.path, f"missing or zero {tag('PatientWeight')}: SUVbw needs the body weight",
                   "Pass weight_kg= (CLI: --weight KG) or add it, e.g. `dcmodify -i \"(0010,1030)=72\" FILES`.")
    else:
        weight = header
    if not PLAUSIBLE_WEIGHT_KG[0] <= weight <= PLAUSIBLE_WEIGHT_KG[1]:
        raise fail(SuvTagError, inst.path, f"{tag('PatientWeight')} {weight} kg is implausible (expected "
                   f"{PLAUSIBLE_WEIGHT_KG[0]:g}–{PLAUSIBLE_WEIGHT_KG[1]:g} kg)", "Correct the weight (kg).")
    return weight


def _dose(inst: Instance, item) -> float:
    dose = item.get("RadionuclideTotalDose")
    if dose in (None, "") or float(dose) <= 0:
        raise fail(SuvTagError, inst.path, f"missing or zero {tag('RadionuclideTotalDose')}: injected activity "
                   "unknown", "Add the injected activity in Bq to the RadiopharmaceuticalInformationSequence.")
    dose = float(dose)
    if not PLAUSIBLE_DOSE_BQ[0] <= dose <= PLAUSIBLE_DOSE_BQ[1]:
        raise fail(SuvTagError, inst.path, f"{tag('RadionuclideTotalDose')} {dose:g} Bq is implausible (expected "
                   "1 MBq–20 GBq); it may be stored in MBq", "Store the injected activity in Bq.")
    return dose


def _body(inst: Instance, warnings: list[str]) -> tuple[float | None, str | None]:
    height = float(inst.get("PatientSize") or 0) or None
    sex = str(inst.get("PatientSex", "") or "").upper()[:1] or None
    if height is not None and not PLAUSIBLE_HEIGHT_M[0] <= height <= PLAUSIBLE_HEIGHT_M[1]:
        warnings.append(f"{tag('PatientSize')} {height} is not a height in m: SUL not computed")
        height = None
    return height, sex


# ---------------------------------------------------------------- the recipe


def compute_suv_factor(pet_headers: Series | Sequence[Instance] | Sequence[pydicom.Dataset], *,
                       weight_kg: float | None = None, allow_no_decay_correction: bool = False) -> SuvResult:
    """How the PET series of ``pet_headers`` becomes SUVbw (DOMAIN.md §3), or :class:`SuvTagError`.

    Args:
        pet_headers: every file's header of one PET series (an index ``Series``, ``Instance``s or datasets).
        weight_kg: body weight to use instead of PatientWeight (kg); a differing header value is warned about.
        allow_no_decay_correction: accept DecayCorrection NONE: each slice is then decay-corrected to the scan
            start over its own frame (AcquisitionTime, ActualFrameDuration; :func:`suv.frame_decay_correction`).
    """
    instances = _instances(pet_headers)
    first = instances[0]
    check_consistent(instances)
    units = str(first.get("Units", "") or "").upper()
    warnings: list[str] = []
    start, start_source = scan_start(instances)
    height, sex = _body(first, warnings)
    if units == "GML":
        return _gml(instances, start, start_source, height, sex, weight_kg, warnings)
    if units not in ("BQML", "CNTS"):
        raise fail(SuvTagError, first.path, f"PET {tag('Units')} is {units or 'missing'!r}; SUV needs BQML, CNTS "
                   "(Philips) or GML", "Choose a quantitative PET series (attenuation- and decay-corrected, Bq/mL).")
    result = _from_dose(instances, start, start_source, weight_kg, warnings)
    result.height_m, result.sex = height, sex
    if units == "BQML":
        _apply_decay_convention(result, instances, allow_no_decay_correction)
    else:
        _philips(result, first)
    if start_source.startswith("earliest"):
        warnings.append("SeriesTime is after the acquisition and there is no GE private scan datetime: used the "
                        "earliest AcquisitionDate/AcquisitionTime as scan start")
    _add_sul(result)
    return result


def _from_dose(instances: list[Instance], start: dt.datetime, start_source: str, weight_kg: float | None,
               warnings: list[str]) -> SuvResult:
    first = instances[0]
    item = _radiopharm(first)
    if item is None:
        raise fail(SuvTagError, first.path, f"missing {tag('RadiopharmaceuticalInformationSequence')}: no injected "
                   "activity or injection time", "SUV needs the radiopharmaceutical module; re-export the PET "
                   "from the scanner or PACS with it.")
    dose = _dose(first, item)
    half_life = _half_life(first, item, warnings)
    injection = _injection(first, item, start)
    weight = _weight(first, weight_kg, warnings)
    decayed = decayed_activity_bq(dose, (start - injection).total_seconds(), half_life)
    factor = weight * 1000.0 / decayed
    method = "BQML/GE-reprocessed" if start_source.startswith("GE") else "BQML/START"
    return SuvResult(factor, factor, method, STORED_VALUES["START"], start, start_source, injection, dose, decayed,
                     half_life, weight, warnings=warnings)


def _apply_decay_convention(result: SuvResult, instances: list[Instance], allow_none: bool) -> None:
    first = instances[0]
    decay = str(first.get("DecayCorrection", "") or "").upper()
    if decay == "START":
        return
    if decay == "ADMIN":
        result.voxel_to_suv = result.weight_kg * 1000.0 / result.injected_activity_bq
        result.method, result.stored_values = "BQML/ADMIN", STORED_VALUES["ADMIN"]
        return
    if decay != "NONE":
        raise fail(SuvTagError, first.path, f"{tag('DecayCorrection')} is {decay or 'missing'!r}; expected START, "
                   "ADMIN or NONE", "Add the decay-correction convention of the series.")
    if not allow_none:
        raise fail(SuvTagError, first.path, f"{tag('DecayCorrection')} is NONE: the image is not decay-corrected",
                   "Re-run with allow_no_decay_correction=True (CLI: --allow-no-decay-correction) to decay-correct "
                   "each slice to the scan start over its frame.")
    for inst in instances:
        frame_start = ((acquisition_datetime(inst) or result.scan_datetime) - result.scan_datetime).total_seconds()
        duration_s = float(inst.get("ActualFrameDuration", 0) or 0) / 1000.0
        result.slice_factors[inst.path] = frame_decay_correction(frame_start, duration_s, result.half_life_s)
    result.method, result.stored_values = "BQML/NONE-corrected", STORED_VALUES["NONE"]
    result.warnings.append("DecayCorrection NONE: each slice decay-corrected to the scan start over its frame "
                           "(AcquisitionTime, ActualFrameDuration)")


def _philips(result: SuvResult, first: Instance) -> None:
    suv_scale = private_value(first, 0x7053, PHILIPS_CREATOR, 0x00)
    activity_scale = private_value(first, 0x7053, PHILIPS_CREATOR, 0x09)
    if suv_scale in (None, "") or float(suv_scale) <= 0:
        raise fail(SuvTagError, first.path, f"PET {tag('Units')} CNTS without the Philips private SUV Scale Factor "
                   f"(7053,1000) (creator '{PHILIPS_CREATOR}'): the counts cannot be converted to SUV",
                   "Export the series with Philips private tags, or in BQML.")
    result.voxel_to_suv = float(suv_scale)
    result.method, result.stored_values = "CNTS/Philips", STORED_VALUES["CNTS"]
    if activity_scale in (None, "") or float(activity_scale) <= 0:
        result.warnings.append("Philips Activity Concentration Scale Factor (7053,1009) missing: suv_factor from "
                               "weight and decayed dose")
        return
    from_private = float(suv_scale) / float(activity_scale)
    deviation = from_private / result.suv_factor - 1
    if abs(deviation) > PHILIPS_AGREEMENT:
        result.warnings.append(f"Philips SUV factor from private tags ({from_private:.6g} per Bq/mL) differs by "
                               f"{100 * deviation:+.1f} % from weight / decayed dose; the private one is used")
    result.suv_factor = from_private


def _gml(instances: list[Instance], start: dt.datetime, start_source: str, height: float | None, sex: str | None,
         weight_kg: float | None, warnings: list[str]) -> SuvResult:
    try:
        result = _from_dose(instances, start, start_source, weight_kg, warnings)
    except SuvTagError as err:
        warnings.append(f"GML series: voxels are SUVbw already; suv_factor per Bq/mL unknown ({err})")
        result = SuvResult(float("nan"), 1.0, "GML", STORED_VALUES["GML"], start, start_source, warnings=warnings)
    result.voxel_to_suv, result.method, result.stored_values = 1.0, "GML", STORED_VALUES["GML"]
    result.height_m, result.sex = height, sex
    _add_sul(result)
    return result


def _add_sul(result: SuvResult) -> None:
    if result.height_m and result.sex in ("M", "F") and result.weight_kg and result.suv_factor == result.suv_factor:
        lbm = lean_body_mass_kg(result.weight_kg, result.height_m, result.sex)
        result.sul_factor = result.suv_factor * lbm / result.weight_kg
        return
    missing = [name for name, ok in ((tag("PatientSize"), result.height_m),
                                     (tag("PatientSex") + " M/F", result.sex in ("M", "F"))) if not ok]
    if missing:
        result.warnings.append(f"SUL (lean body mass) not computed: {' and '.join(missing)} missing")
