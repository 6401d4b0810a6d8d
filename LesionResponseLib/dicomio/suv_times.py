"""The times SUV depends on: the reference time of the PET's decay correction and the injection time.

Reference time (DecayCorrection START), in the order of the SUV computation manual (Vácha et al., OncoRay 2026,
"Option A", which is the QIBA vendor-neutral pseudo-code completed by its fourth rule):

1. SeriesDate/SeriesTime (0008,0021/0031), unless it is later than the earliest acquisition of the series (the
   series was re-processed, and SeriesTime is then the processing time);
2. GE's private PET scan datetime (0009,100D) (creator ``GEMS_PETD_01``), which GE sets to the scan start;
3. back-computed from each file's acquisition: t_ref = AcquisitionTime + T_ave − FrameReferenceTime, with
   T_ave the average-count-rate time of the frame (:func:`suv.average_count_rate_time_s`), when
   FrameReferenceTime (0054,1300) and ActualFrameDuration (0018,1242) are present and > 0 in every file;
4. the earliest AcquisitionDate/AcquisitionTime of the series (wrong when the series is cropped: warned).

Injection: RadiopharmaceuticalStartDateTime (0018,1078), else RadiopharmaceuticalStartTime (0018,1072) on the
scan date, or the day before when that is the only way to get an uptake time ≤ :data:`MAX_UPTAKE_S` (an injection
before midnight and a scan after it).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from LesionResponseLib.dicomio.errors import SuvTagError, fail, tag
from LesionResponseLib.dicomio.index import Instance
from LesionResponseLib.dicomio.suv import average_count_rate_time_s

#: Uptake beyond 6 h (≈ 5.3 Ga-68 half-lives, < 3 % activity left) is almost surely a date/time error.
MAX_UPTAKE_S = 6 * 3600.0
GE_CREATOR = "GEMS_PETD_01"
#: Per-file back-computed reference times may differ (scanners define FrameReferenceTime differently); beyond a
#: spread that changes the decay factor by 0.5 % (λ·spread > 0.005, 29 s for Ga-68) the spread is warned about.
REFERENCE_SPREAD = 0.005
SOURCE_SERIES = "SeriesDate/SeriesTime"
SOURCE_GE = "GE private scan datetime (0009,100D)"
SOURCE_FRAMES = "back-computed from AcquisitionTime + average-count-rate time − FrameReferenceTime"
SOURCE_EARLIEST = "earliest AcquisitionDate/AcquisitionTime"


@dataclass
class Notes:
    """What a calibration assumed (a rule applied to imperfect headers) and what it warns about."""

    assumptions: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


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


def positive_number(value) -> float | None:
    """A DS/IS/UN value as a float when it is a number > 0, else None."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore").strip("\0 ")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 and math.isfinite(number) else None


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


def reference_time(instances: list[Instance], half_life_s: float | None,
                   notes: Notes) -> tuple[dt.datetime, str]:
    """The decay-correction reference (scan start) and its source, by the module docstring's rules 1–4."""
    first = instances[0]
    acquisitions = [t for t in (acquisition_datetime(i) for i in instances) if t is not None]
    earliest = min(acquisitions) if acquisitions else None
    series_dt = parse_da_tm(first.get("SeriesDate"), first.get("SeriesTime"))
    if series_dt is not None and (earliest is None or series_dt <= earliest):
        return series_dt, SOURCE_SERIES
    ge = parse_dt(private_value(first, 0x0009, GE_CREATOR, 0x0D))
    if ge is not None:
        return ge, SOURCE_GE
    late = "missing" if series_dt is None else "after the acquisition"
    frames = _from_frames(instances, half_life_s, notes)
    if frames is not None:
        notes.assumptions.append(f"SeriesDate/SeriesTime {late} and no GE private scan datetime: reference time "
                                 f"{frames:%H:%M:%S.%f} {SOURCE_FRAMES} (0008,0032; 0018,1242; 0054,1300)")
        return frames, SOURCE_FRAMES
    if earliest is not None:
        notes.warnings.append(f"SeriesTime is {late}, there is no GE private scan datetime and no "
                              "FrameReferenceTime/ActualFrameDuration > 0: used the earliest "
                              "AcquisitionDate/AcquisitionTime as scan start")
        return earliest, SOURCE_EARLIEST
    raise fail(SuvTagError, first.path, f"no {tag('SeriesDate')}/{tag('SeriesTime')} nor "
               f"{tag('AcquisitionDate')}/{tag('AcquisitionTime')}: the scan start is unknown, so the injected "
               "activity cannot be decay-corrected", "Export the PET with its original date and time tags.")


def _from_frames(instances: list[Instance], half_life_s: float | None, notes: Notes) -> dt.datetime | None:
    """Rule 3: median over files of AcquisitionTime + T_ave − FrameReferenceTime; None when not computable."""
    if not half_life_s:
        return None
    refs = []
    for inst in instances:
        acquired = acquisition_datetime(inst)
        frame_ref_ms = positive_number(inst.get("FrameReferenceTime"))
        duration_ms = positive_number(inst.get("ActualFrameDuration"))
        if acquired is None or frame_ref_ms is None or duration_ms is None:
            return None
        offset_s = average_count_rate_time_s(duration_ms / 1000.0, half_life_s) - frame_ref_ms / 1000.0
        refs.append(acquired + dt.timedelta(seconds=offset_s))
    refs.sort()
    spread_s = (refs[-1] - refs[0]).total_seconds()
    if spread_s * math.log(2.0) / half_life_s > REFERENCE_SPREAD:
        notes.warnings.append(f"reference times back-computed per file spread over {spread_s:.0f} s: the median "
                              "is used (FrameReferenceTime of the files disagree)")
    return refs[len(refs) // 2]


def injection_time(inst: Instance, item, start: dt.datetime, notes: Notes) -> dt.datetime:
    """The injection datetime (module docstring), checked against the scan start; assumptions recorded."""
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
        day = "the scan date"
        if injection > start and (start - (injection - dt.timedelta(days=1))).total_seconds() <= MAX_UPTAKE_S:
            injection -= dt.timedelta(days=1)  # injected before midnight, scanned after it
            day = "the day before the scan (injected before midnight, scanned after it)"
        notes.assumptions.append(f"injection date not in the headers (only {source}): taken as {day}")
    uptake = (start - injection).total_seconds()
    if uptake < 0:
        raise fail(SuvTagError, inst.path, f"injection ({source} → {injection}) is {-uptake / 60:.1f} min after "
                   f"the scan start ({start})", "Correct the injection or series date/time tags.")
    if uptake > MAX_UPTAKE_S:
        raise fail(SuvTagError, inst.path, f"injection ({source} → {injection}) and scan start ({start}) give an "
                   f"uptake time of {uptake / 3600:.1f} h (more than {MAX_UPTAKE_S / 3600:.0f} h)",
                   "Check the injection and series date/time tags.")
    return injection
