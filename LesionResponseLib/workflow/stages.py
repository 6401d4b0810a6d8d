"""The cached stages of the ``analyze`` pipeline: objects of one protocol (:class:`Stage`), run by one runner
(:func:`run_stage`: key → cache entry → reuse, or compute → write → manifest last → :class:`RunReport`).

A stage declares what its result depends on: ``reads``, the settings (``section.name`` of
:mod:`LesionResponseLib.config`) whose values go into its cache key, and :meth:`Stage.identity`, what
identifies its inputs (series UIDs, digests of images and files, the keys of the stages it follows). Changing a
setting therefore recomputes exactly the stages that read it and those that follow them (their inputs changed);
``Testing/Python/test_workflow_stages.py`` checks this for every setting. A result is stored in ``OUT/cache/`` as
``<prefix>-<key>-<file>`` files and the manifest ``<prefix>-<key>.json``, each written atomically, the manifest
last: a result counts as cached only when its manifest exists, so a killed run never leaves a half result that
is reused. Whether computed or reused, the result the pipeline goes on with is the one read back from the cache
(:meth:`Stage.load`), so both paths give the same analysis.

The cache keys, generated from the declarations below (:func:`describe_cache_keys`):

{cache_keys}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.analysis.outputs import atomic_write_image, atomic_write_text
from LesionResponseLib.config import AnalysisParameters, PriorSearchConfig
from LesionResponseLib.datamodel import LesionROI, Link, RegistrationResult, SearchRecord, Track
from LesionResponseLib.errors import LesionResponseError, describe
from LesionResponseLib.imaging import label_on_grid

InputsT = TypeVar("InputsT", contravariant=True)
ResultT = TypeVar("ResultT")
#: Label-map file names: an analysis's labels/ folder, the phantom's truth/ folder.
LABEL_NAMES = ("tp{k}.nii.gz", "tp{k}_lesions.nii.gz")


class AnalysisError(LesionResponseError):
    """The pipeline cannot run on this input (no time points, missing labels, a stage not available)."""


@dataclass
class RunReport:
    """What one pipeline run did: per stage item (``"segmentation tp0"``), ``"computed"`` or ``"reused"``."""

    stages: dict[str, str] = field(default_factory=dict)
    review: Any = None  # review.reconcile.ReapplyReport when the folder held a review session

    def reused(self) -> list[str]:
        return [name for name, how in self.stages.items() if how == "reused"]

    def computed(self) -> list[str]:
        return [name for name, how in self.stages.items() if how == "computed"]


# ------------------------------------------------------------------------------------------------ hashing
def digest(*parts: Any) -> str:
    """Short SHA-256 of the canonical JSON of ``parts`` (a cache key)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def file_digest(path: str | Path) -> str:
    """SHA-256 (first 20 hex digits) of a file, or of every file in a folder (sorted by relative path)."""
    path = Path(path)
    sha = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for item in files:
        sha.update(str(item.relative_to(path) if path.is_dir() else item.name).encode())
        with item.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                sha.update(block)
    return sha.hexdigest()[:20]


def image_digest(image: sitk.Image) -> str:
    """Hash of an image's voxels and geometry."""
    sha = hashlib.sha256(sitk.GetArrayViewFromImage(image).tobytes())
    sha.update(repr((image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())).encode())
    return sha.hexdigest()[:20]


def model_digest(params: AnalysisParameters) -> str:
    """Digest of the segmentation model file the parameters name (or the method's name)."""
    method = params.segmentation.method
    if method == "threshold":
        return "threshold"
    if method != "model":
        return file_digest(method) if Path(method).exists() else method
    if params.segmentation.model_path:
        return file_digest(params.segmentation.model_path)
    from LesionResponseLib.segmentation import DEFAULT_MODEL_PATH

    return file_digest(DEFAULT_MODEL_PATH) if Path(DEFAULT_MODEL_PATH).exists() else "default-model-missing"


