"""Write a simulated scan as real DICOM: CT Image and PET Image Storage series, in vendor flavours.

One study per time point; CT and PET share its frame of reference; PET pixel data are int16 with a
per-slice RescaleSlope. Vendor flavours (docs/DOMAIN.md §3):

* ``siemens`` — Units BQML, DecayCorrection START, SeriesTime = scan start.
* ``siemens-admin`` — Units BQML, DecayCorrection ADMIN: voxel values decay-corrected to the injection.
* ``philips`` — Units CNTS with private (7053,1000) SUV Scale Factor and (7053,1009) Activity
  Concentration Scale Factor (creator "Philips PET Private Group").
* ``ge`` — Units BQML/START, the series reprocessed later (SeriesTime after the acquisition) with the
  original scan start in private (0009,100D) (creator "GEMS_PETD_01").
* ``gml`` — Units GML: voxel values already SUVbw.

Besides the two series a reader needs, each study holds series a loader must ignore: a CT localizer and a
non-attenuation-corrected PET.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    PositronEmissionTomographyImageStorage,
    generate_uid,
)

from LesionResponseLib import __version__
from LesionResponseLib.phantom.errors import bad_option
from LesionResponseLib.phantom.simulate import GA68_HALF_LIFE_S, SimulatedPatient, SimulatedTimepoint

VENDORS = ("siemens", "siemens-admin", "philips", "ge", "gml")
MANUFACTURER = {"siemens": ("SIEMENS", "Biograph Vision 600"), "siemens-admin": ("SIEMENS", "Biograph mCT"),
                "philips": ("Philips Medical Systems", "Vereos"), "ge": ("GE MEDICAL SYSTEMS", "Discovery MI"),
                "gml": ("LesionResponse", "Phantom GML")}
PHILIPS_ACTIVITY_SCALE = 3.7  # Bq/mL per stored CNTS unit (value of (7053,1009) in the phantom)
GE_REPROCESS_DELAY = dt.timedelta(hours=2, minutes=17)


def uid(*parts) -> str:
    """A deterministic DICOM UID from the given parts (same seed → same UIDs)."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _da(t: dt.datetime) -> str:
    return t.strftime("%Y%m%d")


def _tm(t: dt.datetime) -> str:
    return t.strftime("%H%M%S.%f")[:13]


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    ds = Dataset()
    ds.CodeValue, ds.CodingSchemeDesignator, ds.CodeMeaning = value, scheme, meaning
    return ds


def _base(patient: SimulatedPatient, scan: SimulatedTimepoint, vendor: str, study_uid: str, for_uid: str):
    a = scan.acquisition
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID = patient.patient_name, patient.patient_id
    ds.PatientBirthDate, ds.PatientSex = patient.birth_date, patient.sex
    age = a.scan_start.year - int(patient.birth_date[:4])
    ds.PatientAge = f"{age:03d}Y"
    ds.PatientSize, ds.PatientWeight = f"{a.height_m:.2f}", f"{a.weight_kg:.1f}"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study_uid, _da(a.injection), _tm(a.injection)
    ds.ReferringPhysicianName, ds.StudyID = "", f"{scan.index + 1}"
    ds.AccessionNumber = f"ACC{patient.seed:04d}{scan.index}"
    ds.StudyDescription = "PET/CT DOTATATE Whole Body"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = for_uid, ""
    ds.Manufacturer, ds.ManufacturerModelName = MANUFACTURER[vendor]
    ds.InstitutionName = "LesionResponse Phantom Hospital"
    ds.SoftwareVersions = f"LesionResponse phantom {__version__}"
    ds.DeviceSerialNumber = "0001"
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "WHOLEBODY"
    return ds


def _new_instance(base: Dataset, sop_class: str, sop_uid: str) -> Dataset:
    ds = Dataset()
    ds.update(base)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def _image_pixels(ds: Dataset, array: np.ndarray) -> None:
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = array.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.ascontiguousarray(array, dtype="<i2").tobytes()


