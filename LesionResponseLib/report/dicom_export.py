"""DICOM export per time point: a SEG of the accepted lesion-ROIs and a TID 1500 SR of their measurements.

Both reference the source PET series listed in ``analysis.json`` (``timepoints[].pet_files``). Every track gets
one Tracking Unique Identifier, derived from patient id + track id, so the same lesion carries the same UID
in the SEG segments and SR measurement groups of every time point.

Each lesion's group also holds its site as a Finding Site (SNOMED CT, :data:`SITE_CODES`), its SUVmax relative to
the liver and spleen reference regions and its Krenning-like grade (``analysis.burden``). Patient-level groups
(TID 1501, no image region) hold the tumour burden - lesion count, SSTR-expressing tumour volume, total lesion
uptake (Σ SUVtotal and Σ PV-corrected SUVtotal) and their change from baseline - for the whole body (Finding
Site "Entire body") and per site, and one group per placed reference region its SUVmean, SD and volume (Finding
Site liver or spleen). Their tracking UIDs are derived from patient id + what they measure, so they too are the
same at every time point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from LesionResponseLib import __version__
from LesionResponseLib.datamodel import LesionROI, ReferenceRegion
from LesionResponseLib.errors import describe
from LesionResponseLib.report.data import ReportData, ReportInputError, load_labels, load_report_data

MANUFACTURER = "LesionResponse"
UID_NAMESPACE = "LesionResponse/track"  # entropy prefix of the track tracking UIDs
SEG_SERIES_NUMBER, SR_SERIES_NUMBER = 9001, 9002  # high numbers: stay clear of scanner series
PRIVATE_SCHEME = "99LESRESP"  # local coding scheme for what no standard code names (ΔSUVtotal categories)


def track_uid(patient_id: str, track_id: int) -> str:
    """Deterministic Tracking Unique Identifier of a track (same value at every time point and export)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[UID_NAMESPACE, patient_id, str(track_id)]))


