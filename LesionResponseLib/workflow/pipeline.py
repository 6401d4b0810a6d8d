"""The ``analyze`` pipeline: DICOM → SUV → lesion-ROIs → measures → registration → tracks → response → folder.

Stages and their cache (``OUT/cache/``; a stage is reused when the hash of its inputs and of the
parameters it uses is unchanged, so a re-run after a matching-parameter change redoes only matching and
what follows):

- ``segmentation`` per time point, key = PET series UID + SUV factor + CT series UID + method + ``min_roi_volume_ml`` +
  ``equivocal_max_volume_ml`` + ``drop_intracranial_rois`` + model file hash (or the supplied label file's hash) → ``cache/seg-<key>.nii.gz``
  (+ ``seg-<key>-probability.nii.gz`` and ``-candidates.nii.gz``: the model's lesion probability as uint8 and the
  components it found that the ROI filters dropped, the search's model evidence; models with a physiological
  output add ``-physiological.nii.gz``, that map as uint8, where the search does not go).
- ``registration`` per follow-up k onto the baseline, key = PET/CT series UIDs of both + the method that runs (``auto`` resolved) →
  ``cache/reg-<key>.tfm|.h5`` + ``.json``; copied to ``OUT/transforms/tp0_to_tp{k}.*``.
- ``matching``, key = hash of every label map + the registration keys + the ``matching`` settings
  → ``cache/match-<key>.json``.
- ``prior-guided search`` (``params.prior_search.enabled``, :mod:`LesionResponseLib.workflow.prior_search`): every
  track is looked for where it has no ROI, key = hash of every label map + the registration keys + PET series
  UIDs and SUV factors + CT series UIDs (the cranial cavity) + the detection rule's version +
  the settings of ``workflow.prior_search.SEARCH_SETTINGS`` + the
  model file hash (when its probabilities are the model evidence) → ``cache/prior-<key>.json`` (+ the grown
  label maps); when it found ROIs, the time points that gained them are re-measured and matching runs again on
  the grown label maps.
- ``organs`` per time point (``segmentation.organs``: liver, spleen, kidneys, skeleton, lungs, body), key = PET
  series UID + SUV factor + CT series UID + the rule's version + the model's physiological map it read (its cache
  name) → ``cache/organs-<key>.nii.gz`` (+ ``.json``: why an organ was not found); copied to
  ``OUT/anatomy/tp{k}.nii.gz``, where the review checks a moved reference region.
- Quantification, tracks, response, reference regions (``analysis.reference``) and lesion sites
  (``analysis.sites``) are cheap and always recomputed.

Besides docs/DOMAIN.md §8 the folder gets ``suv/tp{k}.nii.gz`` (float32 SUV PET, rewritten only when the PET
series or its SUV factor changed), read by the review, the reports and the Slicer module without going
back to DICOM, and ``ct/tp{k}.nii.gz`` (the CT in HU, for CT/PET fusion in the review). When the folder holds a reader's review (``review/session.json``), the edits are
re-applied to the new result and those that no longer apply are listed (``review/not_applicable.json``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from LesionResponseLib import __version__
from LesionResponseLib.analysis.outputs import (
    atomic_write_image,
    atomic_write_text,
    load_analysis,
    write_ct_images,
    write_outputs,
)
from LesionResponseLib.analysis.quantify import measure_rois
from LesionResponseLib.analysis.response import assess_response
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.datamodel import Analysis, LesionROI, Link, RegistrationResult
from LesionResponseLib.errors import LesionResponseError, describe
from LesionResponseLib.imaging import label_on_grid

MATCH_SECTIONS = ("matching",)  # the config sections the matching reads (its cache key)
LABEL_NAMES = ("tp{k}.nii.gz", "tp{k}_lesions.nii.gz")  # analysis labels/ folder, phantom truth/ folder


class AnalysisError(LesionResponseError):
    """The pipeline cannot run on this input (no time points, missing labels, a stage not available)."""


@dataclass
class RunReport:
    """What one :func:`run_pipeline` call did: per stage item, ``"computed"`` or ``"reused"``."""

    stages: dict[str, str] = field(default_factory=dict)
    review: dict[str, Any] | None = None  # reapply_review() result when the folder held a review session

    def reused(self) -> list[str]:
        return [name for name, how in self.stages.items() if how == "reused"]


# ------------------------------------------------------------------------------------------------ hashing
def _digest(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def file_digest(path: str | Path) -> str:
    """SHA-256 (first 20 hex digits) of a file, or of every file in a folder (sorted by relative path)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for item in files:
        digest.update(str(item.relative_to(path) if path.is_dir() else item.name).encode())
        with item.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:20]


