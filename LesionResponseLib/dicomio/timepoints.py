"""Find a patient's time points in a DICOM folder and load them (PET in SUV, CT in HU).

Selection rules (each study of the chosen patient gives at most one time point):

* **PET**: a PET Image Storage series (or Enhanced / Legacy Converted Enhanced PET, one slice per frame) of a
  static whole-body scan (SeriesType not DYNAMIC or GATED) that is an original reconstruction (not localizer,
  MIP, secondary),
  attenuation-corrected (CorrectedImage has ATTN) and decay-corrected (DECY) or of DecayCorrection NONE (then
  decay-corrected on load), with Units BQML, CNTS, GML or CM2ML and at
  least :data:`MIN_VOLUME_SLICES` slices. Among several: prefer ImageType ORIGINAL, then the most slices
  (widest coverage), then the earliest scan start (not a delayed or repeated scan), then the lowest
  SeriesNumber. The others are listed as ignored with the chosen one named.
* **Tracer**: a somatostatin-receptor tracer (:mod:`tracer`); another is refused unless ``allow_other_tracer``.
* **CT**: an axial CT Image Storage (or Enhanced / Legacy Converted Enhanced CT) volume of the PET's
  FrameOfReferenceUID, from the same study if there is
  one, else from another study of the patient (warned); the one covering the PET's axial range best, then
  the most slices. No such CT: the time point is PET only (warned, ``ct_series_instance_uid=None``).

Everything else (localizers, NAC PET, secondary captures, SR, RTSTRUCT, other modalities) is listed in
:attr:`Inventory.ignored` with the reason. Time points are ordered by PET scan start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.datamodel import TimePointInfo
from LesionResponseLib.dicomio.calibration import SUPPORTED_UNITS, SuvResult, compute_suv_factor
from LesionResponseLib.dicomio.errors import (
    CorruptFileError,
    DicomInputError,
    GeometryError,
    PatientSelectionError,
    SuvTagError,
    fail,
    tag,
)
from LesionResponseLib.dicomio.frames import MULTIFRAME_CT, MULTIFRAME_PET
from LesionResponseLib.dicomio.geometry import SliceGeometry
from LesionResponseLib.dicomio.index import NOT_DICOM, DicomIndex, Patient, Series, Study, index_folder
from LesionResponseLib.dicomio.tracer import TracerError, TracerFinding, check_tracer
from LesionResponseLib.dicomio.volume import (
    check_series_geometry,
    load_series,
    read_headers,
    series_instances,
)

PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MIN_VOLUME_SLICES = 10  # fewer slices cannot be a whole-body or even a single-bed reconstruction (≥ 15 cm)
AXIAL_TOLERANCE = 0.05  # |normal_z| ≥ 0.95 (≈ 18°) counts as an axial series
DERIVED_TYPES = ("LOCALIZER", "SECONDARY", "MIP", "PROJECTION IMAGE", "REFORMATTED", "SCREEN SAVE")
#: SeriesType (0054,1000) first values of scans that are not one static whole-body volume: their slices repeat
#: positions (one per time frame or gate), which a response assessment cannot use.
NOT_STATIC = ("DYNAMIC", "GATED")
SUV_AGREEMENT = 1e-6  # relative tolerance when load_timepoint re-derives the SUV factor from the files


@dataclass
class IgnoredSeries:
    """A series that is not part of any time point, and why."""

    study_date: str
    modality: str
    description: str
    folder: str
    n_files: int
    reason: str
    series_instance_uid: str = ""


@dataclass
class PatientSummary:
    patient_id: str
    name: str
    n_studies: int
    n_files: int


@dataclass
class Inventory:
    """What :func:`find_timepoints` found for the chosen patient (and which patients the folder holds)."""

    root: str
    patient_id: str
    patient_name: str
    patients: list[PatientSummary] = field(default_factory=list)
    timepoints: list[TimePointInfo] = field(default_factory=list)
    ignored: list[IgnoredSeries] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: chosen series uid → {"modality", "description", "n_files", "folder"} (for display)
    series: dict[str, dict] = field(default_factory=dict)
    #: (path, reason) of every file or folder not read: not DICOM, hidden, DICOMDIR, link loops, second copies
    not_read: list[tuple[str, str]] = field(default_factory=list)
    archives: dict[str, str] = field(default_factory=dict)  # ZIP archive → where it was unpacked

    def to_dict(self) -> dict:
        """JSON-compatible dict (the ``inspect --json`` output)."""
        return {"root": self.root, "patient_id": self.patient_id, "patient_name": self.patient_name,
                "patients": [asdict(p) for p in self.patients],
                "timepoints": [t.to_dict() for t in self.timepoints],
                "ignored": [asdict(i) for i in self.ignored],
                "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable],
                "not_read": [{"path": p, "reason": r} for p, r in self.not_read],
                "archives": dict(self.archives), "warnings": list(self.warnings), "series": self.series}


@dataclass
class LoadedTimePoint:
    info: TimePointInfo
    pet_suv: sitk.Image  # float32, SUVbw
    ct: sitk.Image | None  # HU: int16 when every slice's rescale is integral, else float32


# ---------------------------------------------------------------- series classification


def _multi(value) -> list[str]:
    """A DICOM multi-valued element as upper-case strings (pydicom gives a str for a single value)."""
    value = value or []
    return [str(v).upper() for v in ([value] if isinstance(value, str) else value)]


def pet_rejection(series: Series) -> str | None:
    """Why a series is not a usable quantitative PET (None when it is, or when it is a CT).

    A PET without DECY in CorrectedImage is usable when its DecayCorrection is NONE (the loader decay-corrects
    it, :mod:`calibration`); with DecayCorrection START or ADMIN the two tags contradict each other.
    """
    if series.modality != "PT":
        return None if series.modality == "CT" else f"modality {series.modality or '?'} is neither PET nor CT"
    sop = str(series.first.get("SOPClassUID", ""))
    if sop != PET_STORAGE and sop not in MULTIFRAME_PET:
        return f"PET SOP class {sop} (secondary capture or another non-image object) is not a PET image"
    scan = _multi(series.first.get("SeriesType"))
    if scan and scan[0] in NOT_STATIC:
        return (f"{scan[0].lower()} PET ({tag('SeriesType')} {'/'.join(scan)}): its slices repeat positions per "
                "frame or gate; a static whole-body reconstruction is needed")
    image_type = _multi(series.first.get("ImageType"))
    if any(t in image_type for t in DERIVED_TYPES):
        return f"derived PET ({'/'.join(image_type)}), not an original reconstruction"
    corrected = _multi(series.first.get("CorrectedImage"))
    if "ATTN" not in corrected:
        return "not attenuation-corrected (CorrectedImage lacks ATTN)"
    decay = str(series.first.get("DecayCorrection", "") or "").upper()
    if "DECY" not in corrected and decay != "NONE":
        return (f"CorrectedImage lacks DECY but {tag('DecayCorrection')} is {decay or 'missing'}: contradictory "
                "decay-correction tags")
    units = str(series.first.get("Units", "") or "").upper()
    if units not in SUPPORTED_UNITS:
        return f"{tag('Units')} {units or 'missing'} is not quantitative ({', '.join(SUPPORTED_UNITS)} expected)"
    if len(series.instances) < MIN_VOLUME_SLICES:
        return f"only {len(series.instances)} slices: not a whole-body volume"
    return None


def ct_rejection(series: Series) -> str | None:
    """Why a CT series is not a usable attenuation CT volume (None when it is)."""
    sop = str(series.first.get("SOPClassUID", ""))
    if "LOCALIZER" in _multi(series.first.get("ImageType")):
        return "localizer (topogram)"
    if sop != CT_STORAGE and sop not in MULTIFRAME_CT:
        return f"CT SOP class {sop} (secondary capture or another non-image object) is not a CT image"
    iop = np.array(series.first.get("ImageOrientationPatient") or [1, 0, 0, 0, 1, 0], float)
    if abs(abs(np.cross(iop[:3], iop[3:])[2]) - 1) > AXIAL_TOLERANCE:
        return "not an axial series (coronal/sagittal reformat)"
    if len(series.instances) < MIN_VOLUME_SLICES:
        return f"only {len(series.instances)} slices: not a volume"
    return None


def _z_range(series: Series) -> tuple[float, float]:
    z = [float((i.get("ImagePositionPatient") or [0, 0, 0])[2]) for i in series.instances]
    return min(z), max(z)


def _pet_rank(pair: tuple[Series, SuvResult]):
    series, cal = pair
    original = "ORIGINAL" in _multi(series.first.get("ImageType"))
    return (not original, -len(series.instances), cal.scan_datetime, int(series.first.get("SeriesNumber") or 0))


def _choose_ct(pet: Series, candidates: list[Series]) -> Series | None:
    for_uid = pet.first.get("FrameOfReferenceUID")
    same = [s for s in candidates if for_uid and s.first.get("FrameOfReferenceUID") == for_uid]
    if not same:
        return None
    p0, p1 = _z_range(pet)

    def coverage(s: Series) -> tuple[float, int]:
        c0, c1 = _z_range(s)
        return max(0.0, min(p1, c1) - max(p0, c0)), len(s.instances)

    return max(same, key=coverage)


# ---------------------------------------------------------------- patient choice


def select_patient(index: DicomIndex, patient: str | None) -> Patient:
    """The one patient of the index, or the chosen one; an error lists the patients otherwise."""
    if not index.patients:
        hint = f" ({len(index.unreadable)} files unreadable)" if index.unreadable else ""
        raise fail(PatientSelectionError, index.root, f"no DICOM images found{hint}",
                   "Point to the folder of the PACS export or CD.")
    if patient is not None:
        matches = [p for p in index.patients.values() if patient in (p.patient_id, p.name)]
        if not matches:
            raise fail(PatientSelectionError, index.root, f"patient {patient!r} not found; present: {_list(index)}",
                       "Use one of the listed PatientIDs.")
        return matches[0]
    if len(index.patients) > 1:
        raise fail(PatientSelectionError, index.root, f"{len(index.patients)} patients in one folder: "
                   f"{_list(index)}", "Choose one with --patient ID (patient=...).")
    return next(iter(index.patients.values()))


def _list(index: DicomIndex) -> str:
    return "; ".join(f"{p.patient_id or '(no ID)'} '{p.name}' ({len(p.studies)} studies, {p.n_files} files)"
                     for p in index.patients.values())


def _check_patient_consistency(patient: Patient) -> None:
    """Two people under one PatientID (different birth dates or sexes) is an error, never a merge."""
    seen: dict[str, tuple[str, str]] = {}
    for study in patient.studies.values():
        for series in study.series.values():
            for inst in series.instances:
                for key in ("PatientBirthDate", "PatientSex"):
                    value = str(inst.get(key, "") or "")
                    if value and key in seen and seen[key][0] != value:
                        raise fail(PatientSelectionError, inst.path, f"PatientID {patient.patient_id} has "
                                   f"{tag(key)} {value!r} here but {seen[key][0]!r} in {seen[key][1]}: files of "
                                   "different patients share an ID",
                                   "Separate the patients' files or fix the patient module.")
                    if value:
                        seen.setdefault(key, (value, inst.path))


# ---------------------------------------------------------------- time points


def find_timepoints(path_or_index: str | Path | DicomIndex, patient: str | None = None, *, strict: bool = True,
                    weight_kg: float | None = None,
                    index: DicomIndex | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    allow_other_tracer: bool = False,
                    unpack_dir: str | Path | None = None) -> Inventory:
    """The patient's time points (PET + CT per study, SUV calibrated), ordered by scan start.

    Args:
        path_or_index: a DICOM folder (any layout), one file, or a ready :class:`DicomIndex`.
        patient: PatientID (or name) to choose when the folder holds several patients.
        strict: raise on a chosen PET whose SUV cannot be computed or whose files are corrupt; when False
            (``inspect``) such series are listed as ignored with the reason.
        weight_kg: body weight (kg) used instead of PatientWeight for every time point.
        index: a ready index (same as passing it as ``path_or_index``; kept for callers that pass both).
        progress: ``progress(done, total)`` while headers are read.
        allow_other_tracer: analyse a PET whose tracer is not SSTR (:mod:`tracer`; recorded in
            ``TimePointInfo.tracer_override`` and warned); refused otherwise.
        unpack_dir: where ZIP archives in the input are unpacked (:func:`index_folder`).
    Raises:
        PatientSelectionError: no images, several patients without ``patient``, mixed patient data.
        SuvTagError, CorruptFileError, TracerError: (strict) the chosen PET cannot be calibrated or read, or shows
            another tracer.
    """
    if isinstance(path_or_index, DicomIndex):
        index = path_or_index
    index = index or index_folder(path_or_index, progress=progress, unpack_dir=unpack_dir)
    chosen = select_patient(index, patient)
    _check_patient_consistency(chosen)
    inventory = Inventory(index.root, chosen.patient_id, chosen.name, unreadable=list(index.unreadable),
                          patients=[PatientSummary(p.patient_id, p.name, len(p.studies), p.n_files)
                                    for p in index.patients.values()],
                          not_read=[*index.not_read, *((p, NOT_DICOM) for p in index.non_dicom)],
                          archives=dict(index.archives))
    if index.unreadable:
        inventory.warnings.append(f"{len(index.unreadable)} unreadable DICOM file(s), e.g. {index.unreadable[0][0]} "
                                  f"({index.unreadable[0][1]}); see Inventory.unreadable")
    if len(index.patients) > 1:
        inventory.warnings.append(f"the folder holds {len(index.patients)} patients; only {chosen.patient_id} "
                                  "was analysed")
    all_cts = [s for st in chosen.studies.values() for s in st.series.values()
               if s.modality == "CT" and ct_rejection(s) is None]
    used_cts: set[str] = set()
    found = []
    for study in chosen.studies.values():
        result = _study_timepoint(study, index, inventory, all_cts=all_cts, strict=strict, weight_kg=weight_kg,
                                  allow_other_tracer=allow_other_tracer)
        if result is not None:
            found.append(result)
            if result.ct is not None:
                used_cts.add(result.ct.uid)
    _list_unused_cts(chosen, all_cts, used_cts, inventory)
    if not found and strict:
        reasons = "; ".join(f"{i.modality} '{i.description}': {i.reason}" for i in inventory.ignored) or "none"
        raise fail(DicomInputError, index.root, f"no quantitative PET time point for patient {chosen.patient_id} "
                   f"(series seen: {reasons})", "Add the attenuation- and decay-corrected PET series to the folder.")
    found.sort(key=lambda f: f.cal.scan_datetime)
    for k, choice in enumerate(found):
        inventory.timepoints.append(_info(k, chosen, choice))
        for series in (choice.pet, choice.ct) if choice.ct else (choice.pet,):
            inventory.series[series.uid] = {"modality": series.modality, "description": series.description,
                                            "n_files": len(series.files), "n_slices": len(series.instances),
                                            "folder": series.folder}
    return inventory


@dataclass
class _Choice:
    """One study's chosen PET (calibrated, its tracer and slice geometry) and CT (and its geometry)."""

    cal: SuvResult
    study: Study
    pet: Series
    pet_geometry: SliceGeometry
    tracer: TracerFinding
    ct: Series | None = None
    ct_geometry: SliceGeometry | None = None