# ------------------------------------------------------------------------------------------------ protocol
@dataclass(frozen=True)
class CacheEntry:
    """The files of one cached result: ``<folder>/<stem>-<name>`` and the manifest ``<folder>/<stem>.json``."""

    folder: Path
    stem: str

    @property
    def manifest(self) -> Path:
        return self.folder / f"{self.stem}.json"

    def file(self, name: str) -> Path:
        return self.folder / f"{self.stem}-{name}"


class Stage(Protocol[InputsT, ResultT]):
    """One cached stage. ``name``: how the run report and the docs call it; ``prefix``: its cache files';
    ``reads``: the settings in its key; ``version``: raised when what it computes changes meaning; ``inputs``:
    what :meth:`identity` covers, in words (for the docs)."""

    name: str
    prefix: str
    reads: tuple[str, ...]
    version: int
    inputs: str

    def identity(self, inputs: InputsT, params: AnalysisParameters) -> Any:
        """JSON-able identity of ``inputs`` (it may use only the settings in :attr:`reads`)."""

    def compute(self, inputs: InputsT, params: AnalysisParameters) -> Any:
        """The result, not yet stored."""

    def save(self, result: Any, entry: CacheEntry) -> Any:
        """Write ``result``'s files (``entry.file(name)``, atomically); the JSON payload of its manifest."""

    def load(self, payload: Any, entry: CacheEntry, inputs: InputsT) -> ResultT:
        """The result from its manifest payload and files."""


def stage_key(stage: Stage, inputs: Any, params: AnalysisParameters) -> str:
    """The cache key of ``stage`` on ``inputs``: its version, its inputs' identity and the settings it reads."""
    return digest(stage.prefix, stage.version, stage.identity(inputs, params),
                  {path: params.value(path) for path in stage.reads})


def run_stage(stage: Stage[InputsT, ResultT], inputs: InputsT, params: AnalysisParameters, *, cache: Path,
              report: RunReport, item: str = "") -> tuple[ResultT, str]:
    """(the stage's result, its key): reused from ``cache`` when its manifest is there, else computed and
    stored; ``report`` records which, under ``"<name> <item>"``."""
    key = stage_key(stage, inputs, params)
    entry = CacheEntry(cache, f"{stage.prefix}-{key}")
    reused = entry.manifest.is_file()
    if not reused:
        cache.mkdir(parents=True, exist_ok=True)
        payload = stage.save(stage.compute(inputs, params), entry)
        atomic_write_text(entry.manifest, json.dumps(payload))
    report.stages[f"{stage.name} {item}".strip()] = "reused" if reused else "computed"
    return stage.load(json.loads(entry.manifest.read_text()), entry, inputs), key


# ------------------------------------------------------------------------------------------------ segmentation
def on_pet_grid(labels: sitk.Image, pet: sitk.Image) -> sitk.Image:
    """``labels`` as uint16 on the PET grid (nearest neighbour when the grids differ)."""
    return label_on_grid(labels, pet, sitk.sitkUInt16)


def find_label_file(labels_dir: Path, k: int) -> Path:
    """The label map of time point ``k`` in ``labels_dir`` (:data:`LABEL_NAMES`)."""
    for name in LABEL_NAMES:
        if (labels_dir / name.format(k=k)).is_file():
            return labels_dir / name.format(k=k)
    raise AnalysisError(describe(f"no label map for time point {k}", path=labels_dir,
                                 fix=f"Provide {' or '.join(n.format(k=k) for n in LABEL_NAMES)} for every time point."))


@dataclass
class ModelEvidence:
    """Where a model's evidence for the prior-guided search at one time point is cached (PET grid): its lesion
    probability as uint8 (× ``prior_guided.PROBABILITY_UINT8_SCALE``), its dropped candidates (uint16 labels)
    and, for models with a ``physiological`` output, that map as uint8. The search reads them only when it runs
    (not when its result is reused)."""

    probability: Path
    candidates: Path
    physiological: Path | None = None