def image_digest(image: sitk.Image) -> str:
    """Hash of an image's voxels and geometry."""
    digest = hashlib.sha256(sitk.GetArrayViewFromImage(image).tobytes())
    digest.update(repr((image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())).encode())
    return digest.hexdigest()[:20]


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


# ------------------------------------------------------------------------------------------------ stages
def _find_label_file(labels_dir: Path, k: int) -> Path:
    for name in LABEL_NAMES:
        if (labels_dir / name.format(k=k)).is_file():
            return labels_dir / name.format(k=k)
    raise AnalysisError(describe(f"no label map for time point {k}", path=labels_dir,
                                 fix=f"Provide {' or '.join(n.format(k=k) for n in LABEL_NAMES)} for every time point."))


def on_pet_grid(labels: sitk.Image, pet: sitk.Image) -> sitk.Image:
    """``labels`` as uint16 on the PET grid (nearest neighbour when the grids differ)."""
    return label_on_grid(labels, pet, sitk.sitkUInt16)


@dataclass
class ModelEvidence:
    """Where a model's evidence for the prior-guided search at one time point is cached (PET grid): its lesion
    probability as uint8 (× ``prior_guided.PROBABILITY_UINT8_SCALE``), its dropped candidates (uint16 labels)
    and, for models with a ``physiological`` output, that map as uint8 (written with the others, so it exists
    exactly when the model has it). The search reads them only when it runs (not when its result is reused)."""

    probability: Path
    candidates: Path
    physiological: Path


def segmentation_stage(tp: Any, params: AnalysisParameters, cache: Path, labels_dir: Path | None,
                       report: RunReport) -> tuple[sitk.Image, ModelEvidence | None]:
    """Label map of one loaded time point (from ``labels_dir``, the cache, or :func:`segment_with_evidence`) and,
    for a model, its :class:`ModelEvidence` (None for label files and the threshold method)."""
    k = tp.info.index
    source = file_digest(_find_label_file(labels_dir, k)) if labels_dir else model_digest(params)
    # The CT series is part of the key: models with a CT input channel read it.
    key = _digest("seg", tp.info.pet_series_instance_uid, round(tp.info.suv_factor, 12), tp.info.ct_series_instance_uid,
                  params.segmentation.method if not labels_dir else "labels", params.segmentation.min_roi_volume_ml, source,
                  *([params.segmentation.equivocal_max_volume_ml, params.segmentation.drop_intracranial] if not labels_dir else []))
    path = cache / f"seg-{key}.nii.gz"
    evidence = None
    if not labels_dir and params.segmentation.method != "threshold":
        evidence = ModelEvidence(*(cache / f"seg-{key}-{name}.nii.gz"
                                   for name in ("probability", "candidates", "physiological")))
    if path.is_file() and (evidence is None or (evidence.probability.is_file() and evidence.candidates.is_file())):
        report.stages[f"segmentation tp{k}"] = "reused"
        return on_pet_grid(sitk.ReadImage(str(path)), tp.pet_suv), evidence
    if labels_dir:
        labels = on_pet_grid(sitk.ReadImage(str(_find_label_file(labels_dir, k))), tp.pet_suv)
    else:
        from LesionResponseLib.segmentation import segment_with_evidence

        output = segment_with_evidence(tp.pet_suv, tp.ct, method=params.segmentation.method,
                                       model_path=params.segmentation.model_path, min_volume_ml=params.segmentation.min_roi_volume_ml,
                                       equivocal_max_volume_ml=params.segmentation.equivocal_max_volume_ml,
                                       drop_intracranial=params.segmentation.drop_intracranial)
        labels = on_pet_grid(output.labels, tp.pet_suv)
        if evidence is not None and output.probability is not None and output.candidates is not None:
            from LesionResponseLib.segmentation.prior_guided import PROBABILITY_UINT8_SCALE

            def as_uint8(image: sitk.Image) -> np.ndarray:
                return np.rint(np.clip(sitk.GetArrayViewFromImage(image), 0.0, 1.0)
                               * PROBABILITY_UINT8_SCALE).astype(np.uint8)

            files = [(as_uint8(output.probability), evidence.probability),
                     (sitk.GetArrayViewFromImage(output.candidates).astype(np.uint16), evidence.candidates)]
            if output.physiological is not None:
                files.append((as_uint8(output.physiological), evidence.physiological))
            for array, evidence_path in files:
                image = sitk.GetImageFromArray(array)
                image.CopyInformation(tp.pet_suv)
                atomic_write_image(image, evidence_path)
    atomic_write_image(labels, path)
    report.stages[f"segmentation tp{k}"] = "computed"
    return labels, evidence