def _study_timepoint(study: Study, index: DicomIndex, inventory: Inventory, *, all_cts: list[Series], strict: bool,
                     weight_kg: float | None, allow_other_tracer: bool) -> _Choice | None:
    candidates: list[tuple[Series, SuvResult]] = []
    failures: list[tuple[Series, SuvTagError | TracerError]] = []
    for series in study.series.values():
        if series.modality == "CT":
            reason = ct_rejection(series)
            if reason:
                inventory.ignored.append(_ignored(study, series, reason))
            continue
        reason = pet_rejection(series) or _corrupt_reason(index, series, strict)
        if reason is None:
            try:
                check_tracer(series.first, allow_other=allow_other_tracer)
                candidates.append((series, compute_suv_factor(series, weight_kg=weight_kg)))
            except (SuvTagError, TracerError) as err:
                failures.append((series, err))
            continue
        inventory.ignored.append(_ignored(study, series, reason))
    if failures and strict and not candidates:
        raise failures[0][1]  # the study's only quantitative PET cannot be used: never skip it silently
    for series, err in failures:
        what = "another tracer" if isinstance(err, TracerError) else "SUV cannot be computed"
        inventory.ignored.append(_ignored(study, series, f"{what}: {err}"))
    if not candidates:
        return None
    candidates.sort(key=_pet_rank)
    pet, cal = candidates[0]
    pet_geometry, reason = _series_geometry(pet, strict)
    if pet_geometry is None:
        inventory.ignored.append(_ignored(study, pet, reason))
        return None
    for other, _ in candidates[1:]:
        inventory.ignored.append(_ignored(study, other, f"another corrected PET was chosen ({pet.label()}): rule "
                                 "ORIGINAL, most slices, earliest scan, lowest SeriesNumber"))
    own = [s for s in all_cts if s.uid in study.series]
    ct = _choose_ct(pet, own)
    if ct is None:
        ct = _choose_ct(pet, [s for s in all_cts if s.uid not in study.series])
        if ct is not None:
            cal.warnings.append(f"CT taken from another study of the same FrameOfReferenceUID ({ct.label()})")
    choice = _Choice(cal, study, pet, pet_geometry, check_tracer(pet.first, allow_other=allow_other_tracer))
    if ct is not None:
        reason = _corrupt_reason(index, ct, strict)
        choice.ct_geometry, geometry_reason = (None, None) if reason else _series_geometry(ct, strict=False)
        reason = reason or geometry_reason
        if reason:
            inventory.ignored.append(_ignored(study, ct, reason))
            ct = None
    if ct is None:
        cal.warnings.append(f"no usable CT shares the PET's {tag('FrameOfReferenceUID')}: PET only")
    choice.ct = ct
    return choice


