"""SUV calibration of a PET series from its headers, vendor-neutral (DOMAIN.md §3; QIBA / Kinahan recipe).

``suv_factor`` is SUVbw per Bq/mL: weight (g) / injected activity decayed to the scan start (Bq), the same
whatever the vendor stores. ``voxel_to_suv`` is what multiplies the *rescaled* voxel values of this series
(pixel × RescaleSlope + RescaleIntercept, per slice) to give SUVbw: equal to ``suv_factor`` for BQML/START,
``weight / dose`` for BQML/ADMIN (already decay-corrected to injection), the Philips SUV Scale Factor for
CNTS, and 1 for GML.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from LesionResponseLib.dicomio.index import DicomInputError, Instance, Series
from LesionResponseLib.errors import describe

#: Half-lives (s) by radionuclide code value (SNOMED CT and legacy SNOMED RT) — used only when
#: RadionuclideHalfLife is missing; the code identifies the nuclide unambiguously.
KNOWN_HALF_LIVES_S = {"35337001": 4062.6, "C-131A3": 4062.6, "77004003": 6586.2, "C-111A1": 6586.2,
                      "C-163A8": 6586.2}
PLAUSIBLE_DOSE_BQ = (1e6, 2e10)
PLAUSIBLE_UPTAKE_S = (0.0, 6 * 3600.0)
PHILIPS_CREATOR = "Philips PET Private Group"
GE_CREATOR = "GEMS_PETD_01"


@dataclass
class SuvCalibration:
    """How one PET series becomes SUV (see module docstring)."""

    suv_factor: float  # SUVbw per Bq/mL at scan start (nan when not computable, e.g. GML without dose)
    voxel_to_suv: float  # rescaled voxel value → SUVbw
    method: str  # BQML/START, BQML/ADMIN, BQML/GE-reprocessed, CNTS/Philips, GML, BQML/NONE-corrected
    scan_datetime: dt.datetime
    injection_datetime: dt.datetime | None
    injected_activity_bq: float | None
    half_life_s: float | None
    weight_kg: float | None
    height_m: float | None
    sex: str | None
    sul_factor: float | None = None
    slice_decay: dict[str, float] = field(default_factory=dict)  # path → extra factor (DecayCorrection NONE)
    warnings: list[str] = field(default_factory=list)

    @property
    def uptake_time_s(self) -> float | None:
        if self.injection_datetime is None:
            return None
        return (self.scan_datetime - self.injection_datetime).total_seconds()


def parse_da_tm(date: str | None, time: str | None) -> dt.datetime | None:
    """A datetime from DICOM DA and TM strings (TM may be HHMM, HHMMSS, HHMMSS.ffffff, or with colons)."""
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
    """A naive datetime from a DICOM DT string (time-zone offset ignored: all times of a study share it)."""
    if not value:
        return None
    text = str(value).strip()
    for sign in ("+", "-"):
        if sign in text[8:]:
            text = text[: 8 + text[8:].index(sign)]
    return parse_da_tm(text[:8], text[8:] or "000000")


def _fail(path: str, problem: str, fix: str) -> DicomInputError:
    return DicomInputError(describe(problem, path=path, fix=fix))


def _acquisition_datetime(inst: Instance) -> dt.datetime | None:
    return parse_dt(inst.get("AcquisitionDateTime")) or parse_da_tm(inst.get("AcquisitionDate"),
                                                                    inst.get("AcquisitionTime"))


def scan_start(series: Series) -> tuple[dt.datetime, str]:
    """Scan start for decay correction and how it was found (SeriesDateTime, GE private, or acquisition)."""
    first = series.first
    acquisitions = [t for t in (_acquisition_datetime(i) for i in series.instances) if t is not None]
    earliest = min(acquisitions) if acquisitions else None
    series_dt = parse_da_tm(first.get("SeriesDate"), first.get("SeriesTime"))
    if series_dt is not None and (earliest is None or series_dt <= earliest):
        return series_dt, "series"
    ge = _private(first, 0x0009, GE_CREATOR, 0x0D)
    if ge is not None and parse_dt(ge) is not None:
        return parse_dt(ge), "ge-private"
    if earliest is not None:
        return earliest, "acquisition"
    raise _fail(first.path, "no SeriesDate/SeriesTime nor AcquisitionDate/AcquisitionTime: the scan start is "
                "unknown, so the injected activity cannot be decay-corrected",
                "Export the PET with its original date and time tags.")


def _private(inst: Instance, group: int, creator: str, element: int):
    """A private element's value by creator (any block), or None."""
    ds = inst.header
    for block in range(0x10, 0x100):
        tag = (group << 16) | block
        if tag not in ds:
            break
        if str(ds[tag].value).strip() == creator:
            full = (group << 16) | (block << 8) | element
            return ds[full].value if full in ds else None
    return None