def _derived_uid(*parts: str) -> str:
    """Deterministic UID for an exported object (re-export replaces rather than duplicates in a PACS)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["LesionResponse/export", *parts]))


def load_source_pet(files: list[str], timepoint: int) -> list[Any]:
    """The PET datasets of one time point, with pixel data (SEG needs geometry; sorted by file name)."""
    import pydicom

    missing = [f for f in files if not Path(f).exists()]
    if not files or missing:
        raise ReportInputError(describe(f"time point {timepoint}: {len(missing) or 'no'} source PET file(s) missing",
                                        path=missing[0] if missing else None,
                                        fix="Export needs the original PET DICOM; keep it where analysis.json "
                                            "says (timepoints[].pet_files) or re-run the analysis."))
    return [_complete_type2(pydicom.dcmread(f)) for f in sorted(files)]


TYPE2_STUDY_PATIENT = ("PatientName", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
                       "AccessionNumber", "ReferringPhysicianName")


def _complete_type2(ds: Any) -> Any:
    """Add empty Type 2 patient/study attributes some exporters omit (the SEG/SR copy them; in memory only)."""
    for keyword in TYPE2_STUDY_PATIENT:
        if keyword not in ds:
            setattr(ds, keyword, "")
    return ds


def _frames(labels: sitk.Image, sources: list[Any]) -> np.ndarray:
    """Label values per source PET slice: (n_slices, rows, cols) taken from the label map (a multi-frame source
    contributes one slice per frame, at its Plane Position)."""
    from LesionResponseLib.dicomio.frames import frame_headers

    array = sitk.GetArrayFromImage(labels)
    planes = [frame for ds in sources for frame in frame_headers(ds)]
    frames = np.zeros((len(planes), int(sources[0].Rows), int(sources[0].Columns)), dtype=array.dtype)
    for i, ds in enumerate(planes):
        index = labels.TransformPhysicalPointToIndex([float(v) for v in ds.ImagePositionPatient])
        if not 0 <= index[2] < array.shape[0] or array.shape[1:] != frames.shape[1:]:
            raise ReportInputError(describe(
                f"PET slice not on the label map grid (label map {tuple(array.shape)} z,y,x)",
                path=getattr(ds, "filename", None),
                fix="The analysis writes labels/tp{k}.nii.gz on the PET grid; re-run it for these files."))
        frames[i] = array[index[2]]
    return frames


def _segment_descriptions(data: ReportData, rois: list[LesionROI]) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(name="LesionResponse", version=__version__,
                                                   family=codes.DCM.ArtificialIntelligence)
    descriptions = []
    for number, roi in enumerate(rois, start=1):
        track = data.roi_track.get(roi.roi_id, -1)
        manual = roi.source == "reader"
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=f"track {track} {roi.roi_id}"[:64],
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type="MANUAL" if manual else "AUTOMATIC",
            algorithm_identification=None if manual else algorithm,
            tracking_uid=track_uid(data.analysis.patient_id, track), tracking_id=f"track {track}"))
    return descriptions


def build_seg(data: ReportData, timepoint: int, sources: list[Any]) -> Any:
    """highdicom SEG (BINARY, one segment per accepted ROI, numbered 1..N in label order)."""
    import highdicom as hd

    rois = data.accepted_rois(timepoint)
    if not rois:
        return None
    frames = _frames(load_labels(data.out_dir, timepoint), sources)
    segment_map = np.zeros_like(frames, dtype=np.uint16)
    for number, roi in enumerate(rois, start=1):
        segment_map[frames == roi.label] = number
    patient = data.analysis.patient_id
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=segment_map, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segment_descriptions(data, rois),
        series_instance_uid=_derived_uid(patient, str(timepoint), "seg-series"), series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=_derived_uid(patient, str(timepoint), "seg"), instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name="LesionResponse", software_versions=__version__,
        device_serial_number="0", content_label="LESIONS", content_description="Lesion-ROIs by track",
        series_description=f"LesionResponse lesion-ROIs TP{timepoint}")


def _concepts() -> dict[str, Any]:
    """Codes and UCUM units of the SR measurements.

    SUVtotal is SUVbw summed over the ROI volume (SUVmean × volume): concept SUVbw with derivation
    SCT "Total" and UCUM unit ``{SUVbw}g/ml.ml`` (SUV·mL), the unit the CSV and report show — it keeps the
    volume factor visible, where the equivalent ``{SUVbw}g`` would read like a mass. The partial-volume-corrected
    SUVtotal (``rois.csv`` ``suv_total_pvc``) has a private derivation code, and the change from the reference
    is coded by the measure that drove the categories (``AnalysisParameters.response.measure``).
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    code = hd.sr.CodedConcept
    return {
        "suv": code("126401", "DCM", "SUVbw"),
        "suv_unit": code("{SUVbw}g/ml", "UCUM", "Standardized Uptake Value body weight"),
        "suv_ml_unit": code("{SUVbw}g/ml.ml", "UCUM", "SUVbw times milliliter"),
        "ml": code("ml", "UCUM", "milliliter"), "percent": code("%", "UCUM", "percent"),
        "volume": codes.SCT.Volume, "max": codes.SCT.Maximum, "mean": codes.SCT.Mean,
        "peak": codes.DCM.PeakValueWithinROI, "total": codes.SCT.Total,
        "delta": code("DSUVTOT", PRIVATE_SCHEME, "Change of SUVtotal from reference"),
        "delta_pvc": code("DSUVTOTPVC", PRIVATE_SCHEME, "Change of partial-volume-corrected SUVtotal from reference"),
        "total_pvc": code("PVCTOTAL", PRIVATE_SCHEME, "Partial-volume-corrected total"),
        "category": code("RESPCAT", PRIVATE_SCHEME, "Lesion-ROI response category"),
        "confidence": code("RESPCONF", PRIVATE_SCHEME, "Response category confidence"),
        "probability": code("CATPROB", PRIVATE_SCHEME, "Probability that the true change lies in the category"),
        "procedure": code("44139-4", "LN", "PET whole body"),
        "tracer_override": code("TRACEROVR", PRIVATE_SCHEME, "Analysed although not somatostatin-receptor PET"),
        "evaluations": code("C0034375", "UMLS", "Qualitative Evaluations"),
        **_burden_concepts(),
    }


def _uncertainty(low: float | None, high: float | None) -> Any:
    """TID 310 measurement properties holding how far below and above the value the uncertainty reaches."""
    import highdicom as hd

    if low is None or high is None:
        return None
    return hd.sr.MeasurementProperties(lower_measurement_uncertainty=max(low, 0.0),
                                       upper_measurement_uncertainty=max(high, 0.0))


