"""One scan, other encodings: legacy-converted enhanced multi-frame PET and CT (highdicom.legacy), an Enhanced PET
stating its units and corrections the enhanced way, and every compressed transfer syntax (dcmtk, pydicom's
encoders) give the same SUV images, SUV factors, ROIs and analysis as the classic series they were made from."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from conftest import require_tool
from dicom_factory import copy_series, phantom_series
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from LesionResponseLib.analysis.quantify import measure_rois
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.dicomio import find_timepoints, load_timepoint
from LesionResponseLib.segmentation import segment
from LesionResponseLib.workflow import run_pipeline

SLAB = {"axial_extent_mm": 160}
KEEP = slice(14, 28)  # 14 slices of 4 mm through the liver: enough for the compressed-syntax checks


def _legacy(files: list[Path], dest: Path, modality: str) -> Path:
    """One Legacy Converted Enhanced PET or CT file made by highdicom from the classic ``files``."""
    import highdicom as hd
    from highdicom.legacy import LegacyConvertedEnhancedCTImage, LegacyConvertedEnhancedPETImage

    cls = LegacyConvertedEnhancedPETImage if modality == "PT" else LegacyConvertedEnhancedCTImage
    datasets = [pydicom.dcmread(f) for f in files]
    image = cls(datasets, series_instance_uid=hd.UID(), series_number=int(datasets[0].SeriesNumber) + 100,
                sop_instance_uid=hd.UID(), instance_number=1)
    dest.mkdir(parents=True, exist_ok=True)
    image.save_as(dest / f"{modality}.dcm", enforce_file_format=True)
    return dest / f"{modality}.dcm"


def _multiframe_study(phantom: Path, dest: Path) -> Path:
    for k in (0, 1):
        _legacy(phantom_series(phantom, k), dest / f"TP{k}" / "PET", "PT")
        _legacy(phantom_series(phantom, k, "CT"), dest / f"TP{k}" / "CT", "CT")
    return dest


@pytest.fixture(scope="module")
def multiframe(make_phantom, tmp_path_factory):
    """(phantom, its classic DICOM folder, the same scans as legacy-converted multi-frame PET + CT)."""
    phantom = make_phantom(seed=2, timepoints=2, **SLAB)
    return phantom, phantom / "dicom", _multiframe_study(phantom, tmp_path_factory.mktemp("multiframe"))


def test_legacy_converted_pet_and_ct_load_as_the_classic_series(multiframe):
    _, classic, converted = multiframe
    for ours, theirs in zip(find_timepoints(converted).timepoints, find_timepoints(classic).timepoints, strict=True):
        assert len(ours.pet_files) == len(ours.ct_files) == 1
        assert (ours.suv_factor, ours.suv_method, ours.uptake_time_s, ours.radiopharmaceutical) == \
            (theirs.suv_factor, theirs.suv_method, theirs.uptake_time_s, theirs.radiopharmaceutical)
        a, b = load_timepoint(ours), load_timepoint(theirs)
        for image, reference in ((a.pet_suv, b.pet_suv), (a.ct, b.ct)):
            assert image.GetSize() == reference.GetSize() and image.GetOrigin() == reference.GetOrigin()
            assert image.GetSpacing() == reference.GetSpacing() and image.GetPixelID() == reference.GetPixelID()
            np.testing.assert_allclose(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(reference),
                                       rtol=1e-6, atol=1e-6)


def test_legacy_converted_series_give_the_same_analysis(multiframe, tmp_path):
    phantom, classic, converted = multiframe
    params = AnalysisParameters().updated({"registration.method": "identity", "prior_search.enabled": False})
    ours, _ = run_pipeline(converted, tmp_path / "converted", params, labels_dir=phantom / "truth")
    theirs, _ = run_pipeline(classic, tmp_path / "classic", params, labels_dir=phantom / "truth")
    assert len(ours.rois) == len(theirs.rois) > 10
    for a, b in zip(ours.rois, theirs.rois, strict=True):  # float32 sums in another order: 1e-9 apart
        assert (a.roi_id, a.n_voxels) == (b.roi_id, b.n_voxels)
        assert (a.suv_max, a.suv_mean, a.suv_peak, a.suv_total, a.suv_total_pvc, a.volume_ml) == pytest.approx(
            (b.suv_max, b.suv_mean, b.suv_peak, b.suv_total, b.suv_total_pvc, b.volume_ml), rel=1e-6)
    assert [(r.track_id, r.categories, r.pattern) for r in ours.responses] == \
        [(r.track_id, r.categories, r.pattern) for r in theirs.responses]
    assert ours.heterogeneous == theirs.heterogeneous
    from LesionResponseLib.report import export_dicom

    seg = pydicom.dcmread(export_dicom(tmp_path / "converted", tmp_path / "export")[0])  # SEG of a multi-frame PET
    assert seg.Modality == "SEG" and int(seg.NumberOfFrames) > 0


def _as_enhanced_pet(path: Path, dest: Path) -> Path:
    """The legacy-converted PET of ``path`` stated as a true Enhanced PET states it (PS3.3 C.8.22): SOP class
    Enhanced PET, Units as a Real World Value Mapping in UCUM, AttenuationCorrected/DecayCorrected YES and
    DecayCorrectionDateTime instead of Units, CorrectedImage and DecayCorrection (START at SeriesTime)."""
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.130"
    shared = ds.SharedFunctionalGroupsSequence[0]
    unassigned = shared.UnassignedSharedConvertedAttributesSequence[0]
    reference = f"{ds.SeriesDate}{ds.SeriesTime}"
    for keyword in ("Units", "CorrectedImage", "DecayCorrection"):
        delattr(unassigned, keyword)
    ds.AttenuationCorrected, ds.DecayCorrected = "YES", "YES"
    units, mapping, correction = Dataset(), Dataset(), Dataset()
    units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = "Bq/ml", "UCUM", "Becquerels/milliliter"
    mapping.MeasurementUnitsCodeSequence = Sequence([units])
    mapping.RealWorldValueSlope, mapping.RealWorldValueIntercept = 1.0, 0.0
    correction.DecayCorrectionDateTime = reference
    shared.RealWorldValueMappingSequence = Sequence([mapping])
    shared.PETFrameCorrectionFactorsSequence = Sequence([correction])
    dest.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest / path.name, enforce_file_format=True)
    return dest / path.name


def test_enhanced_pet_units_and_corrections_give_the_classic_suv(multiframe, tmp_path):
    _, classic, converted = multiframe
    _as_enhanced_pet(converted / "TP0" / "PET" / "PT.dcm", tmp_path / "PET")
    ours = find_timepoints(tmp_path).timepoints[0]
    theirs = find_timepoints(classic).timepoints[0]
    assert (ours.suv_factor, ours.suv_method, ours.suv_reference_time_source) == \
        (theirs.suv_factor, theirs.suv_method, theirs.suv_reference_time_source)
    np.testing.assert_allclose(sitk.GetArrayFromImage(load_timepoint(ours).pet_suv),
                               sitk.GetArrayFromImage(load_timepoint(theirs, with_ct=False).pet_suv), rtol=1e-6)


# ------------------------------------------------------------------------------------------------ compression
def _dcmtk(tool: str, *options: str):
    def compress(source: Path, target: Path) -> None:
        subprocess.run([require_tool(tool), *options, str(source), str(target)], check=True, capture_output=True)
    return compress


def _pydicom(syntax: str):
    def compress(source: Path, target: Path) -> None:
        ds = pydicom.dcmread(source)
        ds.compress(syntax)  # pydicom's encoder (JPEG 2000: pylibjpeg-openjpeg)
        ds.save_as(target, enforce_file_format=True)
    return compress


SYNTAXES = {
    "JPEG lossless SV1 (dcmcjpeg)": ("1.2.840.10008.1.2.4.70", _dcmtk("dcmcjpeg", "+e1")),
    "JPEG-LS lossless (dcmcjpls)": ("1.2.840.10008.1.2.4.80", _dcmtk("dcmcjpls")),
    "RLE lossless (dcmcrle)": ("1.2.840.10008.1.2.5", _dcmtk("dcmcrle")),
    "JPEG 2000 lossless (pydicom)": ("1.2.840.10008.1.2.4.90", _pydicom("1.2.840.10008.1.2.4.90")),
    "deflated explicit VR (dcmconv)": ("1.2.840.10008.1.2.1.99", _dcmtk("dcmconv", "+td")),
}


@pytest.fixture(scope="module")
def few_slices(make_phantom, tmp_path_factory):
    """14 slices of phantom TP0's PET and CT (uncompressed), their SUV/HU images and threshold ROIs."""
    phantom = make_phantom(seed=2, timepoints=2, **SLAB)
    root = tmp_path_factory.mktemp("few-slices") / "plain"
    copy_series(phantom_series(phantom, 0), root / "PET", keep=KEEP)
    copy_series(phantom_series(phantom, 0, "CT"), root / "CT", keep=KEEP)
    loaded = load_timepoint(find_timepoints(root).timepoints[0])
    return root, loaded, _rois(loaded)


def _rois(loaded) -> list[dict]:
    labels = segment(loaded.pet_suv, method="threshold")
    return [r.to_dict() for r in measure_rois(labels, loaded.pet_suv, 0)]


@pytest.mark.parametrize("name", SYNTAXES)
def test_each_compressed_syntax_gives_the_same_images_and_rois(few_slices, tmp_path, name):
    plain, reference, rois = few_slices
    syntax, compress = SYNTAXES[name]
    for source in plain.rglob("*.dcm"):
        target = tmp_path / source.relative_to(plain)
        target.parent.mkdir(parents=True, exist_ok=True)
        compress(source, target)
    assert {str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID)
            for f in tmp_path.rglob("*.dcm")} == {syntax}
    loaded = load_timepoint(find_timepoints(tmp_path).timepoints[0])
    for ours, theirs in ((loaded.pet_suv, reference.pet_suv), (loaded.ct, reference.ct)):
        assert np.array_equal(sitk.GetArrayViewFromImage(ours), sitk.GetArrayViewFromImage(theirs))  # lossless
    assert rois and _rois(loaded) == rois
    shutil.rmtree(tmp_path, ignore_errors=True)