def _radiopharmaceutical(inst: Instance):
    seq = inst.get("RadiopharmaceuticalInformationSequence")
    if not seq:
        raise _fail(inst.path, "missing RadiopharmaceuticalInformationSequence (0054,0016): no injected "
                    "activity or injection time", "SUV needs the radiopharmaceutical module; re-export the PET "
                    "from the scanner or PACS with it.")
    return seq[0]


def _half_life(inst: Instance, item, warnings: list[str]) -> float:
    value = item.get("RadionuclideHalfLife")
    if value not in (None, "") and float(value) > 0:
        return float(value)
    codes = item.get("RadionuclideCodeSequence") or []
    code = str(codes[0].get("CodeValue", "")) if codes else ""
    if code in KNOWN_HALF_LIVES_S:
        warnings.append(f"RadionuclideHalfLife missing; used {KNOWN_HALF_LIVES_S[code]} s from the radionuclide "
                        f"code {code} ({codes[0].get('CodeMeaning', '')})")
        return KNOWN_HALF_LIVES_S[code]
    raise _fail(inst.path, "missing RadionuclideHalfLife (0018,1075) and no known RadionuclideCodeSequence",
                "Add the half-life in seconds (Ga-68: 4062.6) to the radiopharmaceutical sequence.")


def _injection(inst: Instance, item, start: dt.datetime) -> dt.datetime:
    injection = parse_dt(item.get("RadiopharmaceuticalStartDateTime"))
    if injection is not None:
        return injection
    time = item.get("RadiopharmaceuticalStartTime")
    if not time:
        raise _fail(inst.path, "missing RadiopharmaceuticalStartDateTime (0018,1078) and "
                    "RadiopharmaceuticalStartTime (0018,1072): injection time unknown",
                    "Add the injection time to the radiopharmaceutical sequence.")
    date = inst.get("SeriesDate") or inst.get("StudyDate") or start.strftime("%Y%m%d")
    injection = parse_da_tm(date, time)
    if injection is None:
        raise _fail(inst.path, f"unreadable RadiopharmaceuticalStartTime {time!r}", "Fix the tag (HHMMSS).")
    injection = injection.replace(year=start.year, month=start.month, day=start.day)
    if injection > start:  # injected before midnight, scanned after it
        injection -= dt.timedelta(days=1)
    return injection


def _weight(inst: Instance) -> float:
    value = inst.get("PatientWeight")
    if value in (None, "") or float(value) <= 0:
        raise _fail(inst.path, "missing or zero PatientWeight (0010,1030): SUVbw needs the body weight",
                    "Add the weight in kg, e.g. `dcmodify -i \"(0010,1030)=72\" FILES`.")
    weight = float(value)
    if not 2 <= weight <= 400:
        raise _fail(inst.path, f"PatientWeight {weight} kg is implausible (expected 2–400 kg)",
                    "Correct the weight (kg) in the headers.")
    return weight


def lean_body_mass_kg(weight_kg: float, height_m: float, sex: str) -> float:
    """Janmahasatian lean body mass (kg) from weight, height and sex ('M' or 'F')."""
    bmi = weight_kg / height_m**2
    if sex == "M":
        return 9270 * weight_kg / (6680 + 216 * bmi)
    return 9270 * weight_kg / (8780 + 244 * bmi)


def suv_calibration(series: Series, allow_uncorrected: bool = False) -> SuvCalibration:
    """Compute how a PET series becomes SUVbw, or raise :class:`DicomInputError` naming file and tag."""
    first = series.first
    units = str(first.get("Units", "") or "").upper()
    warnings: list[str] = []
    start, start_source = scan_start(series)
    height = float(first.get("PatientSize") or 0) or None
    sex = str(first.get("PatientSex", "") or "").upper() or None
    if units == "GML":
        return _gml(series, start, height, sex, warnings)
    if units not in ("BQML", "CNTS"):
        raise _fail(first.path, f"PET Units (0054,1001) is {units or 'missing'!r}; SUV needs BQML, CNTS (Philips) "
                    "or GML", "Choose a quantitative PET series (attenuation- and decay-corrected, in Bq/mL).")
    item = _radiopharmaceutical(first)
    dose = item.get("RadionuclideTotalDose")
    if dose in (None, "") or float(dose) <= 0:
        raise _fail(first.path, "missing or zero RadionuclideTotalDose (0018,1074): injected activity unknown",
                    "Add the injected activity in Bq to the radiopharmaceutical sequence.")
    dose = float(dose)
    if not PLAUSIBLE_DOSE_BQ[0] <= dose <= PLAUSIBLE_DOSE_BQ[1]:
        raise _fail(first.path, f"RadionuclideTotalDose {dose:g} Bq is implausible (expected 1 MBq–20 GBq); "
                    "it may be stored in MBq", "Store the injected activity in Bq.")
    half_life = _half_life(first, item, warnings)
    injection = _injection(first, item, start)
    uptake = (start - injection).total_seconds()
    if not PLAUSIBLE_UPTAKE_S[0] <= uptake <= PLAUSIBLE_UPTAKE_S[1]:
        raise _fail(first.path, f"injection {injection} and scan start {start} give an uptake time of "
                    f"{uptake / 60:.0f} min (expected 0–6 h)", "Check the injection and series date/time tags.")
    weight = _weight(first)
    decayed = dose * 2 ** (-uptake / half_life)
    suv_factor = weight * 1000.0 / decayed
    decay = str(first.get("DecayCorrection", "") or "").upper()
    method = f"{units}/{decay}" if units == "BQML" else "CNTS/Philips"
    if start_source == "ge-private":
        method = "BQML/GE-reprocessed"
    cal = SuvCalibration(suv_factor, suv_factor, method, start, injection, dose, half_life, weight, height, sex,
                         warnings=warnings)
    if units == "BQML":
        _apply_decay_convention(cal, series, decay, allow_uncorrected)
    else:
        _philips(cal, first)
    if start_source == "acquisition":
        warnings.append("SeriesTime is after the acquisition and no GE private scan datetime: used the earliest "
                        "AcquisitionTime as scan start")
    if height and sex in ("M", "F") and cal.weight_kg:
        cal.sul_factor = cal.suv_factor * lean_body_mass_kg(cal.weight_kg, height, sex) / cal.weight_kg
    return cal