def _corrupt_reason(index: DicomIndex, series: Series, strict: bool) -> str | None:
    corrupt = index.corrupt_files_of(series)
    if not corrupt:
        return None
    problem = (f"{len(corrupt)} unreadable file(s) belong to {series.label()}, e.g. {corrupt[0][0]} "
               f"({corrupt[0][1]})")
    if strict:
        raise fail(CorruptFileError, corrupt[0][0], problem, "Re-export the series or replace the damaged file; "
                   "a series with a missing slice cannot be quantified.")
    return problem


def _series_geometry(series: Series, strict: bool) -> tuple[SliceGeometry | None, str]:
    """The series' slice geometry from the headers, or (None, why its slices do not form a volume); raises
    when ``strict``."""
    try:
        return check_series_geometry([i.header for i in series.instances], [i.key for i in series.instances]), ""
    except GeometryError as err:
        if strict:
            raise
        return None, f"irregular geometry: {err}"


def _list_unused_cts(patient: Patient, all_cts: list[Series], used: set[str], inventory: Inventory) -> None:
    unused = {s.uid for s in all_cts} - used - {i.series_instance_uid for i in inventory.ignored}
    for study in patient.studies.values():
        for series in study.series.values():
            if series.uid in unused:
                inventory.ignored.append(_ignored(study, series, "CT of a FrameOfReferenceUID that no chosen PET "
                                                  "shares" if series.first.get("FrameOfReferenceUID") else
                                                  "CT without FrameOfReferenceUID (0020,0052)"))