@dataclass
class TimePointSegmentation:
    """A time point's lesion-ROI label map (PET grid) and, for a model, its :class:`ModelEvidence`."""

    labels: sitk.Image
    evidence: ModelEvidence | None = None


@dataclass(frozen=True)
class SegmentationInputs:
    timepoint: Any  # dicomio.LoadedTimePoint
    labels_file: Path | None = None  # a label map to use instead of segmenting


_EVIDENCE_FILES = {"probability": "probability.nii.gz", "candidates": "candidates.nii.gz",
                   "physiological": "physiological.nii.gz"}


class SegmentationStage:
    name = "segmentation"
    prefix = "seg"
    reads = ("segmentation.method", "segmentation.model_path", "segmentation.labels_dir",
             "segmentation.min_roi_volume_ml", "segmentation.equivocal_max_volume_ml",
             "segmentation.drop_intracranial")
    version = 1
    # The CT series is part of the key: models with a CT input channel read it.
    inputs = ("the time point's PET series UID and SUV factor, its CT series UID, and the digest of the model "
              "file (or of the supplied label file)")

    def identity(self, inputs: SegmentationInputs, params: AnalysisParameters) -> Any:
        info = inputs.timepoint.info
        source = file_digest(inputs.labels_file) if inputs.labels_file else model_digest(params)
        return [info.pet_series_instance_uid, round(info.suv_factor, 12), info.ct_series_instance_uid, source]

    def compute(self, inputs: SegmentationInputs, params: AnalysisParameters) -> Any:
        tp = inputs.timepoint
        if inputs.labels_file:
            from LesionResponseLib.segmentation.inference import SegmentationOutput

            return SegmentationOutput(on_pet_grid(sitk.ReadImage(str(inputs.labels_file)), tp.pet_suv))
        from LesionResponseLib.segmentation import segment_with_evidence

        config = params.segmentation
        output = segment_with_evidence(tp.pet_suv, tp.ct, method=config.method, model_path=config.model_path,
                                       min_volume_ml=config.min_roi_volume_ml,
                                       equivocal_max_volume_ml=config.equivocal_max_volume_ml,
                                       drop_intracranial=config.drop_intracranial)
        output.labels = on_pet_grid(output.labels, tp.pet_suv)
        return output

    def save(self, result: Any, entry: CacheEntry) -> Any:
        from LesionResponseLib.segmentation.prior_guided import PROBABILITY_UINT8_SCALE

        atomic_write_image(result.labels, entry.file("labels.nii.gz"))
        written = []
        if result.probability is not None and result.candidates is not None:
            arrays = {"probability": _as_uint8(result.probability, PROBABILITY_UINT8_SCALE),
                      "candidates": sitk.GetArrayViewFromImage(result.candidates).astype(np.uint16)}
            if result.physiological is not None:
                arrays["physiological"] = _as_uint8(result.physiological, PROBABILITY_UINT8_SCALE)
            for name, array in arrays.items():
                image = sitk.GetImageFromArray(array)
                image.CopyInformation(result.labels)
                atomic_write_image(image, entry.file(_EVIDENCE_FILES[name]))
                written.append(name)
        return {"evidence": written}

    def load(self, payload: Any, entry: CacheEntry, inputs: SegmentationInputs) -> TimePointSegmentation:
        labels = on_pet_grid(sitk.ReadImage(str(entry.file("labels.nii.gz"))), inputs.timepoint.pet_suv)
        files = {name: entry.file(_EVIDENCE_FILES[name]) for name in payload["evidence"]}
        evidence = ModelEvidence(files["probability"], files["candidates"], files.get("physiological")) \
            if "probability" in files else None
        return TimePointSegmentation(labels, evidence)


def _as_uint8(image: sitk.Image, scale: float) -> np.ndarray:
    return np.rint(np.clip(sitk.GetArrayViewFromImage(image), 0.0, 1.0) * scale).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ registration
@dataclass
class Registered:
    transform: sitk.Transform
    result: RegistrationResult