def _plane(ds: Dataset, image: sitk.Image, k: int) -> None:
    position = image.TransformIndexToPhysicalPoint((0, 0, k))
    ds.ImagePositionPatient = [f"{v:.3f}" for v in position]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [f"{image.GetSpacing()[1]:g}", f"{image.GetSpacing()[0]:g}"]
    ds.SliceThickness = f"{image.GetSpacing()[2]:g}"
    ds.SliceLocation = f"{position[2]:.3f}"


def write_ct(scan: SimulatedTimepoint, base: Dataset, folder: Path, series_uid: str, seed_key) -> list[Path]:
    """The CT series (HU, stored as HU + 1024 with RescaleIntercept −1024)."""
    folder.mkdir(parents=True, exist_ok=True)
    a = scan.acquisition
    ct_time = a.scan_start - dt.timedelta(minutes=3)
    hu = sitk.GetArrayViewFromImage(scan.ct)
    paths = []
    nz = hu.shape[0]
    for n, k in enumerate(range(nz - 1, -1, -1)):  # head first, as scanners number slices
        ds = _new_instance(base, CTImageStorage, uid(seed_key, "ct", k))
        ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "CT", series_uid, 2
        ds.SeriesDescription = "CT WB 4.0 B30f"
        ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = _da(ct_time)
        ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = _tm(ct_time)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber, ds.AcquisitionNumber = n + 1, 1
        ds.KVP, ds.XRayTubeCurrent, ds.ConvolutionKernel = "120", 80, "B30f"
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
        _plane(ds, scan.ct, k)
        _image_pixels(ds, hu[k].astype(np.int32) + 1024)
        path = folder / f"CT{n + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_localizer(scan: SimulatedTimepoint, base: Dataset, folder: Path, seed_key) -> Path:
    """A coronal CT topogram (ImageType LOCALIZER): a series every loader must ignore."""
    folder.mkdir(parents=True, exist_ok=True)
    a = scan.acquisition
    hu = sitk.GetArrayViewFromImage(scan.ct).astype(np.float32)
    projection = np.clip((hu[::-1] + 1000).mean(axis=1) * 2.0, 0, 4095)  # (z head→feet, x)
    ds = _new_instance(base, CTImageStorage, uid(seed_key, "topogram"))
    t = a.scan_start - dt.timedelta(minutes=6)
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "CT", uid(seed_key, "topogram-series"), 1
    ds.SeriesDescription = "Topogram 0.6 T20f"
    ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = _da(t)
    ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = _tm(t)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.InstanceNumber, ds.AcquisitionNumber, ds.KVP = 1, 1, "120"
    ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
    top = scan.ct.TransformIndexToPhysicalPoint((0, 0, scan.ct.GetSize()[2] - 1))
    ds.ImagePositionPatient = [f"{top[0]:.3f}", "0", f"{top[2]:.3f}"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.PixelSpacing = [f"{scan.ct.GetSpacing()[2]:g}", f"{scan.ct.GetSpacing()[0]:g}"]
    ds.SliceThickness = ""
    _image_pixels(ds, projection.astype(np.int16))
    path = folder / "TOPO0001.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _radiopharmaceutical(scan: SimulatedTimepoint) -> Sequence:
    a = scan.acquisition
    item = Dataset()
    item.Radiopharmaceutical = "Ga68 DOTATATE"
    item.RadiopharmaceuticalRoute = "Intravenous route"
    item.RadiopharmaceuticalStartTime = _tm(a.injection)
    item.RadiopharmaceuticalStartDateTime = a.injection.strftime("%Y%m%d%H%M%S.%f")[:21]
    item.RadionuclideTotalDose = f"{a.injected_activity_bq:.6g}"
    item.RadionuclideHalfLife = f"{GA68_HALF_LIFE_S:g}"
    item.RadionuclidePositronFraction = "0.891"
    item.RadionuclideCodeSequence = Sequence([_code("35337001", "SCT", "^68^Gallium")])
    item.RadiopharmaceuticalCodeSequence = Sequence([_code("724025002", "SCT", "Dotatate Ga^68^")])
    return Sequence([item])


def pet_values(scan: SimulatedTimepoint, vendor: str, suv: np.ndarray) -> tuple[np.ndarray, str, str]:
    """Voxel values as the vendor stores them (after rescale), their Units and DecayCorrection."""
    a = scan.acquisition
    bqml_start = suv / a.suv_factor
    if vendor == "siemens-admin":
        return bqml_start * 2 ** (a.uptake_time_s / GA68_HALF_LIFE_S), "BQML", "ADMIN"
    if vendor == "philips":
        return bqml_start / PHILIPS_ACTIVITY_SCALE, "CNTS", "START"
    if vendor == "gml":
        return suv, "GML", "START"
    return bqml_start, "BQML", "START"


def write_pet(scan: SimulatedTimepoint, base: Dataset, folder: Path, *, series_uid: str, vendor: str, seed_key,
              image: sitk.Image | None = None, nac: bool = False) -> list[Path]:
    """The PET series (or, with ``nac``, the non-attenuation-corrected decoy) in the vendor's flavour."""
    folder.mkdir(parents=True, exist_ok=True)
    a = scan.acquisition
    img = image if image is not None else scan.pet_suv
    values, units, decay = pet_values(scan, vendor, sitk.GetArrayFromImage(img).astype(np.float64))
    bed_step = 160.0 * 0.7
    series_time = a.scan_start + (GE_REPROCESS_DELAY if vendor == "ge" else dt.timedelta(0))
    nz = values.shape[0]
    paths = []
    for n, k in enumerate(range(nz - 1, -1, -1)):  # head first
        bed = min(int(n * img.GetSpacing()[2] // bed_step), max(a.n_beds - 1, 0))
        acq_time = a.scan_start + dt.timedelta(seconds=bed * a.frame_duration_s)
        ds = _new_instance(base, PositronEmissionTomographyImageStorage,
                           uid(seed_key, "nac" if nac else "pet", k))
        ds.Modality, ds.SeriesInstanceUID = "PT", series_uid
        ds.SeriesNumber = 5 if nac else 4
        ds.SeriesDescription = "PET WB NAC" if nac else "PET WB AC"
        ds.SeriesDate, ds.SeriesTime = _da(series_time), _tm(series_time)
        ds.AcquisitionDate, ds.AcquisitionTime = _da(acq_time), _tm(acq_time)
        ds.ContentDate, ds.ContentTime = _da(series_time), _tm(series_time)
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        del ds.PatientPosition  # PET: the orientation code sequences replace it
        ds.InstanceNumber = ds.ImageIndex = n + 1
        ds.Units, ds.CountsSource, ds.SeriesType = units, "EMISSION", ["WHOLE BODY", "IMAGE"]
        ds.NumberOfSlices = nz
        ds.CorrectedImage = ["DECY", "RAN", "DTIM", "NORM"] if nac else ["NORM", "DTIM", "ATTN", "SCAT", "DECY",
                                                                         "RAN"]
        ds.DecayCorrection, ds.RandomsCorrectionMethod = decay, "DLYD"
        ds.AttenuationCorrectionMethod = "" if nac else "CT-based"
        ds.ScatterCorrectionMethod = "" if nac else "Model-based"
        ds.ReconstructionMethod = "OSEM 3i10s PSF"
        ds.CollimatorType = "NONE"
        ds.RadiopharmaceuticalInformationSequence = _radiopharmaceutical(scan)
        ds.PatientOrientationCodeSequence = Sequence([_code("102538003", "SCT", "recumbent")])
        ds.PatientOrientationCodeSequence[0].PatientOrientationModifierCodeSequence = Sequence(
            [_code("40199007", "SCT", "supine")])
        ds.PatientGantryRelationshipCodeSequence = Sequence([_code("102540008", "SCT", "headfirst")])
        start_offset = (acq_time - a.scan_start).total_seconds()
        ds.FrameReferenceTime = f"{(start_offset + a.frame_duration_s / 2) * 1000:.1f}"
        ds.ActualFrameDuration = int(a.frame_duration_s * 1000)
        decay_ref = a.uptake_time_s if decay == "ADMIN" else 0.0
        ds.DecayFactor = f"{2 ** ((decay_ref + start_offset + a.frame_duration_s / 2) / GA68_HALF_LIFE_S):.6f}"
        ds.DoseCalibrationFactor = "1"
        ds.LossyImageCompression = "00"
        _store_slice(ds, values[k])
        _plane(ds, img, k)
        _vendor_private(ds, scan, vendor, units)
        path = folder / f"PT{n + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _store_slice(ds: Dataset, values: np.ndarray) -> None:
    """int16 storage with a per-slice RescaleSlope (as every vendor does for PET)."""
    peak = float(np.abs(values).max())
    slope = peak / 32000.0 if peak > 0 else 1.0
    ds.RescaleIntercept, ds.RescaleSlope = "0", f"{slope:.8g}"
    slope = float(ds.RescaleSlope)
    _image_pixels(ds, np.clip(np.round(values / slope), -32768, 32767).astype(np.int16))


def _vendor_private(ds: Dataset, scan: SimulatedTimepoint, vendor: str, units: str) -> None:
    a = scan.acquisition
    if vendor == "philips":
        block = ds.private_block(0x7053, "Philips PET Private Group", create=True)
        block.add_new(0x00, "DS", f"{a.suv_factor * PHILIPS_ACTIVITY_SCALE:.8g}")  # SUV Scale Factor
        block.add_new(0x09, "DS", f"{PHILIPS_ACTIVITY_SCALE:.8g}")  # Activity Concentration Scale Factor
    elif vendor == "ge":
        block = ds.private_block(0x0009, "GEMS_PETD_01", create=True)
        block.add_new(0x0D, "DT", a.scan_start.strftime("%Y%m%d%H%M%S.00"))  # scan datetime


def write_study(patient: SimulatedPatient, scan: SimulatedTimepoint, out_dir: Path, vendor: str,
                extras: bool = True) -> dict:
    """Write one time point's study; returns its UIDs and folders."""
    if vendor not in VENDORS:
        raise bad_option("vendor", vendor, "one of " + ", ".join(VENDORS))
    key = (patient.seed, vendor, scan.index)
    study_uid, for_uid = uid(key, "study"), uid(key, "for")
    ct_uid, pet_uid = uid(key, "ct-series"), uid(key, "pet-series")
    base = _base(patient, scan, vendor, study_uid, for_uid)
    folder = out_dir / f"{scan.acquisition.scan_start:%Y%m%d}_TP{scan.index}"
    written = {"study_instance_uid": study_uid, "frame_of_reference_uid": for_uid,
               "pet_series_instance_uid": pet_uid, "ct_series_instance_uid": ct_uid}
    if scan.ct is not None:
        write_ct(scan, base, folder / "CT", ct_uid, key)
    else:
        written["ct_series_instance_uid"] = None
    write_pet(scan, base, folder / "PET_AC", series_uid=pet_uid, vendor=vendor, seed_key=key)
    if extras:
        if scan.ct is not None:
            write_localizer(scan, base, folder / "TOPOGRAM", key)
        if scan.nac_pet is not None:
            write_pet(scan, base, folder / "PET_NAC", series_uid=uid(key, "nac-series"), vendor=vendor,
                      seed_key=key, image=scan.nac_pet, nac=True)
    written["folder"] = str(folder)
    return written