def site_codes() -> dict[str, Any]:
    """SNOMED CT codes of the lesion sites (``datamodel.LESION_SITES``) and reference organs, for Finding Site."""
    from pydicom.sr.codedict import codes

    return {"liver": codes.SCT.Liver, "bone": codes.SCT.Bone, "lymph node": codes.SCT.LymphNode,
            "pancreas": codes.SCT.Pancreas, "lung": codes.SCT.Lung, "peritoneum/other": codes.SCT.PeritonealCavity,
            "spleen": codes.SCT.Spleen}


def _burden_concepts() -> dict[str, Any]:
    """Codes of the patient-level and reference-region measurements (private where no standard code names it); part
    of :func:`_concepts`, built once per SR."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    code = hd.sr.CodedConcept
    return {"tumour": codes.SCT.Neoplasm, "entire_body": codes.SCT.EntireBody, "count": codes.SCT.NumberOfLesions,
            "count_unit": code("{lesions}", "UCUM", "lesions"), "sd": codes.SCT.StandardDeviation,
            "ratio_unit": code("1", "UCUM", "no units"), "difference_unit": code("{lesions}", "UCUM", "lesions"),
            "reference": code("REFREGION", PRIVATE_SCHEME, "Reference region of normal uptake"),
            "to_liver": code("SUVMAXLIV", PRIVATE_SCHEME, "SUVmax to liver reference SUVmean ratio"),
            "to_spleen": code("SUVMAXSPL", PRIVATE_SCHEME, "SUVmax to spleen reference SUVmean ratio"),
            "grade": code("KRENNLIKE", PRIVATE_SCHEME, "Krenning-like grade"),
            "volume_change": code("DVOLUME", PRIVATE_SCHEME, "Change of tumour volume from baseline"),
            "total_change": code("DTOTAL", PRIVATE_SCHEME, "Change of total lesion uptake from baseline"),
            "total_pvc_change": code("DTOTALPVC", PRIVATE_SCHEME, "Change of PV-corrected total lesion uptake from baseline"),
            "count_change": code("DCOUNT", PRIVATE_SCHEME, "Change of lesion count from baseline")}


def _measurements(roi: LesionROI, delta_pct: float | None, c: dict[str, Any], measure: str,
                  interval: list[float] | None = None, probability: float | None = None) -> list[Any]:
    """The ROI's measurements; SUVtotal and its corrected value carry ± one SD (``LesionROI.suv_total_sd``), the
    change its interval (``interval``, at ``response.interval_level``) as lower/upper measurement uncertainty."""
    import highdicom as hd

    m = hd.sr.Measurement
    items = [m(c["suv"], roi.suv_max, c["suv_unit"], derivation=c["max"]),
             m(c["suv"], roi.suv_mean, c["suv_unit"], derivation=c["mean"]),
             m(c["suv"], roi.suv_peak, c["suv_unit"], derivation=c["peak"]),
             m(c["volume"], roi.volume_ml, c["ml"]),
             m(c["suv"], roi.suv_total, c["suv_ml_unit"], derivation=c["total"],
               properties=_uncertainty(roi.suv_total_sd, roi.suv_total_sd))]
    if roi.suv_total_pvc is not None:
        items.append(m(c["suv"], roi.suv_total_pvc, c["suv_ml_unit"], derivation=c["total_pvc"],
                       properties=_uncertainty(roi.suv_total_pvc_sd, roi.suv_total_pvc_sd)))
    if delta_pct is not None:
        spread = (delta_pct - interval[0], interval[1] - delta_pct) if interval else (None, None)
        items.append(m(c["delta_pvc" if measure == "suv_total_pvc" else "delta"], delta_pct, c["percent"],
                       properties=_uncertainty(*spread)))
    if probability is not None:
        items.append(m(c["probability"], 100.0 * probability, c["percent"]))
    return items


def _confidence(indeterminate: bool, c: dict[str, Any]) -> Any:
    """The category's confidence: ``indeterminate`` when its change's interval holds a threshold."""
    import highdicom as hd

    value = "INDETERMINATE" if indeterminate else "CONFIDENT"
    return hd.sr.QualitativeEvaluation(c["confidence"], hd.sr.CodedConcept(value, PRIVATE_SCHEME, value.lower()))


def _category(name: str, c: dict[str, Any]) -> Any:
    import highdicom as hd

    value = hd.sr.CodedConcept(name.upper()[:16], PRIVATE_SCHEME, name)
    return hd.sr.QualitativeEvaluation(c["category"], value)


def _tracking(data: ReportData, track: int) -> Any:
    import highdicom as hd

    return hd.sr.TrackingIdentifier(uid=track_uid(data.analysis.patient_id, track), identifier=f"track {track}")


def _ratio_items(ratios: dict[str, Any], c: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """A lesion's ratios to the reference regions (measurements) and its Krenning-like grade (evaluation)."""
    import highdicom as hd

    items = [hd.sr.Measurement(c[name], ratios[f"suv_max_{name}"], c["ratio_unit"])
             for name in ("to_liver", "to_spleen") if ratios[f"suv_max_{name}"] is not None]
    grade = ratios["krenning_grade"].replace("≤", "<=").replace("≥", ">=")  # the SR's character set is Latin-1
    evaluations = [hd.sr.QualitativeEvaluation(c["grade"], hd.sr.CodedConcept(
        f"KG{grade.replace('<=', 'LE').replace('>=', 'GE')}", PRIVATE_SCHEME, f"Krenning-like grade {grade}"))] \
        if grade else []
    return items, evaluations


