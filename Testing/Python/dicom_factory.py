"""Tiny hand-made PET/CT DICOM series for edge-case tests (8×8 pixels, a few slices, chosen tags)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    PositronEmissionTomographyImageStorage,
    generate_uid,
)

HALF_LIFE = 4062.6


def _meta(ds: Dataset) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta


def write_series(folder: Path, *, modality: str = "PT", patient_id: str = "P1", birth: str = "19600101",
                 study_uid: str | None = None, for_uid: str | None = None, n_slices: int = 12,
                 values: np.ndarray | None = None, scan: dt.datetime = dt.datetime(2025, 3, 1, 11, 0, 0),
                 injection: dt.datetime | None = dt.datetime(2025, 3, 1, 10, 0, 0), dose_bq: float | None = 150e6,
                 weight: float | None = 70.0, units: str = "BQML", decay: str = "START",
                 half_life: float | None = HALF_LIFE, corrected=("ATTN", "DECY"), series_time: dt.datetime | None = None,
                 injection_time_only: bool = False, private: dict | None = None, spacing_z: float = 4.0,
                 z_positions: list[float] | None = None, image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
                 radionuclide_code: str | None = "35337001", height: float | None = 1.75, sex: str = "M",
                 tilt_mm_per_slice: float = 0.0, intercept: float = 0.0, code_scheme: str = "SCT",
                 code_meaning: str = "^68^Gallium", injection_datetime_only: bool = False,
                 slice_tags=None) -> list[Path]:
    """Write a small series; PET values are stored as int16 with per-slice RescaleSlope. Returns the paths.

    ``values`` are the rescaled values (stored × slope + ``intercept``). ``private`` maps (group, creator) to
    {element: (VR, value)}; creator None writes the elements into block 10 without a creator (as anonymisers
    leave them). ``slice_tags(k, ds)`` may set per-file tags (e.g. AcquisitionTime, FrameReferenceTime).
    """
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or generate_uid()
    for_uid = for_uid or generate_uid()
    series_uid = generate_uid()
    series_time = series_time or scan
    if values is None:
        values = np.fromfunction(lambda z, y, x: 1000.0 * (1 + z + 0.1 * x + 0.01 * y), (n_slices, 8, 8))
    zs = z_positions if z_positions is not None else [-spacing_z * k for k in range(values.shape[0])]
    paths = []
    for k, z in enumerate(zs):
        ds = Dataset()
        ds.SOPClassUID = PositronEmissionTomographyImageStorage if modality == "PT" else CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        _meta(ds)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.Modality, ds.PatientID, ds.PatientName = modality, patient_id, f"Test^{patient_id}"
        ds.PatientBirthDate, ds.PatientSex = birth, sex
        if weight is not None:
            ds.PatientWeight = f"{weight}"
        if height is not None:
            ds.PatientSize = f"{height}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, for_uid
        ds.StudyDate, ds.StudyTime = scan.strftime("%Y%m%d"), "090000"
        ds.SeriesDate, ds.SeriesTime = series_time.strftime("%Y%m%d"), series_time.strftime("%H%M%S")
        ds.AcquisitionDate, ds.AcquisitionTime = scan.strftime("%Y%m%d"), scan.strftime("%H%M%S")
        ds.SeriesNumber, ds.InstanceNumber = 3 if modality == "PT" else 2, k + 1
        ds.SeriesDescription = f"{modality} test"
        ds.ImageType = list(image_type)
        ds.ImagePositionPatient = [0.0, tilt_mm_per_slice * k, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [4.0, 4.0]
        ds.SliceThickness = f"{spacing_z}"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = values.shape[1:]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        if modality == "PT":
            _pet_tags(ds, units, decay, corrected, injection, dose_bq, half_life, injection_time_only,
                      (radionuclide_code, code_scheme, code_meaning), injection_datetime_only)
            slope = float(np.abs(values[k] - intercept).max()) / 30000 or 1.0
            ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{intercept:g}"
            stored = np.round((values[k] - intercept) / float(ds.RescaleSlope)).astype(np.int16)
        else:
            ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
            stored = (values[k] + 1024).astype(np.int16)
        ds.PixelData = stored.tobytes()
        for (group, creator), elements in (private or {}).items():
            for element, (vr, value) in elements.items():
                if creator is None:
                    ds.add_new((group << 16) | 0x1000 | element, vr, value)
                else:
                    ds.private_block(group, creator, create=True).add_new(element, vr, value)
        if slice_tags is not None:
            slice_tags(k, ds)
        path = folder / f"IM{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _pet_tags(ds, units, decay, corrected, injection, dose_bq, half_life, injection_time_only, code,
              injection_datetime_only) -> None:
    ds.Units, ds.DecayCorrection, ds.CorrectedImage = units, decay, list(corrected)
    ds.CountsSource, ds.SeriesType = "EMISSION", ["WHOLE BODY", "IMAGE"]
    ds.ActualFrameDuration = 180000
    item = Dataset()
    if injection is not None:
        if not injection_datetime_only:
            item.RadiopharmaceuticalStartTime = injection.strftime("%H%M%S")
        if not injection_time_only:
            item.RadiopharmaceuticalStartDateTime = injection.strftime("%Y%m%d%H%M%S")
    if dose_bq is not None:
        item.RadionuclideTotalDose = f"{dose_bq}"
    if half_life is not None:
        item.RadionuclideHalfLife = f"{half_life}"
    if code[0]:
        c = Dataset()
        c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = code
        item.RadionuclideCodeSequence = Sequence([c])
    ds.RadiopharmaceuticalInformationSequence = Sequence([item])


def expected_suv_factor(weight_kg: float, dose_bq: float, uptake_s: float, half_life: float = HALF_LIFE) -> float:
    """SUVbw per Bq/mL: weight (g) / (dose × 2^(−uptake / T½))."""
    return weight_kg * 1000 / (dose_bq * 2 ** (-uptake_s / half_life))


def phantom_series(phantom: Path, timepoint: int, folder: str = "PET_AC") -> list[Path]:
    """The files of one series (``PET_AC`` or ``CT``) of a phantom time point, in file-name order."""
    [study] = sorted((phantom / "dicom").glob(f"*_TP{timepoint}"))
    return sorted((study / folder).iterdir())


def copy_series(files: list[Path], dest: Path, edit=None, *, keep: slice = slice(None)) -> list[Path]:
    """Copies of ``files[keep]`` in ``dest`` (same names), each passed through ``edit(k, ds)`` when given."""
    import pydicom

    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for k, path in enumerate(files[keep]):
        ds = pydicom.dcmread(path)
        if edit is not None:
            edit(k, ds)
        ds.save_as(dest / path.name, enforce_file_format=True)
        written.append(dest / path.name)
    return written


def store_values(ds, values: np.ndarray) -> None:
    """Store rescaled ``values`` in a PET dataset as int16 with its own RescaleSlope (as scanners do)."""
    slope = float(np.abs(values).max()) / 32000 or 1.0
    ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", "0"
    ds.PixelData = np.round(values / float(ds.RescaleSlope)).astype("<i2").tobytes()


#: RadiopharmaceuticalInformationSequence of an [18F]FDG scan, as vendors write it (CID 4021 code and text).
FDG_ITEM = {"Radiopharmaceutical": "Fluorodeoxyglucose", "RadionuclideHalfLife": "6586.2",
            "code": ("35321007", "SCT", "Fluorodeoxyglucose F^18^"), "nuclide": ("77004003", "SCT", "^18^Fluorine")}


def as_fdg(k: int, ds) -> None:
    """Relabel a phantom PET file as [18F]FDG (agent and nuclide codes, text and half-life)."""
    item = ds.RadiopharmaceuticalInformationSequence[0]
    item.Radiopharmaceutical, item.RadionuclideHalfLife = FDG_ITEM["Radiopharmaceutical"], FDG_ITEM["RadionuclideHalfLife"]
    for keyword, code in (("RadiopharmaceuticalCodeSequence", FDG_ITEM["code"]),
                          ("RadionuclideCodeSequence", FDG_ITEM["nuclide"])):
        entry = getattr(item, keyword)[0]
        entry.CodeValue, entry.CodingSchemeDesignator, entry.CodeMeaning = code


def baseline_fdg_zip(phantom: Path, dest: Path) -> Path:
    """A ZIP of phantom time point 0 (PET relabelled [18F]FDG, CT as is): one scan, another tracer, an archive."""
    import zipfile

    study = dest / "study"
    copy_series(phantom_series(phantom, 0), study / "PET", as_fdg)
    copy_series(phantom_series(phantom, 0, "CT"), study / "CT")
    archive = dest / "baseline-fdg.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as handle:  # stored: archive, not compression, is tested
        for path in sorted(study.rglob("*.dcm")):
            handle.write(path, path.relative_to(study))
    return archive


def build_baseline_fdg_analysis(phantom: Path, folder: Path) -> None:
    """``folder/baseline-fdg.zip`` and its analysis ``folder/out`` (truth labels, the tracer override) with the
    report (HTML, PDF) and the DICOM export: what a reader gets for a first scan of another tracer."""
    from LesionResponseLib.config import AnalysisParameters
    from LesionResponseLib.report import export_dicom, write_patient_report
    from LesionResponseLib.workflow import run_pipeline

    archive = baseline_fdg_zip(phantom, folder)
    params = AnalysisParameters().updated({"registration.method": "identity", "prior_search.enabled": False,
                                           "input.allow_other_tracer": True})
    run_pipeline(archive, folder / "out", params, labels_dir=phantom / "truth")
    write_patient_report(folder / "out")
    export_dicom(folder / "out", folder / "out" / "report" / "dicom")