class RegistrationStage:
    name = "registration"
    prefix = "reg"
    reads = ("registration.method",)
    version = 1
    # Keyed on the method that runs too ("auto" becomes an elastix engine or sitk-bspline), so installing
    # elastix later does not reuse a result of the fallback.
    inputs = "the PET and CT series UIDs of both time points and the method that runs (`auto` resolved)"

    def identity(self, inputs: tuple[Any, Any], params: AnalysisParameters) -> Any:
        from LesionResponseLib.tracking.registration import resolve_method

        return [[tp.info.pet_series_instance_uid, tp.info.ct_series_instance_uid] for tp in inputs] + \
            [resolve_method(params.registration.method)[0]]

    def compute(self, inputs: tuple[Any, Any], params: AnalysisParameters) -> Registered:
        from LesionResponseLib.tracking import register_pair

        return Registered(*register_pair(*inputs, method=params.registration.method))

    def save(self, result: Registered, entry: CacheEntry) -> Any:
        from LesionResponseLib.tracking import save_transform, transform_filename

        name = "transform" + Path(transform_filename(0, 1, result.transform)).suffix
        save_transform(result.transform, entry.file(name))
        return {"file": entry.file(name).name, "result": result.result.to_dict()}

    def load(self, payload: Any, entry: CacheEntry, inputs: tuple[Any, Any]) -> Registered:
        from LesionResponseLib.tracking import load_transform

        return Registered(load_transform(entry.folder / payload["file"]),
                          RegistrationResult.from_dict(payload["result"]))


# ------------------------------------------------------------------------------------------------ matching
@dataclass(frozen=True)
class MatchingInputs:
    labels: dict[int, sitk.Image]
    rois: list[LesionROI]
    transforms: dict[tuple[int, int], sitk.Transform]
    registration_keys: list[str]


class MatchingStage:
    name = "matching"
    prefix = "match"
    reads = tuple(f"matching.{name}" for name in ("dilation_mm", "max_distance_mm", "min_overlap",
                                                  "containment_min"))
    version = 1
    inputs = "the digest of every label map and the registration keys"

    def identity(self, inputs: MatchingInputs, params: AnalysisParameters) -> Any:
        return [[image_digest(inputs.labels[k]) for k in sorted(inputs.labels)], inputs.registration_keys]

    def compute(self, inputs: MatchingInputs, params: AnalysisParameters) -> list[Link]:
        from LesionResponseLib.tracking import match_rois

        return match_rois(inputs.labels, inputs.rois, inputs.transforms, params)

    def save(self, result: list[Link], entry: CacheEntry) -> Any:
        return [link.to_dict() for link in result]

    def load(self, payload: Any, entry: CacheEntry, inputs: MatchingInputs) -> list[Link]:
        return [Link.from_dict(x) for x in payload]


# ------------------------------------------------------------------------------------------------ prior search
@dataclass(frozen=True)
class PriorSearchInputs:
    loaded: list  # dicomio.LoadedTimePoint per time point
    labels: dict[int, sitk.Image]
    rois: list[LesionROI]
    tracks: list[Track]
    transforms: dict[tuple[int, int], sitk.Transform]
    registration_keys: list[str]
    evidence: dict[int, ModelEvidence]  # the time points a model segmented


@dataclass
class PriorSearchFinds:
    """Every search's record and the label maps of the time points that gained ROIs (the found ROIs added)."""

    records: list[SearchRecord]
    grown: dict[int, sitk.Image]