def _finding_sites(site: str) -> list[Any] | None:
    import highdicom as hd

    code = site_codes().get(site)
    return [hd.sr.FindingSite(anatomic_location=code)] if code is not None else None


def _tracer_evaluations(data: ReportData, timepoint: int, c: dict[str, Any]) -> Any:
    """TID 1500's report-level "Qualitative Evaluations" container: the radiopharmaceutical from the PET headers
    (DCM 'Radiopharmaceutical' = its CID 4021 code, or a local code holding the name the headers give) and whether
    it was analysed although not SSTR PET."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from LesionResponseLib.dicomio.tracer import tracer_code

    info = data.analysis.timepoints[timepoint]
    name = info.radiopharmaceutical or f"not named ({info.radionuclide or 'nuclide unknown'})"
    value = tracer_code(info.radiopharmaceutical) or ("TRACER", PRIVATE_SCHEME, name[:64])
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    items = [hd.sr.CodeContentItem(codes.DCM.Radiopharmaceutical, hd.sr.CodedConcept(*value), contains)]
    if info.tracer_override:
        items.append(hd.sr.CodeContentItem(c["tracer_override"], codes.SCT.Yes, contains))
    container = hd.sr.ContainerContentItem(c["evaluations"], relationship_type=contains)
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def _groups(data: ReportData, timepoint: int, seg: Any, c: dict[str, Any]) -> list[Any]:
    """One volumetric group per accepted ROI, one group per track that disappeared at this time point, then the
    patient-level burden groups and the reference regions' groups."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from LesionResponseLib.analysis.burden import lesion_ratios

    context = hd.sr.TimePointContext(time_point=f"TP{timepoint}", time_point_order=timepoint + 1,
                                     subject_time_point_identifier=str(timepoint))
    responses = {r.track_id: r for r in data.analysis.responses}
    ratios = lesion_ratios(data.analysis)
    groups = []
    for number, roi in enumerate(data.accepted_rois(timepoint), start=1):
        track = data.roi_track.get(roi.roi_id, -1)
        response = responses.get(track)
        delta = response.delta_suv_total_pct.get(timepoint) if response else None
        interval = response.delta_interval_pct.get(timepoint) if response else None
        probability = response.category_confidence.get(timepoint) if response else None
        category = data.roi_category.get(roi.roi_id, "")  # empty: ROI outside any assessed track
        ratio_items, grade = _ratio_items(ratios[roi.roi_id], c)
        evaluations = [_category(category, c)] if category else []
        if category and interval is not None:
            evaluations.append(_confidence(bool(response.indeterminate.get(timepoint)), c))
        evaluations += grade
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(data, track), finding_type=codes.SCT.Lesion,
            referenced_segment=hd.sr.ReferencedSegment.from_segmentation(seg, number), time_point_context=context,
            finding_sites=_finding_sites(roi.site),
            measurements=_measurements(roi, delta, c, data.analysis.parameters.response.measure, interval,
                                       probability) + ratio_items,
            qualitative_evaluations=evaluations or None))
    for response in sorted(data.analysis.responses, key=lambda r: r.track_id):
        if response.categories.get(timepoint) == "disappearing":
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=_tracking(data, response.track_id), finding_type=codes.SCT.Lesion,
                time_point_context=context, qualitative_evaluations=[_category("disappearing", c)]))
    return groups + _burden_groups(data, timepoint, context, c) + [
        _reference_group(data, region, context, c) for region in data.analysis.reference_regions
        if region.timepoint == timepoint and region.placed]