def _ignored(study: Study, series: Series, reason: str) -> IgnoredSeries:
    return IgnoredSeries(study.date, series.modality, series.description, series.folder, len(series.files),
                         reason, series.uid)


def _info(k: int, patient: Patient, choice: _Choice) -> TimePointInfo:
    cal, study, pet, ct, tracer = choice.cal, choice.study, choice.pet, choice.ct, choice.tracer
    first = pet.first
    warnings = list(cal.warnings) + ([tracer.warning] if tracer.warning else [])
    if not tracer.sstr:
        warnings.append(f"tracer {tracer.name} is not somatostatin-receptor PET: analysed on the user's request "
                        "(--allow-other-tracer); the model, categories and physiological rules are made for SSTR PET")
    notes = [f"{name}: {note}" for name, geometry in (("PET", choice.pet_geometry), ("CT", choice.ct_geometry))
             if geometry is not None and (note := geometry.describe())]
    return TimePointInfo(
        index=k, patient_id=patient.patient_id,
        study_date=str(first.get("StudyDate", "") or cal.scan_datetime.strftime("%Y%m%d")),
        scan_datetime=cal.scan_datetime.isoformat(), study_instance_uid=study.uid,
        pet_series_instance_uid=pet.uid, ct_series_instance_uid=ct.uid if ct else None,
        frame_of_reference_uid=first.get("FrameOfReferenceUID"), suv_factor=cal.suv_factor,
        suv_method=cal.method, weight_kg=cal.weight_kg, height_m=cal.height_m, sex=cal.sex,
        injected_activity_bq=cal.injected_activity_bq,
        injection_datetime=cal.injection_datetime.isoformat() if cal.injection_datetime else None,
        uptake_time_s=cal.uptake_time_s, half_life_s=cal.half_life_s, sul_factor=cal.sul_factor,
        manufacturer=str(first.get("Manufacturer", "") or "") or None,
        pet_files=pet.files, ct_files=ct.files if ct else [],
        warnings=warnings, suv_reference_time_source=cal.scan_start_source,
        suv_normalisation=cal.normalisation, suv_assumptions=list(cal.assumptions),
        radiopharmaceutical=tracer.name, radionuclide=tracer.nuclide, tracer_override=not tracer.sstr,
        pet_slice_deviation_mm=round(choice.pet_geometry.deviation_mm, 4),
        ct_slice_deviation_mm=round(choice.ct_geometry.deviation_mm, 4) if choice.ct_geometry else None,
        ct_tilt_deg=round(choice.ct_geometry.tilt_deg, 2) if choice.ct_geometry else None, geometry_notes=notes)