class PriorSearchStage:
    name = "prior-guided search"
    prefix = "prior"
    # The search's own settings (prior_search.enabled decides whether it runs at all), the PSF of its matched
    # filter, the ROI minimum of its contours, and the model whose evidence it reads.
    reads = tuple(f"prior_search.{f.name}" for f in dataclasses.fields(PriorSearchConfig) if f.name != "enabled") + (
        "quantification.psf_fwhm_mm", "segmentation.min_roi_volume_ml", "segmentation.method",
        "segmentation.model_path")
    inputs = ("the digest of every label map, the registration keys, the PET series UIDs and SUV factors, the CT "
              "series UIDs (the cranial cavity) and the model file's digest (when its evidence is read)")

    @property
    def version(self) -> int:
        from LesionResponseLib.segmentation.prior_guided import SEARCH_RULE_VERSION

        return SEARCH_RULE_VERSION

    def identity(self, inputs: PriorSearchInputs, params: AnalysisParameters) -> Any:
        return [[image_digest(inputs.labels[k]) for k in sorted(inputs.labels)], inputs.registration_keys,
                [[tp.info.pet_series_instance_uid, round(tp.info.suv_factor, 12), tp.info.ct_series_instance_uid]
                 for tp in inputs.loaded], model_digest(params) if inputs.evidence else None]

    def compute(self, inputs: PriorSearchInputs, params: AnalysisParameters) -> PriorSearchFinds:
        from LesionResponseLib.workflow.prior_search import search_tracks

        config = params.prior_search
        probabilities = {k: _read_array(v.probability) for k, v in inputs.evidence.items()}
        candidates = {k: _read_array(v.candidates) for k, v in inputs.evidence.items()} if config.candidates else {}
        physiological = {k: _read_array(v.physiological) for k, v in inputs.evidence.items()
                         if v.physiological is not None} if config.skip_physiological else {}
        arrays, records = search_tracks(inputs.tracks, inputs.rois, inputs.labels,
                                        {tp.info.index: tp.pet_suv for tp in inputs.loaded}, inputs.transforms,
                                        params, probabilities=probabilities, candidates=candidates,
                                        cranial_of=_cranial_cavities(inputs.loaded) if config.skip_intracranial
                                        else None, physiological=physiological,
                                        physiological_threshold=_physiological_threshold(params, physiological))
        grown = {}
        for k in sorted({r.timepoint for r in records if r.roi_id}):
            grown[k] = sitk.GetImageFromArray(arrays[k].astype(np.uint16))
            grown[k].CopyInformation(inputs.labels[k])
        return PriorSearchFinds(records, grown)

    def save(self, result: PriorSearchFinds, entry: CacheEntry) -> Any:
        for k, image in result.grown.items():
            atomic_write_image(image, entry.file(f"tp{k}.nii.gz"))
        return [r.to_dict() for r in result.records]

    def load(self, payload: Any, entry: CacheEntry, inputs: PriorSearchInputs) -> PriorSearchFinds:
        records = [SearchRecord.from_dict(r) for r in payload]
        # on the input label map's grid exactly (NIfTI stores the geometry as float32: 2e-5 mm off in centroids)
        return PriorSearchFinds(records, {k: label_on_grid(sitk.ReadImage(str(entry.file(f"tp{k}.nii.gz"))),
                                                           inputs.labels[k])
                                          for k in sorted({r.timepoint for r in records if r.roi_id})})


def _read_array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _cranial_cavities(loaded: list) -> Callable[[int], np.ndarray | None]:
    """The cranial cavity of a time point on its PET grid (None without CT), computed when first asked."""
    by_index = {tp.info.index: tp for tp in loaded}

    def cranial_of(k: int) -> np.ndarray | None:
        from LesionResponseLib.segmentation.anatomy import cranial_cavity

        tp = by_index[k]
        return cranial_cavity(tp.ct, tp.pet_suv) if tp.ct is not None else None

    return cranial_of


def _physiological_threshold(params: AnalysisParameters, physiological: dict) -> float:
    """The segmentation model's ``physiological_threshold`` (``prior_guided.PHYSIOLOGICAL_PROBABILITY`` when no
    search reads a physiological map)."""
    from LesionResponseLib.segmentation.prior_guided import PHYSIOLOGICAL_PROBABILITY

    if not physiological:
        return PHYSIOLOGICAL_PROBABILITY
    from LesionResponseLib.segmentation.model import load_model

    return load_model(params.segmentation.model_path).config.physiological_threshold


