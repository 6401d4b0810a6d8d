"""Plain, typed, serialisable objects that flow between the stages.

DICOM -> :class:`TimePointInfo` (+ SUV PET and CT images) -> :class:`LesionROI` ->
:class:`RegistrationResult` -> :class:`Link` -> :class:`Track` -> :class:`TrackResponse` -> reports.

Every object converts to and from a JSON-compatible ``dict`` with ``to_dict`` / ``from_dict``.
Coordinates are DICOM patient coordinates (LPS, mm) unless a name says otherwise.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from LesionResponseLib.config import AnalysisParameters

#: 2: parameters nested by section (LesionResponseLib.config); schema 1's flat parameters are migrated on reading.
SCHEMA_VERSION = 2

RoiStatus = Literal["accepted", "rejected"]
#: Where a lesion-ROI came from: the segmentation ``model`` (or the label file / threshold that stood in for
#: it), the ``prior-guided`` search at a track's known location (segmentation.prior_guided), or a ``reader``.
RoiSource = Literal["model", "prior-guided", "reader"]
ROI_SOURCES: tuple[str, ...] = ("model", "prior-guided", "reader")
RoiCategory = Literal["baseline", "new", "increasing", "stable", "decreasing"]
#: Where a lesion-ROI lies (``analysis.sites`` gives it from the CT and the position; a reader corrects it).
LESION_SITES: tuple[str, ...] = ("liver", "bone", "lymph node", "pancreas", "lung", "peritoneum/other")
#: Who set a ROI's site or placed a reference region: the ``automatic`` rule or a ``reader``.
SETTERS: tuple[str, ...] = ("automatic", "reader")
#: Organs that hold a reference region of normal uptake (``analysis.reference_regions``).
REFERENCE_ORGANS: tuple[str, ...] = ("liver", "spleen")
TrackCategory = Literal["new", "increasing", "stable", "decreasing", "disappearing", "absent"]
TrackPattern = Literal[
    "baseline-only", "monotonic", "non-monotonic", "new-then-resolved", "disappeared-then-returned", "new"
]

T = TypeVar("T")


class _Serialisable:
    """Mixin: dataclass <-> JSON-compatible dict (tuples become lists; int dict keys become strings)."""

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass
class TimePointInfo(_Serialisable):
    """One time point: the chosen PET and CT series of one study, and how PET becomes SUV."""

    index: int  # 0 = baseline, in acquisition-date order
    patient_id: str
    study_date: str  # YYYYMMDD
    scan_datetime: str  # ISO 8601; PET scan start used for decay correction
    study_instance_uid: str
    pet_series_instance_uid: str
    ct_series_instance_uid: str | None
    frame_of_reference_uid: str | None
    suv_factor: float  # SUVbw per Bq/mL (weight g / decayed injected activity Bq)
    suv_method: str  # e.g. "BQML/START", "BQML/ADMIN", "CNTS/Philips", "GML/LBMJAMES128" (dicomio.calibration)
    weight_kg: float | None = None
    height_m: float | None = None
    sex: str | None = None
    injected_activity_bq: float | None = None
    injection_datetime: str | None = None  # ISO 8601
    uptake_time_s: float | None = None
    half_life_s: float | None = None
    sul_factor: float | None = None  # SUL per Bq/mL (Janmahasatian LBM), None when sex/height unknown
    manufacturer: str | None = None
    pet_files: list[str] = field(default_factory=list)
    ct_files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # SUV provenance (dicomio.calibration); None / empty in analysis.json files written before they existed
    suv_reference_time_source: str | None = None  # e.g. "SeriesDate/SeriesTime", "GE private scan datetime ..."
    suv_normalisation: str | None = None  # how the stored values became SUVbw, with the numbers used
    suv_assumptions: list[str] = field(default_factory=list)  # rules applied to imperfect headers (MBq dose, ...)
    # The tracer from the headers (dicomio.tracer), e.g. "[68Ga]Ga-DOTATATE" and "Ga-68"; None when not stated
    radiopharmaceutical: str | None = None
    radionuclide: str | None = None
    tracer_override: bool = False  # not SSTR PET, analysed on the user's request (--allow-other-tracer)
    # Slice geometry (dicomio.geometry): largest distance (mm) of a slice from the regular grid it was resampled
    # onto (0 when regular), the CT's gantry tilt (degrees), and what was resampled; None/empty in analysis.json
    # files written before they existed
    pet_slice_deviation_mm: float | None = None
    ct_slice_deviation_mm: float | None = None
    ct_tilt_deg: float | None = None
    geometry_notes: list[str] = field(default_factory=list)


@dataclass
class LesionROI(_Serialisable):
    """One lesion-ROI: a connected region of non-physiological uptake at one time point."""

    roi_id: str  # unique in an analysis, e.g. "tp1-L0007" (see :func:`roi_id_for`)
    timepoint: int
    label: int  # value in that time point's label map (PET grid)
    centroid_mm: tuple[float, float, float]  # LPS, mm, that time point's own scan
    volume_ml: float
    suv_max: float
    suv_mean: float
    suv_peak: float  # highest mean in a 1 mL sphere centred within the ROI
    suv_total: float  # SUVmean x volume, SUV*mL
    n_voxels: int = 0
    suv_total_pvc: float | None = None  # partial-volume-corrected SUVtotal, SUV*mL (analysis.quantify)
    status: RoiStatus = "accepted"
    source: RoiSource = "model"
    # How well it is measured (analysis.quantify.roi_uncertainties; None in analysis.json files written before):
    suv_total_sd: float | None = None  # SD of suv_total, SUV*mL (image noise and contour)
    suv_total_pvc_sd: float | None = None  # SD of suv_total_pvc, SUV*mL
    background_suv: float | None = None  # hottest uptake around it: 95th percentile of its background shell, SUV
    at_fov_edge: bool = False  # within one PSF FWHM of the edge of the field of view
    site: str = ""  # one of LESION_SITES ("" when not determined: no CT)
    site_source: str = "automatic"  # one of SETTERS

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LesionROI:
        roi = super().from_dict(data)
        roi.centroid_mm = tuple(float(c) for c in roi.centroid_mm)  # type: ignore[assignment]
        if roi.source not in ROI_SOURCES:  # analysis.json before prior-guided ROIs said "auto"
            roi.source = "model"
        return roi


def roi_id_for(timepoint: int, label: int) -> str:
    """The canonical ROI id of ``label`` in time point ``timepoint``."""
    return f"tp{timepoint}-L{label:04d}"


@dataclass
class ReferenceRegion(_Serialisable):
    """A sphere of normal organ uptake at one time point, the reference of the lesion-to-organ ratios
    (``analysis.reference_regions``). ``placed`` False: none could be placed, ``warnings`` say why."""

    timepoint: int
    organ: str  # one of REFERENCE_ORGANS
    placed: bool
    diameter_mm: float
    centre_mm: tuple[float, float, float] | None = None  # LPS, mm, that time point's own scan
    suv_mean: float | None = None
    suv_sd: float | None = None
    volume_ml: float | None = None  # the voxels whose centres lie in the sphere
    organ_share: float | None = None  # share of those voxels inside the organ found on PET/CT
    source: str = "automatic"  # one of SETTERS
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceRegion:
        region = super().from_dict(data)
        if region.centre_mm is not None:
            region.centre_mm = tuple(float(c) for c in region.centre_mm)  # type: ignore[assignment]
        return region


@dataclass
class RegistrationResult(_Serialisable):
    """Registration of ``moving_timepoint`` onto ``fixed_timepoint``.

    The transform file (ITK format, path relative to the analysis folder) follows the ITK convention:
    it maps physical points (LPS mm) of the fixed scan to the corresponding points of the moving scan.
    """

    fixed_timepoint: int
    moving_timepoint: int
    transform_path: str
    method: str
    ok: bool
    quality: dict[str, float] = field(default_factory=dict)  # e.g. metric before/after, NCC, Dice of body
    message: str = ""
    seconds: float = 0.0
    software: str = ""  # what ran it and its version, e.g. "elastix 5.0.1 (program /usr/bin)", "SimpleITK 2.5.0"


@dataclass
class Link(_Serialisable):
    """A correspondence between two ROIs of different time points (``roi_a`` earlier than ``roi_b``)."""

    roi_a: str
    roi_b: str
    cost: float = 0.0
    overlap: float = 0.0  # overlap of the dilated, registered ROIs (Dice-like, 0..1)
    distance_mm: float = 0.0  # centroid distance after registration
    kind: Literal["one-to-one", "split", "merge", "reader"] = "one-to-one"
    source: Literal["auto", "reader"] = "auto"


@dataclass
class Track(_Serialisable):
    """The path of one lesion across all time points: a connected component of links."""

    track_id: int
    rois: dict[int, list[str]]  # time point -> ROI ids (several at one time point = split/merge)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Track:
        return cls(track_id=int(data["track_id"]), rois={int(k): list(v) for k, v in data["rois"].items()})

    @property
    def first_timepoint(self) -> int:
        return min(tp for tp, ids in self.rois.items() if ids)

    @property
    def last_timepoint(self) -> int:
        return max(tp for tp, ids in self.rois.items() if ids)


@dataclass
class TrackResponse(_Serialisable):
    """Response of one track at every follow-up."""

    track_id: int
    suv_total: dict[int, float]  # time point -> summed SUVtotal of its accepted ROIs (0 when absent)
    categories: dict[int, str]  # follow-up index (>=1) -> TrackCategory
    delta_suv_total_pct: dict[int, float | None]  # follow-up -> % change vs reference (None if undefined)
    pattern: str  # TrackPattern
    # Uncertainty (analysis.response; empty in analysis.json files written before it existed):
    suv_total_sd: dict[int, float] = field(default_factory=dict)  # time point -> SD of suv_total (0 when absent)
    delta_interval_pct: dict[int, list[float] | None] = field(default_factory=dict)  # follow-up -> [low, high] %
    category_confidence: dict[int, float | None] = field(default_factory=dict)  # P(true change in the category)
    indeterminate: dict[int, bool] = field(default_factory=dict)  # the interval holds a category threshold

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrackResponse:
        def keyed(name: str, convert: Any) -> dict[int, Any]:
            return {int(k): (None if v is None else convert(v)) for k, v in data.get(name, {}).items()}

        return cls(
            track_id=int(data["track_id"]),
            suv_total={int(k): float(v) for k, v in data["suv_total"].items()},
            categories={int(k): v for k, v in data["categories"].items()},
            delta_suv_total_pct=keyed("delta_suv_total_pct", float),
            pattern=data["pattern"],
            suv_total_sd=keyed("suv_total_sd", float),
            delta_interval_pct=keyed("delta_interval_pct", lambda v: [float(x) for x in v]),
            category_confidence=keyed("category_confidence", float),
            indeterminate=keyed("indeterminate", bool),
        )


@dataclass
class SearchRecord(_Serialisable):
    """One prior-guided search (``workflow.prior_search``): where a track's lesion was looked for at a time point
    without its ROI, found or not, with the figures of the detection rule (SUV; those of
    ``segmentation.prior_guided.PriorSearchResult``, NaN where no search ran)."""

    direction: str  # forward | backward | confirm (a model candidate) | candidate (the candidate's own ROI)
    timepoint: int  # where it looked
    prior_timepoint: int  # the time point of the ROI it started from
    prior_rois: list[str]  # the ROI ids (or "candidate tp{k}-C{n}") it started from
    roi_id: str | None  # the ROI it found and added, None when not found
    found: bool = False
    reason: str = ""
    limit_suv: float = math.nan  # detection limit: filtered SUV the peak had to exceed
    peak_filtered_suv: float = math.nan
    background_suv: float = math.nan
    noise_sd_suv: float = math.nan
    z: float = math.nan  # threshold in noise sd
    n_resels: float = math.nan
    peak_suv: float = 0.0
    model_probability: float | None = None  # highest model lesion probability in the region (None: not consulted)
    evidence: str = ""  # what found it: "uptake", "model", or "" when not found

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchRecord:
        record = super().from_dict(data)
        record.prior_rois = list(record.prior_rois)
        return record


@dataclass
class InputSource(_Serialisable):
    """Where an analysis read its DICOM: the input path as given to ``analyze`` and resolved to an absolute path
    when it ran (a folder or a ZIP archive; it may have moved or gone since), and the ``--patient`` chosen, if
    any. A re-run from a review face reads the same input."""

    given: str
    resolved: str
    patient: str | None = None

    @classmethod
    def of(cls, path: str | Path, patient: str | None = None) -> InputSource:
        return cls(str(path), str(Path(path).expanduser().resolve()), patient)


def search_counts(records: list[SearchRecord]) -> dict[str, int]:
    """Counts of ``Analysis.prior_searches``: ``searches`` (a candidate's own record is no search), ``found``,
    ``by_model`` (found by model evidence) and ``candidates`` (model candidates confirmed)."""
    searches = [r for r in records if r.direction != "candidate"]
    return {"searches": len(searches), "found": sum(1 for r in searches if r.roi_id),
            "by_model": sum(1 for r in searches if r.roi_id and r.evidence == "model"),
            "candidates": len(records) - len(searches)}


@dataclass
class Analysis:
    """Everything known about one patient's longitudinal assessment (serialised as ``analysis.json``).

    ``heterogeneous`` maps follow-up index (>= 1) to the patient-level heterogeneity flag. ``audit`` is the
    reader's edit history (see :mod:`LesionResponseLib.review`).
    """

    patient_id: str
    timepoints: list[TimePointInfo]
    rois: list[LesionROI] = field(default_factory=list)
    registrations: list[RegistrationResult] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    tracks: list[Track] = field(default_factory=list)
    responses: list[TrackResponse] = field(default_factory=list)
    heterogeneous: dict[int, bool] = field(default_factory=dict)
    parameters: AnalysisParameters = field(default_factory=AnalysisParameters)
    software_version: str = ""
    schema_version: int = SCHEMA_VERSION
    audit: list[dict[str, Any]] = field(default_factory=list)
    prior_searches: list[SearchRecord] = field(default_factory=list)  # one per prior-guided search
    # Tracks a reader marked reviewed (review.edits.MarkReviewed; the review queue, analysis.queue, shows the rest).
    reviewed_tracks: list[int] = field(default_factory=list)
    # One per time point and organ of REFERENCE_ORGANS (analysis.reference_regions), placed or not.
    reference_regions: list[ReferenceRegion] = field(default_factory=list)
    # Where the DICOM came from; None in analysis.json files written before it was recorded.
    input_source: InputSource | None = None

    def roi(self, roi_id: str) -> LesionROI:
        """The ROI with id ``roi_id`` (KeyError naming it when absent)."""
        for roi in self.rois:
            if roi.roi_id == roi_id:
                return roi
        raise KeyError(f"no lesion-ROI {roi_id!r} in this analysis")

    def reference(self, timepoint: int, organ: str) -> ReferenceRegion | None:
        """The reference region of ``organ`` at ``timepoint`` (None when the analysis has none)."""
        return next((r for r in self.reference_regions if r.timepoint == timepoint and r.organ == organ), None)

    def model_evidence_rois(self) -> set[str]:
        """Ids of the ROIs the prior-guided search accepted on the segmentation model's probability (its
        ``evidence`` = ``model``), not on the uptake test."""
        return {r.roi_id for r in self.prior_searches if r.evidence == "model" and r.roi_id}

    def track(self, track_id: int) -> Track:
        for track in self.tracks:
            if track.track_id == track_id:
                return track
        raise KeyError(f"no track {track_id} in this analysis")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "software_version": self.software_version,
            "patient_id": self.patient_id,
            "timepoints": [t.to_dict() for t in self.timepoints],
            "parameters": self.parameters.to_dict(),
            "heterogeneous": {str(k): bool(v) for k, v in self.heterogeneous.items()},
            "rois": [r.to_dict() for r in self.rois],
            "registrations": [r.to_dict() for r in self.registrations],
            "links": [link.to_dict() for link in self.links],
            "tracks": [t.to_dict() for t in self.tracks],
            "responses": [r.to_dict() for r in self.responses],
            "audit": _jsonable(self.audit),
            "prior_searches": [r.to_dict() for r in self.prior_searches],
            "parameter_sources": self.parameters.non_default_sources(),
            "reviewed_tracks": sorted(int(t) for t in self.reviewed_tracks),
            "reference_regions": [r.to_dict() for r in self.reference_regions],
            "input_source": self.input_source.to_dict() if self.input_source else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Analysis:
        version = int(data.get("schema_version", 0))
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"analysis.json has schema_version {version}, newer than this software understands "
                f"({SCHEMA_VERSION}); update LesionResponse."
            )
        return cls(
            patient_id=data["patient_id"],
            timepoints=[TimePointInfo.from_dict(t) for t in data["timepoints"]],
            rois=[LesionROI.from_dict(r) for r in data.get("rois", [])],
            registrations=[RegistrationResult.from_dict(r) for r in data.get("registrations", [])],
            links=[Link.from_dict(x) for x in data.get("links", [])],
            tracks=[Track.from_dict(t) for t in data.get("tracks", [])],
            responses=[TrackResponse.from_dict(r) for r in data.get("responses", [])],
            heterogeneous={int(k): bool(v) for k, v in data.get("heterogeneous", {}).items()},
            parameters=dataclasses.replace(AnalysisParameters.from_dict(data.get("parameters", {})),
                                           sources=dict(data.get("parameter_sources", {}))),
            software_version=data.get("software_version", ""),
            schema_version=version or SCHEMA_VERSION,
            audit=list(data.get("audit", [])),
            prior_searches=[SearchRecord.from_dict(r) for r in data.get("prior_searches", [])],
            reviewed_tracks=[int(t) for t in data.get("reviewed_tracks", [])],
            reference_regions=[ReferenceRegion.from_dict(r) for r in data.get("reference_regions", [])],
            input_source=InputSource.from_dict(data["input_source"]) if data.get("input_source") else None,
        )