def registration_stage(fixed: Any, moving: Any, params: AnalysisParameters, out: Path,
                       report: RunReport) -> tuple[sitk.Transform, RegistrationResult, str]:
    """Register ``moving`` onto ``fixed`` (cached); writes ``OUT/transforms/tp{i}_to_tp{j}.*``."""
    from LesionResponseLib.tracking import load_transform, register_pair, save_transform, transform_filename
    from LesionResponseLib.tracking.registration import resolve_method

    i, j = fixed.info.index, moving.info.index
    # Keyed on the method that will run ("auto" becomes an elastix engine or sitk-bspline), so installing
    # elastix later does not reuse a result of the fallback.
    key = _digest("reg", [fixed.info.pet_series_instance_uid, fixed.info.ct_series_instance_uid],
                  [moving.info.pet_series_instance_uid, moving.info.ct_series_instance_uid],
                  resolve_method(params.registration.method)[0])
    meta = out / "cache" / f"reg-{key}.json"
    if meta.is_file():
        cached = json.loads(meta.read_text())
        transform = load_transform(out / "cache" / cached["file"])
        result = RegistrationResult.from_dict(cached["result"])
        report.stages[f"registration tp{i}->tp{j}"] = "reused"
    else:
        transform, result = register_pair(fixed, moving, method=params.registration.method)
        suffix = Path(transform_filename(i, j, transform)).suffix
        save_transform(transform, out / "cache" / f"reg-{key}{suffix}")
        atomic_write_text(meta, json.dumps({"file": f"reg-{key}{suffix}", "result": result.to_dict()}))
        report.stages[f"registration tp{i}->tp{j}"] = "computed"
    relative = transform_filename(i, j, transform)
    save_transform(transform, out / relative)
    result.transform_path = relative
    return transform, result, key


def matching_stage(labels: dict[int, sitk.Image], rois: list[LesionROI], transforms: dict, reg_keys: list[str],
                   params: AnalysisParameters, cache: Path, report: RunReport) -> list[Link]:
    """Links between ROIs of different time points (cached on labels, registrations, matching params)."""
    if len(labels) < 2:
        return []
    from LesionResponseLib.tracking import match_rois

    key = _digest("match", [image_digest(labels[k]) for k in sorted(labels)], reg_keys,
                  params.digest_of(*MATCH_SECTIONS))
    path = cache / f"match-{key}.json"
    if path.is_file():
        report.stages["matching"] = "reused"
        return [Link.from_dict(x) for x in json.loads(path.read_text())]
    links = match_rois(labels, rois, transforms, params)
    atomic_write_text(path, json.dumps([x.to_dict() for x in links]))
    report.stages["matching"] = "computed"
    return links