def _burden_groups(data: ReportData, timepoint: int, context: Any, c: dict[str, Any]) -> list[Any]:
    """Patient-level groups: the burden of this time point over the whole body, then per site (module docstring)."""
    import highdicom as hd

    from LesionResponseLib.analysis.burden import burden_rows

    m = hd.sr.Measurement
    groups = []
    for row in (r for r in burden_rows(data.analysis) if r["timepoint"] == timepoint):
        sites = [hd.sr.FindingSite(anatomic_location=c["entire_body"])] if row["site"] == "all" \
            else _finding_sites(row["site"])
        if sites is None:  # site undetermined: counted in the whole-body group only
            continue
        items = [m(c["count"], row["n_rois"], c["count_unit"]), m(c["volume"], row["volume_ml"], c["ml"]),
                 m(c["suv"], row["suv_total"], c["suv_ml_unit"], derivation=c["total"]),
                 m(c["suv"], row["suv_total_pvc"], c["suv_ml_unit"], derivation=c["total_pvc"])]
        if timepoint:
            items.append(m(c["count_change"], row["n_rois_change"], c["difference_unit"]))
            items += [m(c[name], row[column], c["percent"]) for name, column in (
                ("volume_change", "volume_ml_change_pct"), ("total_change", "suv_total_change_pct"),
                ("total_pvc_change", "suv_total_pvc_change_pct")) if row[column] is not None]
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=_derived_uid(data.analysis.patient_id, "burden", row["site"]),
                identifier=f"tumour burden: {'whole body' if row['site'] == 'all' else row['site']}"),
            finding_type=c["tumour"], finding_sites=sites, time_point_context=context, measurements=items))
    return groups


def _reference_group(data: ReportData, region: ReferenceRegion, context: Any, c: dict[str, Any]) -> Any:
    """The group of a placed reference region: SUVmean, SD and volume, Finding Site its organ."""
    import highdicom as hd

    m = hd.sr.Measurement
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=_derived_uid(data.analysis.patient_id, "reference", region.organ),
            identifier=f"{region.organ} reference region ({region.source})"),
        finding_type=c["reference"], finding_sites=_finding_sites(region.organ), time_point_context=context,
        measurements=[m(c["suv"], region.suv_mean, c["suv_unit"], derivation=c["mean"]),
                      m(c["suv"], region.suv_sd, c["suv_unit"], derivation=c["sd"]),
                      m(c["volume"], region.volume_ml, c["ml"])])


def build_sr(data: ReportData, timepoint: int, sources: list[Any], seg: Any) -> Any:
    """highdicom Comprehensive 3D SR holding a TID 1500 Measurement Report for one time point."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    c = _concepts()
    patient = data.analysis.patient_id
    device = hd.sr.ObserverContext(codes.DCM.Device, hd.sr.DeviceObserverIdentifyingAttributes(
        uid=_derived_uid("device"), name="LesionResponse", manufacturer_name=MANUFACTURER))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=c["procedure"], imaging_measurements=_groups(data, timepoint, seg, c))
    report[0].ContentSequence.append(_tracer_evaluations(data, timepoint, c))
    return hd.sr.Comprehensive3DSR(
        evidence=[*sources, seg], content=report, series_instance_uid=_derived_uid(patient, str(timepoint), "sr-s"),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=_derived_uid(patient, str(timepoint), "sr"),
        instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        series_description=f"LesionResponse measurements TP{timepoint}")


def export_dicom(out_dir: str | Path, dest_dir: str | Path) -> list[Path]:
    """Write ``TP{k}_SEG.dcm`` and ``TP{k}_SR.dcm`` per time point with accepted ROIs into ``dest_dir``."""
    data = load_report_data(out_dir)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for info in data.analysis.timepoints:
        sources = load_source_pet(info.pet_files, info.index)
        seg = build_seg(data, info.index, sources)
        if seg is None:
            continue
        for name, dataset in (("SEG", seg), ("SR", build_sr(data, info.index, sources, seg))):
            path = dest / f"TP{info.index}_{name}.dcm"
            dataset.save_as(path, enforce_file_format=True)
            written.append(path)
    return written
