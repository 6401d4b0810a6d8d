"""Reference contours made from known masks, as a site's systems write them: RTSTRUCT (pydicom; closed planar
contours, e.g. a sphere's circle per CT slice) and DICOM SEG (highdicom, on the frames of a source series)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


def sphere_contours(centre_mm, radius_mm: float, z_levels, vertices: int = 72) -> list[np.ndarray]:
    """A sphere's closed planar contours: its circular section on each axial plane of ``z_levels`` it crosses."""
    contours = []
    for z in z_levels:
        dz = float(z) - centre_mm[2]
        if abs(dz) >= radius_mm:
            continue
        r = np.sqrt(radius_mm**2 - dz**2)
        angle = np.linspace(0.0, 2.0 * np.pi, vertices, endpoint=False)
        contours.append(np.stack([centre_mm[0] + r * np.cos(angle), centre_mm[1] + r * np.sin(angle),
                                  np.full(vertices, float(z))], axis=1))
    return contours


def box_contours(low_mm, high_mm, z_levels) -> list[np.ndarray]:
    """An axis-aligned box's rectangle on each plane of ``z_levels`` within [low z, high z]."""
    (x0, y0, z0), (x1, y1, z1) = low_mm, high_mm
    return [np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], float)
            for z in z_levels if z0 <= z <= z1]


def write_rtstruct(path: Path, structures: dict[str, list[np.ndarray]], *, frame_uid: str, series_uid: str,
                   study_uid: str, patient_id: str = "P1", kinds: dict[str, str] | None = None) -> Path:
    """A minimal RT Structure Set (PS3.3 A.19) referencing ``series_uid`` in ``frame_uid``: one ROI per structure
    (numbered from 1), its contours CLOSED_PLANAR; ``kinds``: RT ROI Interpreted Type per name (default GTV)."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_SOP_CLASS, generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.Modality, ds.PatientID, ds.PatientName = "RTSTRUCT", patient_id, "Test^Reference"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.StructureSetLabel, ds.StructureSetDate, ds.StructureSetTime = "reference", "20250101", "120000"
    series = Dataset()
    series.SeriesInstanceUID = series_uid
    series.ContourImageSequence = Sequence()
    study = Dataset()
    study.ReferencedSOPClassUID, study.ReferencedSOPInstanceUID = "1.2.840.10008.3.1.2.3.1", study_uid
    study.RTReferencedSeriesSequence = Sequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = frame_uid
    frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = Sequence(), Sequence(), Sequence()
    for number, (name, contours) in enumerate(structures.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = number, frame_uid, name
        roi.ROIGenerationAlgorithm = "MANUAL"
        ds.StructureSetROISequence.append(roi)
        item = Dataset()
        item.ReferencedROINumber, item.ROIDisplayColor = number, [255, 0, 0]
        item.ContourSequence = Sequence()
        for contour in contours:
            c = Dataset()
            c.ContourGeometricType, c.NumberOfContourPoints = "CLOSED_PLANAR", len(contour)
            c.ContourData = [f"{v:.4f}" for v in np.asarray(contour, float).ravel()]
            item.ContourSequence.append(c)
        ds.ROIContourSequence.append(item)
        observation = Dataset()
        observation.ObservationNumber, observation.ReferencedROINumber = number, number
        observation.RTROIInterpretedType = (kinds or {}).get(name, "GTV")
        observation.ROIInterpreter = ""
        ds.RTROIObservationsSequence.append(observation)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_seg(path: Path, source_files: list[Path], masks: dict[str, np.ndarray]) -> Path:
    """A binary DICOM SEG (highdicom) on the frames of ``source_files`` (one series, sorted as SimpleITK reads
    it: ``masks`` are (z, y, x) arrays on that image), one segment per name."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    reader = sitk.ImageSeriesReader()
    ordered = reader.GetGDCMSeriesFileNames(str(source_files[0].parent),
                                            pydicom.dcmread(source_files[0], stop_before_pixels=True).SeriesInstanceUID)
    sources = [pydicom.dcmread(f) for f in ordered]
    descriptions = [hd.seg.SegmentDescription(
        segment_number=i, segment_label=name, segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for i, name in enumerate(masks, start=1)]
    stacked = np.stack([np.asarray(m, bool) for m in masks.values()], axis=-1).astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=stacked, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=300, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="test", manufacturer_model_name="reference_factory", software_versions="1",
        device_serial_number="1")
    seg.save_as(path)
    return path
