"""Find a patient's time points in a DICOM folder and load them (PET in SUV, CT in HU).

For each study the attenuation- and decay-corrected PET is chosen, and the CT that shares its frame of
reference and covers it best. Everything else (localizers, NAC PET, secondary captures, reports, other
modalities) is listed in :attr:`Inventory.ignored` with the reason. Time points are ordered by PET scan
start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.datamodel import TimePointInfo
from LesionResponseLib.dicomio.index import (
    DicomIndex,
    DicomInputError,
    Instance,
    Patient,
    Series,
    Study,
    index_folder,
)
from LesionResponseLib.dicomio.suv import SuvCalibration, suv_calibration
from LesionResponseLib.dicomio.volume import load_series, read_datasets
from LesionResponseLib.errors import describe

PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MIN_VOLUME_SLICES = 10


@dataclass
class IgnoredSeries:
    study_date: str
    modality: str
    description: str
    folder: str
    n_files: int
    reason: str
    series_instance_uid: str = ""


@dataclass
class Inventory:
    """What :func:`find_timepoints` found for one patient."""

    root: str
    patient_id: str
    patient_name: str
    timepoints: list[TimePointInfo] = field(default_factory=list)
    ignored: list[IgnoredSeries] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    other_patients: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"root": self.root, "patient_id": self.patient_id, "patient_name": self.patient_name,
                "timepoints": [t.to_dict() for t in self.timepoints],
                "ignored": [vars(i) for i in self.ignored],
                "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable],
                "other_patients": self.other_patients}


@dataclass
class LoadedTimePoint:
    info: TimePointInfo
    pet_suv: sitk.Image  # float32, SUVbw
    ct: sitk.Image | None  # int16, HU


def _multi(value) -> list[str]:
    """A DICOM multi-valued element as upper-case strings (pydicom gives a str for a single value)."""
    value = value or []
    return [str(v).upper() for v in ([value] if isinstance(value, str) else value)]


def _image_type(series: Series) -> list[str]:
    return _multi(series.first.get("ImageType"))


def pet_rejection(series: Series, allow_uncorrected: bool = False) -> str | None:
    """Why a series is not a usable quantitative PET (None when it is)."""
    if series.modality != "PT":
        return None if series.modality == "CT" else f"modality {series.modality or '?'} is neither PET nor CT"
    sop = str(series.first.get("SOPClassUID", ""))
    if sop != PET_STORAGE:
        return f"PET SOP class {sop} (enhanced/multi-frame or derived) is not supported"
    image_type = _image_type(series)
    if any(t in image_type for t in ("LOCALIZER", "SECONDARY", "MIP", "PROJECTION IMAGE", "REFORMATTED")):
        return f"derived PET ({'/'.join(image_type)}), not an original reconstruction"
    corrected = _multi(series.first.get("CorrectedImage"))
    if "ATTN" not in corrected:
        return "not attenuation-corrected (CorrectedImage lacks ATTN)"
    if "DECY" not in corrected and not allow_uncorrected:
        return "not decay-corrected (CorrectedImage lacks DECY; accept with allow_uncorrected / --allow-uncorrected)"
    units = str(series.first.get("Units", "") or "").upper()
    if units not in ("BQML", "CNTS", "GML"):
        return f"Units {units or 'missing'} is not quantitative (BQML, CNTS or GML expected)"
    if len(series.instances) < MIN_VOLUME_SLICES:
        return f"only {len(series.instances)} slices: not a whole-body volume"
    return None


def ct_rejection(series: Series) -> str | None:
    """Why a CT series is not a usable attenuation CT volume (None when it is)."""
    sop = str(series.first.get("SOPClassUID", ""))
    if sop != CT_STORAGE:
        return f"CT SOP class {sop} (enhanced/multi-frame) is not supported"
    if "LOCALIZER" in _image_type(series):
        return "localizer (topogram)"
    iop = np.array(series.first.get("ImageOrientationPatient") or [1, 0, 0, 0, 1, 0], float)
    if abs(abs(np.cross(iop[:3], iop[3:])[2]) - 1) > 0.05:
        return "not an axial series"
    if len(series.instances) < MIN_VOLUME_SLICES:
        return f"only {len(series.instances)} slices: not a volume"
    return None


def _z_range(series: Series) -> tuple[float, float]:
    z = [float(i.get("ImagePositionPatient", [0, 0, 0])[2]) for i in series.instances]
    return min(z), max(z)


def _choose_ct(pet: Series, cts: list[Series]) -> Series | None:
    for_uid = pet.first.get("FrameOfReferenceUID")
    same = [s for s in cts if s.first.get("FrameOfReferenceUID") == for_uid]
    if not same:
        return None
    p0, p1 = _z_range(pet)

    def overlap(s: Series) -> float:
        c0, c1 = _z_range(s)
        return max(0.0, min(p1, c1) - max(p0, c0))

    return max(same, key=lambda s: (overlap(s), len(s.instances)))


def select_patient(index: DicomIndex, patient: str | None) -> Patient:
    """The one patient of the index, or the chosen one; an error lists the patients otherwise."""
    if not index.patients:
        hint = f" ({len(index.unreadable)} files unreadable)" if index.unreadable else ""
        raise DicomInputError(describe(f"no DICOM images found{hint}", path=index.root,
                                       fix="Point to the folder of the PACS export or CD."))
    if patient is not None:
        matches = [p for p in index.patients.values() if patient in (p.patient_id, p.name)]
        if not matches:
            raise DicomInputError(describe(f"patient {patient!r} not found; present: {_list(index)}",
                                           path=index.root, fix="Use one of the listed patient IDs."))
        return matches[0]
    if len(index.patients) > 1:
        raise DicomInputError(describe(f"{len(index.patients)} patients in one folder: {_list(index)}",
                                       path=index.root, fix="Choose one with --patient ID (patient=...)."))
    return next(iter(index.patients.values()))


def _list(index: DicomIndex) -> str:
    return "; ".join(f"{p.patient_id or '(no ID)'} '{p.name}' ({len(p.studies)} studies)"
                     for p in index.patients.values())


def _check_patient_consistency(patient: Patient) -> None:
    seen: dict[str, tuple[str, str]] = {}
    for study in patient.studies.values():
        for series in study.series.values():
            for inst in series.instances:
                for key in ("PatientBirthDate", "PatientSex"):
                    value = str(inst.get(key, "") or "")
                    if not value:
                        continue
                    if key in seen and seen[key][0] != value:
                        raise DicomInputError(describe(
                            f"PatientID {patient.patient_id} has {key} {value!r} here but {seen[key][0]!r} in "
                            f"{seen[key][1]}: files of different patients share an ID", path=inst.path,
                            fix="Separate the patients' files or fix the patient module."))
                    seen.setdefault(key, (value, inst.path))


def find_timepoints(path: str | Path, patient: str | None = None, strict: bool = True,
                    allow_uncorrected: bool = False, index: DicomIndex | None = None,
                    progress: Callable[[int, int], None] | None = None) -> Inventory:
    """Index ``path`` and return the patient's time points (PET + CT per study, SUV calibrated).

    Args:
        path: a folder of DICOM files (any layout) or one file.
        patient: PatientID (or name) to choose when the folder holds several patients.
        strict: raise on a study whose PET cannot be calibrated; otherwise list it as ignored.
        allow_uncorrected: accept PET with DecayCorrection NONE (decay-corrected per slice by the loader).
        index: a ready index (skips re-reading headers).
    Raises:
        DicomInputError: no images, several patients, mixed patient data, or (strict) SUV problems.
    """
    index = index or index_folder(path, progress=progress)
    chosen = select_patient(index, patient)
    _check_patient_consistency(chosen)
    inventory = Inventory(index.root, chosen.patient_id, chosen.name, unreadable=list(index.unreadable),
                          other_patients=[p for p in index.patients if p != chosen.patient_id])
    found: list[tuple[SuvCalibration, Study, Series, Series | None]] = []
    for study in chosen.studies.values():
        result = _study_timepoint(study, inventory, strict, allow_uncorrected)
        if result is not None:
            found.append(result)
    if not found and strict:
        reasons = "; ".join(f"{i.modality} '{i.description}': {i.reason}" for i in inventory.ignored) or "none"
        raise DicomInputError(describe(f"no quantitative PET time point for patient {chosen.patient_id} "
                                       f"(series seen: {reasons})", path=index.root,
                                       fix="Add the attenuation- and decay-corrected PET series to the folder."))
    found.sort(key=lambda f: f[0].scan_datetime)
    for k, (cal, study, pet, ct) in enumerate(found):
        inventory.timepoints.append(_info(k, chosen, study, pet, ct, cal))
    return inventory


def _study_timepoint(study: Study, inventory: Inventory, strict: bool, allow_uncorrected: bool):
    pets, cts = [], []
    for series in study.series.values():
        reason = pet_rejection(series, allow_uncorrected)
        if reason is None and series.modality == "CT":
            reason = ct_rejection(series)
            if reason is None:
                cts.append(series)
                continue
        elif reason is None:
            pets.append(series)
            continue
        inventory.ignored.append(_ignored(study, series, reason))
    if not pets:
        for ct in cts:
            inventory.ignored.append(_ignored(study, ct, "no quantitative PET in this study"))
        return None
    pets.sort(key=lambda s: len(s.instances), reverse=True)
    pet = pets[0]
    for other in pets[1:]:
        inventory.ignored.append(_ignored(study, other, f"another corrected PET was chosen ({pet.label()})"))
    try:
        cal = suv_calibration(pet, allow_uncorrected=allow_uncorrected)
    except DicomInputError as err:
        if strict:
            raise
        inventory.ignored.append(_ignored(study, pet, f"SUV cannot be computed: {err}"))
        return None
    ct = _choose_ct(pet, cts)
    for other in cts:
        if other is not ct:
            why = "CT of another frame of reference" if other.first.get("FrameOfReferenceUID") != \
                pet.first.get("FrameOfReferenceUID") else "another CT covers the PET better"
            inventory.ignored.append(_ignored(study, other, why))
    if ct is None:
        cal.warnings.append("no CT shares the PET's frame of reference: PET only")
    return cal, study, pet, ct


def _ignored(study: Study, series: Series, reason: str) -> IgnoredSeries:
    return IgnoredSeries(study.date, series.modality, series.description, series.folder, len(series.instances),
                         reason, series.uid)


def _info(k: int, patient: Patient, study: Study, pet: Series, ct: Series | None,
          cal: SuvCalibration) -> TimePointInfo:
    first: Instance = pet.first
    return TimePointInfo(
        index=k, patient_id=patient.patient_id, study_date=str(first.get("StudyDate", "") or
                                                               cal.scan_datetime.strftime("%Y%m%d")),
        scan_datetime=cal.scan_datetime.isoformat(), study_instance_uid=study.uid,
        pet_series_instance_uid=pet.uid, ct_series_instance_uid=ct.uid if ct else None,
        frame_of_reference_uid=first.get("FrameOfReferenceUID"), suv_factor=cal.suv_factor,
        suv_method=cal.method, weight_kg=cal.weight_kg, height_m=cal.height_m, sex=cal.sex,
        injected_activity_bq=cal.injected_activity_bq,
        injection_datetime=cal.injection_datetime.isoformat() if cal.injection_datetime else None,
        uptake_time_s=cal.uptake_time_s, half_life_s=cal.half_life_s, sul_factor=cal.sul_factor,
        manufacturer=str(first.get("Manufacturer", "") or "") or None,
        pet_files=[i.path for i in pet.instances], ct_files=[i.path for i in ct.instances] if ct else [],
        warnings=list(cal.warnings))


def load_timepoint(info: TimePointInfo, with_ct: bool = True, allow_uncorrected: bool = False) -> LoadedTimePoint:
    """Load a time point: PET as float32 SUVbw and CT as int16 HU (SimpleITK, LPS geometry).

    The SUV calibration is recomputed from the files' headers, so a ``TimePointInfo`` read back from
    ``analysis.json`` loads the same way.
    """
    if not info.pet_files:
        raise DicomInputError(describe(f"time point {info.index} lists no PET files", fix="Re-run find_timepoints."))
    datasets = read_datasets(info.pet_files)
    series = Series(info.pet_series_instance_uid, [Instance(p, ds) for p, ds in zip(info.pet_files, datasets,
                                                                                    strict=True)])
    cal = suv_calibration(series, allow_uncorrected=allow_uncorrected)
    pet = load_series(info.pet_files, scale=cal.voxel_to_suv, slice_factors=cal.slice_decay, datasets=datasets)
    ct = None
    if with_ct and info.ct_files:
        ct = load_series(info.ct_files, dtype=np.int16)
    return LoadedTimePoint(info, pet, ct)
