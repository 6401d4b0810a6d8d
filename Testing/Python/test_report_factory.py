"""A hand-built analysis output folder (docs/DOMAIN.md §8) for the report tests: tiny PET DICOM + labels + CSVs.

Three time points, 32×32×20 voxels of 4 mm; four tracks with known categories:
track 1 decreasing then decreasing, track 2 stable, track 3 disappearing at TP1, track 4 new at TP1 and
increasing at TP2 (so the patient is heterogeneous at TP1 and TP2). Each track's lesion has a site
(:data:`SITES`); the liver reference region is placed at every time point, the spleen's at TP0 and TP1 only
(:data:`REFERENCES`).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from dicom_factory import expected_suv_factor, write_series

from LesionResponseLib.datamodel import (
    Analysis,
    AnalysisParameters,
    LesionROI,
    ReferenceRegion,
    TimePointInfo,
    Track,
    TrackResponse,
    roi_id_for,
)

SHAPE = (20, 32, 32)  # z, y, x
SPACING = 4.0  # mm
ORIGIN_Z = -4.0 * (SHAPE[0] - 1)  # DICOM slices at z = 0, -4, ..., the label grid starts at the lowest
VOXEL_ML = SPACING**3 / 1000
DOSE, WEIGHT, UPTAKE = 150e6, 70.0, 3600.0
# track -> {timepoint: (centre zyx, radius voxels, SUV)}
LESIONS = {
    1: {0: ((10, 10, 10), 3, 20.0), 1: ((10, 10, 10), 2, 12.0), 2: ((10, 10, 10), 1, 8.0)},
    2: {0: ((6, 20, 22), 2, 10.0), 1: ((6, 20, 22), 2, 10.5), 2: ((6, 20, 22), 2, 9.8)},
    3: {0: ((15, 24, 8), 2, 15.0)},
    4: {1: ((14, 8, 24), 1, 9.0), 2: ((14, 8, 24), 2, 14.0)},
}
CATEGORIES = {1: {1: "decreasing", 2: "decreasing"}, 2: {1: "stable", 2: "stable"},
              3: {1: "disappearing", 2: "absent"}, 4: {1: "new", 2: "increasing"}}
SITES = {1: "liver", 2: "bone", 3: "lymph node", 4: "pancreas"}
# (time point, organ) -> reference SUVmean; the spleen's at TP2 is not placed
REFERENCES = {(0, "liver"): 4.0, (0, "spleen"): 16.0, (1, "liver"): 5.0, (1, "spleen"): 10.0, (2, "liver"): 4.0}


def _ball(centre: tuple[int, int, int], radius: int) -> np.ndarray:
    z, y, x = np.indices(SHAPE)
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def _image(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((SPACING,) * 3)
    image.SetOrigin((0.0, 0.0, ORIGIN_Z))
    return image


#: Relative SD of each track's SUVtotal: track 2's measure is noisy enough that its stable calls are indeterminate.
RELATIVE_SD = {1: 0.05, 2: 0.25, 3: 0.05, 4: 0.05}


def _measure(roi_id: str, tp: int, label: int, mask: np.ndarray, suv: np.ndarray, image: sitk.Image,
             track_id: int) -> LesionROI:
    values = suv[mask]
    centre = image.TransformContinuousIndexToPhysicalPoint([float(c) for c in np.argwhere(mask).mean(0)[::-1]])
    volume = mask.sum() * VOXEL_ML
    total = float(values.mean() * volume)
    return LesionROI(roi_id, tp, label, tuple(centre), float(volume), float(values.max()), float(values.mean()),
                     float(values.max() * 0.95), total, int(mask.sum()), suv_total_sd=RELATIVE_SD[track_id] * total)


def build_output(root: Path, patient_id: str = "RPT001") -> Path:
    """Write PET DICOM of 3 time points and the matching analysis folder; return the folder."""
    out = root / "out"
    (out / "labels").mkdir(parents=True)
    factor = expected_suv_factor(WEIGHT, DOSE, UPTAKE)
    timepoints, rois, tracks = [], [], {t: Track(t, {}) for t in LESIONS}
    for tp in range(3):
        suv = np.full(SHAPE, 1.0, dtype=np.float32)
        labels = np.zeros(SHAPE, dtype=np.uint16)
        present = [(t, spec[tp]) for t, spec in LESIONS.items() if tp in spec]
        for label, (track_id, (centre, radius, value)) in enumerate(present, start=1):
            mask = _ball(centre, radius)
            suv[mask], labels[mask] = value, label
            tracks[track_id].rois[tp] = [roi_id_for(tp, label)]
        image = _image(labels)
        sitk.WriteImage(image, str(out / "labels" / f"tp{tp}.nii.gz"))
        for label, (track_id, _spec) in enumerate(present, start=1):
            rois.append(_measure(roi_id_for(tp, label), tp, label, labels == label, suv, image, track_id))
            rois[-1].site = SITES[track_id]
        scan = dt.datetime(2025, 1 + 3 * tp, 2, 11, 0, 0)
        files = write_series(root / "dicom" / f"tp{tp}", patient_id=patient_id, values=(suv / factor)[::-1],
                             scan=scan, injection=scan - dt.timedelta(seconds=UPTAKE), dose_bq=DOSE, weight=WEIGHT,
                             spacing_z=SPACING, study_uid=f"1.2.826.0.1.3680043.10.999.{tp}.1")
        timepoints.append(_timepoint(tp, patient_id, scan, factor, files))
    responses = [_response(t, rois, tracks[t]) for t in LESIONS]
    analysis = Analysis(patient_id, timepoints, rois, tracks=list(tracks.values()), responses=responses,
                        heterogeneous={1: True, 2: True},
                        parameters=AnalysisParameters().updated({"segmentation.method": "truth", "response.measure": "suv_total"}),
                        software_version="test", audit=[{"time": "2025-07-01T10:00:00", "user": "reader1",
                                                         "action": "reject", "roi_id": "tp1-L0099"}],
                        reference_regions=_references())
    (out / "analysis.json").write_text(json.dumps(analysis.to_dict(), indent=1))
    _write_csvs(out, analysis)
    return out


def _references() -> list[ReferenceRegion]:
    regions = []
    for tp in range(3):
        for organ, diameter in (("liver", 30.0), ("spleen", 20.0)):
            mean = REFERENCES.get((tp, organ))
            regions.append(ReferenceRegion(tp, organ, True, diameter, (40.0, 40.0, -40.0), mean, 0.1 * mean, 14.1,
                                           1.0) if mean else
                           ReferenceRegion(tp, organ, False, diameter, warnings=["not placed: no spleen found"]))
    return regions


def _timepoint(tp: int, patient_id: str, scan: dt.datetime, factor: float, files: list[Path]) -> TimePointInfo:
    import pydicom

    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    return TimePointInfo(tp, patient_id, scan.strftime("%Y%m%d"), scan.isoformat(), first.StudyInstanceUID,
                         first.SeriesInstanceUID, None, first.FrameOfReferenceUID, factor, "BQML/START",
                         weight_kg=WEIGHT, sex="M", injected_activity_bq=DOSE, uptake_time_s=UPTAKE,
                         manufacturer="TestVendor", pet_files=[str(f) for f in files])


def _response(track_id: int, rois: list[LesionROI], track: Track) -> TrackResponse:
    from LesionResponseLib.analysis.response import category_confidence, delta_interval

    by_id = {r.roi_id: r for r in rois}
    total = {tp: sum(by_id[i].suv_total for i in track.rois.get(tp, [])) for tp in range(3)}
    sd = {tp: RELATIVE_SD[track_id] * v for tp, v in total.items()}
    delta = {k: (100 * (total[k] - total[0]) / total[0] if total[0] and total[k] else None) for k in (1, 2)}
    pattern = {1: "monotonic", 2: "monotonic", 3: "monotonic", 4: "new"}[track_id]
    response = TrackResponse(track_id, total, CATEGORIES[track_id], delta, pattern, suv_total_sd=sd)
    params = AnalysisParameters()
    for k in (1, 2):
        measured = delta[k] is not None
        args = (total[0], sd[0], total[k], sd[k])
        interval = list(delta_interval(*args, params.response.interval_level)) if measured else None
        response.delta_interval_pct[k] = interval
        response.category_confidence[k] = category_confidence(*args, CATEGORIES[track_id][k], params) if measured \
            else None
        response.indeterminate[k] = bool(interval and any(interval[0] < t < interval[1] for t in (-30.0, 30.0)))
    return response


def _write_csvs(out: Path, analysis: Analysis) -> None:
    track_of = {i: t.track_id for t in analysis.tracks for ids in t.rois.values() for i in ids}
    cats = {t.track_id: t for t in analysis.responses}
    rows = [{"roi_id": r.roi_id, "timepoint": r.timepoint, "label": r.label, "track_id": track_of[r.roi_id],
             "x_mm": r.centroid_mm[0], "y_mm": r.centroid_mm[1], "z_mm": r.centroid_mm[2], "volume_ml": r.volume_ml,
             "suv_max": r.suv_max, "suv_mean": r.suv_mean, "suv_peak": r.suv_peak, "suv_total": r.suv_total,
             "category": "baseline" if r.timepoint == 0 else cats[track_of[r.roi_id]].categories[r.timepoint],
             "status": r.status} for r in analysis.rois]
    pd.DataFrame(rows).to_csv(out / "rois.csv", index=False)
    pd.DataFrame([{"timepoint": t.index, "study_date": t.study_date, "study_instance_uid": t.study_instance_uid,
                   "pet_series_instance_uid": t.pet_series_instance_uid, "ct_series_instance_uid": "",
                   "suv_factor": t.suv_factor, "n_rois": sum(r.timepoint == t.index for r in analysis.rois)}
                  for t in analysis.timepoints]).to_csv(out / "timepoints.csv", index=False)
    follow_ups = range(1, len(analysis.timepoints))
    pd.DataFrame([{"track_id": r.track_id, "pattern": r.pattern,
                   **{f"category_t{k}": r.categories[k] for k in follow_ups},
                   **{f"delta_suv_total_pct_t{k}": r.delta_suv_total_pct[k] for k in follow_ups}}
                  for r in analysis.responses]).to_csv(out / "tracks.csv", index=False)


def pipeline_output(phantom: Path, out: Path, build_once) -> Path:
    """``out``: a copy of ``LesionResponseLib.workflow.analyze`` run on a phantom patient with its truth labels
    (registration and matching included: minutes on 2 cores), run once per test session (``build_once``)."""
    from LesionResponseLib.workflow import analyze

    def build(folder: Path) -> None:
        analyze(phantom / "dicom", folder / "out", AnalysisParameters().updated({"segmentation.method": "truth"}),
                labels_dir=phantom / "truth", progress=False)

    shutil.copytree(build_once(f"truth_pipeline_{phantom.name}", build) / "out", out)
    return out


def phantom_output(phantom: Path, out: Path) -> Path:
    """Analysis folder of a phantom patient built from its truth labels (real vendor DICOM, real grids), assembled
    from dicomio + ``analysis.measure_rois`` + the truth tracks and categories (seconds; :func:`pipeline_output`
    runs the pipeline)."""
    from LesionResponseLib.analysis.quantify import measure_rois
    from LesionResponseLib.dicomio import find_timepoints, load_timepoint
    from LesionResponseLib.phantom import load_truth

    truth = load_truth(phantom)
    infos = find_timepoints(phantom / "dicom").timepoints
    (out / "labels").mkdir(parents=True)
    (out / "suv").mkdir()
    rois: list[LesionROI] = []
    for info in infos:
        labels = sitk.ReadImage(str(phantom / "truth" / f"tp{info.index}_lesions.nii.gz"))
        suv = load_timepoint(info, with_ct=False).pet_suv
        sitk.WriteImage(labels, str(out / "labels" / f"tp{info.index}.nii.gz"))
        sitk.WriteImage(suv, str(out / "suv" / f"tp{info.index}.nii.gz"))
        rois += measure_rois(labels, suv, info.index)
    tracks, responses = _truth_tracks(truth, rois, len(infos))
    analysis = Analysis(truth["patient_id"], infos, rois, tracks=tracks, responses=responses,
                        heterogeneous={int(k): v for k, v in truth["heterogeneous"].items()},
                        parameters=AnalysisParameters().updated({"segmentation.method": "truth", "response.measure": "suv_total"}),
                        software_version="test")
    (out / "analysis.json").write_text(json.dumps(analysis.to_dict()))
    _write_csvs(out, analysis)
    return out


def _truth_tracks(truth: dict, rois: list[LesionROI], n_tp: int) -> tuple[list[Track], list[TrackResponse]]:
    by_label = {(r.timepoint, r.label): r for r in rois}
    tracks: dict[int, Track] = {}
    categories: dict[int, dict[int, str]] = {}
    for lesion in truth["lesions"]:
        track = tracks.setdefault(lesion["track_id"], Track(lesion["track_id"], {}))
        categories.setdefault(lesion["track_id"], {int(k): v for k, v in lesion["categories"].items()})
        for tp, state in lesion["timepoints"].items():
            ids = [by_label[(int(tp), lab)].roi_id for lab in state.get("labels", []) if (int(tp), lab) in by_label]
            track.rois.setdefault(int(tp), [])
            track.rois[int(tp)] += [i for i in ids if i not in track.rois[int(tp)]]
    responses = []
    by_id = {r.roi_id: r for r in rois}
    for track_id, track in tracks.items():
        total = {tp: sum(by_id[i].suv_total for i in track.rois.get(tp, [])) for tp in range(n_tp)}
        delta = {k: (100 * (total[k] - total[0]) / total[0] if total[0] and total[k] else None) for k in range(1, n_tp)}
        cats = {k: categories[track_id].get(k, "absent") for k in range(1, n_tp)}
        responses.append(TrackResponse(track_id, total, cats, delta, "monotonic"))
    kept = [t for t in tracks.values() if any(t.rois.values())]
    return kept, [r for r in responses if r.track_id in {t.track_id for t in kept}]