# ------------------------------------------------------------------------------------------------ organs
@dataclass(frozen=True)
class OrgansInputs:
    timepoint: Any  # dicomio.LoadedTimePoint
    evidence: ModelEvidence | None = None  # the model's physiological map is read when there is one


class OrgansStage:
    """The organs of one time point (:mod:`LesionResponseLib.segmentation.organs`: liver, spleen, kidneys,
    skeleton, lungs, body) on the PET grid, with the reason for each organ not found; the reference regions and
    the lesion sites are placed in them."""

    name = "organs"
    prefix = "organs"
    # The model's physiological threshold is read from the model file's configuration.
    reads = ("segmentation.model_path",)
    inputs = ("the time point's PET series UID and SUV factor, its CT series UID and the model's physiological map "
              "it reads (its cache file name, which holds the segmentation key)")

    @property
    def version(self) -> int:
        from LesionResponseLib.segmentation.organs import ORGANS_RULE_VERSION

        return ORGANS_RULE_VERSION

    @staticmethod
    def _physiological(inputs: OrgansInputs) -> Path | None:
        evidence = inputs.evidence
        return evidence.physiological if evidence is not None and evidence.physiological is not None \
            and evidence.physiological.is_file() else None

    def identity(self, inputs: OrgansInputs, params: AnalysisParameters) -> Any:
        info, physiological = inputs.timepoint.info, self._physiological(inputs)
        return [info.pet_series_instance_uid, round(info.suv_factor, 12), info.ct_series_instance_uid,
                physiological.name if physiological else None]

    def compute(self, inputs: OrgansInputs, params: AnalysisParameters) -> Any:
        from LesionResponseLib.segmentation.organs import find_organs

        tp, physiological = inputs.timepoint, self._physiological(inputs)
        probability = _read_array(physiological) if physiological else None
        threshold = _physiological_threshold(params, {tp.info.index: physiological} if physiological else {})
        return find_organs(tp.pet_suv, tp.ct, probability, threshold)

    def save(self, result: Any, entry: CacheEntry) -> Any:
        atomic_write_image(result.image(), entry.file("labels.nii.gz"))
        return {"missing": result.missing}

    def load(self, payload: Any, entry: CacheEntry, inputs: OrgansInputs) -> Any:
        from LesionResponseLib.segmentation.organs import Organs

        # on the PET grid exactly (NIfTI stores the geometry as float32)
        image = label_on_grid(sitk.ReadImage(str(entry.file("labels.nii.gz"))), inputs.timepoint.pet_suv,
                              sitk.sitkUInt8)
        organs = Organs.from_image(image)
        organs.missing = dict(payload["missing"])
        return organs


# ------------------------------------------------------------------------------------------------ the stages
SEGMENTATION, REGISTRATION, MATCHING, PRIOR_SEARCH = (SegmentationStage(), RegistrationStage(), MatchingStage(),
                                                      PriorSearchStage())
ORGANS = OrgansStage()
#: Every cached stage, in pipeline order; what each run: per time point, per follow-up, once (twice when the
#: search found ROIs: matching runs again on the grown label maps).
STAGES: tuple[tuple[Stage, str], ...] = (
    (SEGMENTATION, "per time point"), (REGISTRATION, "per follow-up onto the baseline"), (MATCHING, "once"),
    (PRIOR_SEARCH, "once, when `prior_search.enabled` and there are follow-ups"), (ORGANS, "per time point"))


def describe_cache_keys() -> str:
    """The cache keys of :data:`STAGES` as a Markdown list (this module's docstring holds it)."""
    lines = []
    for stage, runs in STAGES:
        settings = ", ".join(f"`{path}`" for path in stage.reads)
        lines.append(f"- **{stage.name}** ({runs}; `cache/{stage.prefix}-<key>.json`): {stage.inputs}; "
                     f"settings {settings}.")
    return "\n".join(lines)


__doc__ = (__doc__ or "").format(cache_keys=describe_cache_keys())