def prior_search_stage(loaded: list, labels: dict[int, sitk.Image], rois: list[LesionROI], tracks: list,
                       transforms: dict, reg_keys: list[str], params: AnalysisParameters, cache: Path,
                       report: RunReport, evidence: dict[int, ModelEvidence | None] | None = None,
                       ) -> tuple[dict[int, sitk.Image], list[LesionROI], list[dict[str, Any]]]:
    """Prior-guided search of every track's missing time points (``workflow.prior_search``), cached on the
    label maps, registrations, PET series (+ SUV factor), the model (whose :class:`ModelEvidence` the searches
    use) and search parameters."""
    from LesionResponseLib.segmentation.prior_guided import SEARCH_RULE_VERSION
    from LesionResponseLib.workflow.prior_search import SEARCH_SETTINGS, prior_guided_stage

    evidence = {k: v for k, v in (evidence or {}).items() if v is not None}
    probabilities = {k: v.probability for k, v in evidence.items()}
    candidates = {k: v.candidates for k, v in evidence.items()} if params.prior_search.candidates else {}
    physiological = {k: v.physiological for k, v in evidence.items()
                     if v.physiological.is_file()} if params.prior_search.skip_physiological else {}
    model = model_digest(params) if evidence else None
    key = _digest("prior", SEARCH_RULE_VERSION, [[image_digest(labels[k]) for k in sorted(labels)], reg_keys,
                                                 [[tp.info.pet_series_instance_uid, round(tp.info.suv_factor, 12),
                                                   tp.info.ct_series_instance_uid] for tp in loaded]],
                  {path: params.value(path) for path in SEARCH_SETTINGS}, model)
    pets = {tp.info.index: tp.pet_suv for tp in loaded}
    by_index = {tp.info.index: tp for tp in loaded}

    def cranial_of(k: int) -> np.ndarray | None:
        from LesionResponseLib.segmentation.anatomy import cranial_cavity

        tp = by_index[k]
        return cranial_cavity(tp.ct, tp.pet_suv) if tp.ct is not None else None

    labels, rois, records, reused = prior_guided_stage(key, tracks, rois, labels, pets, transforms, params, cache,
                                                       probabilities, candidates,
                                                       cranial_of if params.prior_search.skip_intracranial else None,
                                                       physiological, _physiological_threshold(params, physiological))
    report.stages["prior-guided search"] = "reused" if reused else "computed"
    return labels, rois, records


def _physiological_threshold(params: AnalysisParameters, physiological: dict) -> float:
    """The segmentation model's ``physiological_threshold`` (``prior_guided.PHYSIOLOGICAL_PROBABILITY`` when no
    search reads a physiological map)."""
    from LesionResponseLib.segmentation.prior_guided import PHYSIOLOGICAL_PROBABILITY

    if not physiological:
        return PHYSIOLOGICAL_PROBABILITY
    from LesionResponseLib.segmentation.model import load_model

    return load_model(params.segmentation.model_path).config.physiological_threshold


def organs_stage(tp: Any, evidence: ModelEvidence | None, params: AnalysisParameters, out: Path,
                 report: RunReport) -> Any:
    """The organs of one loaded time point (``segmentation.organs``; cached), also written to
    ``OUT/anatomy/tp{k}.nii.gz``."""
    from LesionResponseLib.segmentation.organs import ORGANS_RULE_VERSION, Organs, find_organs

    k = tp.info.index
    physiological = evidence.physiological if evidence is not None and evidence.physiological.is_file() else None
    key = _digest("organs", ORGANS_RULE_VERSION, tp.info.pet_series_instance_uid, round(tp.info.suv_factor, 12),
                  tp.info.ct_series_instance_uid, physiological.name if physiological else None)
    path, reasons = out / "cache" / f"organs-{key}.nii.gz", out / "cache" / f"organs-{key}.json"
    if path.is_file() and reasons.is_file():
        organs = Organs.from_image(sitk.ReadImage(str(path)))
        organs.missing = json.loads(reasons.read_text())
        report.stages[f"organs tp{k}"] = "reused"
    else:
        probability = sitk.GetArrayFromImage(sitk.ReadImage(str(physiological))) if physiological else None
        organs = find_organs(tp.pet_suv, tp.ct, probability, _physiological_threshold(
            params, {k: physiological} if physiological else {}))
        atomic_write_image(organs.image(), path)
        atomic_write_text(reasons, json.dumps(organs.missing))
        report.stages[f"organs tp{k}"] = "computed"
    atomic_write_image(organs.image(), out / "anatomy" / f"tp{k}.nii.gz")
    return organs