# ---------------------------------------------------------------- loading


def load_timepoint(info: TimePointInfo, with_ct: bool = True) -> LoadedTimePoint:
    """Load a time point: PET as float32 SUVbw, CT in HU (SimpleITK, LPS geometry, slices sorted by position).

    The SUV calibration is recomputed from the files' headers (with ``info.weight_kg``), so a ``TimePointInfo``
    read back from ``analysis.json`` loads the same way;
    a factor that no longer agrees with ``info.suv_factor`` (files changed) is an error.
    """
    if not info.pet_files:
        raise fail(DicomInputError, None, f"time point {info.index} lists no PET files", "Re-run find_timepoints.")
    headers = read_headers(info.pet_files)
    instances = series_instances(info.pet_files, headers)
    cal = compute_suv_factor(instances, weight_kg=info.weight_kg)
    if cal.suv_factor == cal.suv_factor and abs(cal.suv_factor / info.suv_factor - 1) > SUV_AGREEMENT:
        raise fail(SuvTagError, info.pet_files[0], f"SUV factor from the files ({cal.suv_factor:.6g}) differs from "
                   f"the time point's ({info.suv_factor:.6g}): the files changed", "Re-run find_timepoints.")
    pet = load_series(info.pet_files, scale=cal.voxel_to_suv, slice_factors=cal.slice_factors, headers=headers)
    ct = load_series(info.ct_files, dtype=None) if with_ct and info.ct_files else None
    return LoadedTimePoint(info, pet, ct)
