"""Index a folder tree of DICOM files from their headers: patients → studies → series → instances.

Only header elements are parsed (``stop_before_pixels`` and a fixed list of tags), so thousands of files
index in seconds. Files that are not DICOM or cannot be parsed are listed in :attr:`DicomIndex.unreadable`
with the reason; they never stop the indexing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag

from LesionResponseLib.errors import LesionResponseError, describe

NOT_DICOM = "not a DICOM file"


class DicomInputError(LesionResponseError):
    """A DICOM input problem: the message names the file, the tag or series, and what to do."""


_TAGS = [Tag(t) for t in (
    "SOPClassUID", "SOPInstanceUID", "Modality", "PatientID", "PatientName", "PatientBirthDate", "PatientSex",
    "PatientWeight", "PatientSize", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription",
    "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "SeriesDate", "SeriesTime", "AcquisitionDate",
    "AcquisitionTime", "AcquisitionDateTime", "ImageType", "FrameOfReferenceUID", "ImagePositionPatient",
    "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "NumberOfFrames", "Units", "CorrectedImage",
    "DecayCorrection", "RescaleSlope", "RescaleIntercept", "Manufacturer", "InstanceNumber",
    "RadiopharmaceuticalInformationSequence", "SeriesType", "ActualFrameDuration", "GantryDetectorTilt",
)] + [Tag(0x0009, 0x0010), Tag(0x0009, 0x100D), Tag(0x7053, 0x0010), Tag(0x7053, 0x1000), Tag(0x7053, 0x1009)]


@dataclass
class Instance:
    """One DICOM file's header (only the elements the loader needs)."""

    path: str
    header: pydicom.Dataset

    def get(self, keyword: str, default=None):
        return self.header.get(keyword, default)


@dataclass
class Series:
    uid: str
    instances: list[Instance] = field(default_factory=list)

    @property
    def first(self) -> Instance:
        return self.instances[0]

    @property
    def modality(self) -> str:
        return str(self.first.get("Modality", ""))

    @property
    def description(self) -> str:
        return str(self.first.get("SeriesDescription", "")) or f"series {self.first.get('SeriesNumber', '?')}"

    @property
    def folder(self) -> str:
        return os.path.dirname(self.first.path)

    def label(self) -> str:
        return f"{self.modality} '{self.description}' ({len(self.instances)} files, {self.folder})"


@dataclass
class Study:
    uid: str
    series: dict[str, Series] = field(default_factory=dict)

    @property
    def date(self) -> str:
        first = next(iter(self.series.values())).first
        return str(first.get("StudyDate", "") or "")


@dataclass
class Patient:
    patient_id: str
    name: str
    studies: dict[str, Study] = field(default_factory=dict)

    @property
    def n_files(self) -> int:
        return sum(len(se.instances) for st in self.studies.values() for se in st.series.values())


@dataclass
class DicomIndex:
    """The result of :func:`index_folder`."""

    root: str
    patients: dict[str, Patient] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): corrupt DICOM
    non_dicom: list[str] = field(default_factory=list)  # other files (reports, images, NIfTI...)
    n_files: int = 0


def _iter_files(root: Path) -> Iterable[Path]:
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            yield Path(dirpath) / name


def _read_header(path: Path) -> tuple[Instance | None, str | None]:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS)
    except InvalidDicomError:
        if path.suffix.lower() not in ("", ".dcm", ".ima", ".dicom"):
            return None, NOT_DICOM
        try:  # DICOM without the 128-byte preamble (old CDs): accept only if it parses as an image instance
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS, force=True)
        except Exception:
            return None, NOT_DICOM
    except Exception as exc:  # corrupt or truncated files must not stop the index
        return None, f"unreadable DICOM ({type(exc).__name__}: {exc})"
    if "SOPInstanceUID" not in ds or "SeriesInstanceUID" not in ds or "StudyInstanceUID" not in ds:
        return None, "missing SOPInstanceUID/SeriesInstanceUID/StudyInstanceUID: not an image instance"
    return Instance(str(path), ds), None


def index_folder(path: str | Path, progress: Callable[[int, int], None] | None = None,
                 workers: int = 4) -> DicomIndex:
    """Index every DICOM file under ``path`` (headers only) into patients → studies → series.

    Args:
        path: a folder (searched recursively) or a single file.
        progress: optional ``progress(done, total)`` callback.
        workers: reader threads (file I/O overlaps parsing).
    Raises:
        DicomInputError: the path does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise DicomInputError(describe("no such file or folder", path=root, fix="Check the path."))
    files = list(_iter_files(root))
    index = DicomIndex(str(root), n_files=len(files))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, (file, (inst, reason)) in enumerate(zip(files, pool.map(_read_header, files), strict=True), 1):
            if progress and (done % 200 == 0 or done == len(files)):
                progress(done, len(files))
            if reason == NOT_DICOM:
                index.non_dicom.append(str(file))
                continue
            if inst is None:
                index.unreadable.append((str(file), reason or "unreadable"))
                continue
            _add(index, inst)
    for patient in index.patients.values():
        for study in patient.studies.values():
            for series in study.series.values():
                series.instances.sort(key=lambda i: (int(i.get("InstanceNumber", 0) or 0), i.path))
    return index


def _add(index: DicomIndex, inst: Instance) -> None:
    pid = str(inst.get("PatientID", "") or "")
    patient = index.patients.setdefault(pid, Patient(pid, str(inst.get("PatientName", "") or "")))
    study = patient.studies.setdefault(inst.header.StudyInstanceUID, Study(inst.header.StudyInstanceUID))
    series = study.series.setdefault(inst.header.SeriesInstanceUID, Series(inst.header.SeriesInstanceUID))
    series.instances.append(inst)