def reference_stage(loaded: list, labels: dict[int, sitk.Image], rois: list[LesionROI],
                    evidence: dict[int, ModelEvidence | None], params: AnalysisParameters, out: Path,
                    report: RunReport) -> list:
    """The liver and spleen reference regions of every time point (``analysis.reference``); sets each ROI's site
    (``analysis.sites``; none on a time point without CT)."""
    from LesionResponseLib.analysis.reference import place_reference_regions
    from LesionResponseLib.analysis.sites import lesion_sites

    regions = []
    for tp in loaded:
        k = tp.info.index
        organs = organs_stage(tp, evidence.get(k), params, out, report)
        regions += place_reference_regions(tp.pet_suv, labels[k], organs, k, params)
        sites = lesion_sites(labels[k], organs) if tp.ct is not None and organs.found else {}
        for roi in rois:
            if roi.timepoint == k:
                roi.site, roi.site_source = sites.get(roi.label, ""), "automatic"
    return regions


# ------------------------------------------------------------------------------------------------ pipeline
def _inventory(input_dir: Path, patient: str | None, weight_kg: float | None = None) -> list:
    from LesionResponseLib.dicomio import find_timepoints

    if not input_dir.exists():
        raise AnalysisError(describe("input folder does not exist", path=input_dir,
                                     fix="Give the folder that holds the patient's DICOM files."))
    timepoints = find_timepoints(input_dir, patient=patient, weight_kg=weight_kg).timepoints
    if not timepoints:
        raise AnalysisError(describe("no quantitative PET time point found", path=input_dir,
                                     fix="Check the folder with `lesion-response inspect INPUT`."))
    return timepoints


def _previous_tracks(out: Path) -> list | None:
    try:
        return load_analysis(out).tracks if (out / "analysis.json").is_file() else None
    except LesionResponseError:
        return None


def run_pipeline(input_dir: str | Path, out_dir: str | Path, params: AnalysisParameters | None = None,
                 patient: str | None = None, labels_dir: str | Path | None = None,
                 step: Callable[[str], None] | None = None) -> tuple[Analysis, RunReport]:
    """Run every stage (module docstring) and write the output folder; ``step(name)`` announces each stage."""
    from LesionResponseLib.dicomio import load_timepoint
    from LesionResponseLib.tracking import build_tracks

    params = params or AnalysisParameters()
    announce = step or (lambda _name: None)
    out, report = Path(out_dir), RunReport()
    labels_path = Path(labels_dir) if labels_dir else None
    if params.segmentation.method == "truth" and not labels_path:
        raise AnalysisError(describe("segmentation 'truth' needs the phantom's truth masks",
                                     path=input_dir, fix="Pass labels_dir (--labels PHANTOM/truth)."))
    if labels_path:  # record where the ROIs came from (analysis.json parameters)
        params = params.updated({"segmentation.labels_dir": str(labels_path.resolve())})
    (out / "cache").mkdir(parents=True, exist_ok=True)
    announce("indexing DICOM")
    infos = _inventory(Path(input_dir), patient, params.input.weight_kg)
    loaded, labels, rois, evidence = [], {}, [], {}
    for info in infos:
        announce(f"loading time point {info.index}")
        loaded.append(load_timepoint(info))
        announce(f"segmenting time point {info.index}")
        labels[info.index], evidence[info.index] = segmentation_stage(loaded[-1], params, out / "cache",
                                                                      labels_path, report)
        rois += measure_rois(labels[info.index], loaded[-1].pet_suv, info.index, psf_fwhm_mm=params.quantification.psf_fwhm_mm)
    transforms, registrations, reg_keys = {}, [], []
    for moving in loaded[1:]:
        announce(f"registering time point {moving.info.index} onto baseline")
        transform, result, key = registration_stage(loaded[0], moving, params, out, report)
        transforms[(0, moving.info.index)] = transform
        registrations.append(result)
        reg_keys.append(key)
    announce("matching lesion-ROIs")
    links = matching_stage(labels, rois, transforms, reg_keys, params, out / "cache", report)
    previous = _previous_tracks(out)
    tracks = build_tracks(rois, links, previous=previous)
    searches: list[dict[str, Any]] = []
    if params.prior_search.enabled and len(loaded) > 1:
        announce("prior-guided search")
        labels, rois, searches = prior_search_stage(loaded, labels, rois, tracks, transforms, reg_keys, params,
                                                    out / "cache", report, evidence)
        if any(record["roi_id"] for record in searches):
            links = matching_stage(labels, rois, transforms, reg_keys, params, out / "cache", report)
            tracks = build_tracks(rois, links, previous=previous)
    responses, heterogeneous = assess_response(tracks, rois, len(infos), params)
    announce("reference regions and lesion sites")
    references = reference_stage(loaded, labels, rois, evidence, params, out, report)
    analysis = Analysis(patient_id=infos[0].patient_id, timepoints=infos, rois=rois, registrations=registrations,
                        links=links, tracks=tracks, responses=responses, heterogeneous=heterogeneous,
                        parameters=params, software_version=__version__, prior_searches=searches,
                        reference_regions=references)
    announce("writing outputs")
    write_outputs(analysis, out, labels)
    write_suv_images(loaded, out)
    write_ct_images(loaded, out)
    _drop_stale_transforms(out, {r.transform_path for r in registrations})
    if (out / "review" / "session.json").is_file():
        from LesionResponseLib.review import reapply_review

        announce("re-applying the reader's review")
        report.review = reapply_review(out)
    return analysis, report