def _apply_decay_convention(cal: SuvCalibration, series: Series, decay: str, allow_uncorrected: bool) -> None:
    first = series.first
    if decay == "START":
        return
    if decay == "ADMIN":
        cal.voxel_to_suv = cal.weight_kg * 1000.0 / cal.injected_activity_bq
        return
    if decay == "NONE":
        if not allow_uncorrected:
            raise _fail(first.path, "DecayCorrection (0054,1102) is NONE: the image is not decay-corrected",
                        "Re-run with allow_uncorrected=True (CLI: --allow-uncorrected) to decay-correct each "
                        "slice to the scan start from its acquisition time.")
        for inst in series.instances:
            t = _acquisition_datetime(inst) or cal.scan_datetime
            mid = (t - cal.scan_datetime).total_seconds() + float(inst.get("ActualFrameDuration", 0) or 0) / 2000
            cal.slice_decay[inst.path] = 2 ** (mid / cal.half_life_s)
        cal.method = "BQML/NONE-corrected"
        cal.warnings.append("DecayCorrection NONE: each slice decay-corrected to the scan start by the loader")
        return
    raise _fail(first.path, f"DecayCorrection (0054,1102) is {decay or 'missing'!r}; expected START, ADMIN or NONE",
                "Add the decay-correction convention of the series.")


def _philips(cal: SuvCalibration, first: Instance) -> None:
    suv_scale = _private(first, 0x7053, PHILIPS_CREATOR, 0x00)
    activity_scale = _private(first, 0x7053, PHILIPS_CREATOR, 0x09)
    if suv_scale in (None, "") or float(suv_scale) <= 0:
        raise _fail(first.path, "PET Units CNTS without the Philips private SUV Scale Factor (7053,1000): the "
                    "counts cannot be converted to SUV", "Export the series with Philips private tags, or in BQML.")
    cal.voxel_to_suv = float(suv_scale)
    if activity_scale not in (None, "") and float(activity_scale) > 0:
        from_private = float(suv_scale) / float(activity_scale)
        if abs(from_private / cal.suv_factor - 1) > 0.02:
            cal.warnings.append(f"Philips SUV factor from private tags ({from_private:.6g} per Bq/mL) differs by "
                                f"{100 * (from_private / cal.suv_factor - 1):+.1f} % from weight/decayed dose")
        cal.suv_factor = from_private


def _gml(series: Series, start, height, sex, warnings) -> SuvCalibration:
    cal = SuvCalibration(float("nan"), 1.0, "GML", start, None, None, None, None, height, sex, warnings=warnings)
    try:
        full = suv_calibration_from_headers(series, start)
        cal.suv_factor, cal.injection_datetime = full.suv_factor, full.injection_datetime
        cal.injected_activity_bq, cal.half_life_s, cal.weight_kg = (full.injected_activity_bq, full.half_life_s,
                                                                    full.weight_kg)
    except DicomInputError as err:
        warnings.append(f"GML series: voxels are SUV already; suv_factor per Bq/mL unknown ({err})")
    return cal


def suv_calibration_from_headers(series: Series, start: dt.datetime) -> SuvCalibration:
    """SUVbw factor from weight, dose and times alone (used to document GML series)."""
    first = series.first
    item = _radiopharmaceutical(first)
    dose = float(item.get("RadionuclideTotalDose") or 0)
    if dose <= 0:
        raise _fail(first.path, "no RadionuclideTotalDose", "")
    warnings: list[str] = []
    half_life = _half_life(first, item, warnings)
    injection = _injection(first, item, start)
    weight = _weight(first)
    decayed = dose * 2 ** (-(start - injection).total_seconds() / half_life)
    factor = weight * 1000.0 / decayed
    return SuvCalibration(factor, factor, "GML", start, injection, dose, half_life, weight, None, None)