def write_suv_images(loaded: list, out: Path) -> None:
    """``OUT/suv/tp{k}.nii.gz`` per time point (float32 SUV); skipped when already written for this PET."""
    folder = out / "suv"
    folder.mkdir(parents=True, exist_ok=True)
    index_path = folder / "index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    for tp in loaded:
        name = f"tp{tp.info.index}.nii.gz"
        stamp = f"{tp.info.pet_series_instance_uid}:{tp.info.suv_factor:.12g}"
        if index.get(name) != stamp or not (folder / name).is_file():
            atomic_write_image(sitk.Cast(tp.pet_suv, sitk.sitkFloat32), folder / name)
            index[name] = stamp
    for stale in set(index) - {f"tp{tp.info.index}.nii.gz" for tp in loaded}:
        (folder / stale).unlink(missing_ok=True)
        index.pop(stale)
    atomic_write_text(index_path, json.dumps(index, indent=1, sort_keys=True))


def _drop_stale_transforms(out: Path, keep: set[str]) -> None:
    folder = out / "transforms"
    for path in folder.glob("*") if folder.is_dir() else []:
        if f"transforms/{path.name}" not in keep and path.is_file():
            path.unlink()


def analyze(input_dir: str | Path, out_dir: str | Path, params: AnalysisParameters | None = None,
            patient: str | None = None, labels_dir: str | Path | None = None, progress: bool = True) -> Analysis:
    """Analyse one patient's DICOM folder into ``out_dir`` (docs/DOMAIN.md §8); see :func:`run_pipeline`.

    ``labels_dir``: use ``tp{k}.nii.gz`` (or ``tp{k}_lesions.nii.gz``, phantom truth) instead of
    segmenting. ``progress``: show the current stage on the terminal (rich).
    """
    if not progress:
        return run_pipeline(input_dir, out_dir, params, patient, labels_dir)[0]
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("starting") as status:
        analysis, _ = run_pipeline(input_dir, out_dir, params, patient, labels_dir,
                                   step=lambda name: status.update(name))
    return analysis


def clear_cache(out_dir: str | Path) -> None:
    """Remove ``OUT/cache`` (forces every stage to be recomputed)."""
    shutil.rmtree(Path(out_dir) / "cache", ignore_errors=True)
