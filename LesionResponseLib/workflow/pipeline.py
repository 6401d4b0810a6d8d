"""The ``analyze`` pipeline: DICOM → SUV → lesion-ROIs → measures → registration → tracks → response → folder.

The cached stages (segmentation per time point, registration per follow-up, matching, the prior-guided search)
are :mod:`LesionResponseLib.workflow.stages`, run by its one runner; their cache keys are listed there, generated
from each stage's declaration of the settings and inputs it reads, so a re-run after a change of settings redoes
only the stages that read them and what follows. Quantification, tracks and response are cheap and always
recomputed. When the prior-guided search (:mod:`LesionResponseLib.workflow.prior_search`) found ROIs, the time
points that gained them are re-measured and matching runs again on the grown label maps.

A ZIP archive given as (or inside) the input is unpacked into ``OUT/archives/<name>-<key>/`` (reused while
the archive is unchanged; ``TimePointInfo.pet_files`` point there). Besides docs/DOMAIN.md §8 the folder gets ``suv/tp{k}.nii.gz`` (float32 SUV PET, rewritten only when the PET
series or its SUV factor changed), read by the review, the reports and the Slicer module without going
back to DICOM, and ``ct/tp{k}.nii.gz`` (the CT in HU, for CT/PET fusion in the review). When the folder holds a
reader's review (``review/session.json``), the edits are re-applied to the new result and those that no longer
apply are listed (``review/not_applicable.json``).
"""

from __future__ import annotations

import json
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

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
from LesionResponseLib.datamodel import Analysis, InputSource, LesionROI, SearchRecord
from LesionResponseLib.errors import LesionResponseError, describe
from LesionResponseLib.workflow.stages import (
    MATCHING,
    ORGANS,
    PRIOR_SEARCH,
    REGISTRATION,
    SEGMENTATION,
    AnalysisError,
    MatchingInputs,
    ModelEvidence,
    OrgansInputs,
    PriorSearchInputs,
    RunReport,
    SegmentationInputs,
    find_label_file,
    run_stage,
)

if TYPE_CHECKING:
    from LesionResponseLib.review.store import SessionLock

__all__ = ["AnalysisError", "RunReport", "analyze", "clear_cache", "run_pipeline"]

ARCHIVES = "archives"  # ZIP archives of the input are unpacked here (OUT/archives/<name>-<key>/; not cache/:
# clear_cache must not break the DICOM paths analysis.json records)


def reference_stage(loaded: list, labels: dict[int, sitk.Image], rois: list[LesionROI], *,
                    evidence: dict[int, ModelEvidence], params: AnalysisParameters, out: Path,
                    report: RunReport) -> list:
    """The liver and spleen reference regions of every time point (``analysis.reference_regions``) in its organs (the
    cached :data:`~LesionResponseLib.workflow.stages.ORGANS` stage, also written to ``OUT/anatomy/tp{k}.nii.gz``,
    where the review checks a moved reference region); sets each ROI's site (``analysis.sites``; none on a time
    point without CT)."""
    from LesionResponseLib.analysis.reference_regions import place_reference_regions
    from LesionResponseLib.analysis.sites import lesion_sites

    regions = []
    for tp in loaded:
        k = tp.info.index
        organs, _ = run_stage(ORGANS, OrgansInputs(tp, evidence.get(k)), params, cache=out / "cache", report=report,
                              item=f"tp{k}")
        atomic_write_image(organs.image(), out / "anatomy" / f"tp{k}.nii.gz")
        regions += place_reference_regions(tp.pet_suv, labels[k], organs, k, params)
        sites = lesion_sites(labels[k], organs) if tp.ct is not None and organs.found else {}
        for roi in rois:
            if roi.timepoint == k:
                roi.site, roi.site_source = sites.get(roi.label, ""), "automatic"
    return regions


# ------------------------------------------------------------------------------------------------ pipeline
def _inventory(input_dir: Path, patient: str | None, *, weight_kg: float | None = None,
               allow_other_tracer: bool = False, unpack_dir: Path | None = None) -> list:
    from LesionResponseLib.dicomio import find_timepoints

    if not input_dir.exists():
        raise AnalysisError(describe("input folder does not exist", path=input_dir,
                                     fix="Give the folder that holds the patient's DICOM files."))
    timepoints = find_timepoints(input_dir, patient=patient, weight_kg=weight_kg, allow_other_tracer=allow_other_tracer,
                                 unpack_dir=unpack_dir).timepoints
    if not timepoints:
        raise AnalysisError(describe("no quantitative PET time point found", path=input_dir,
                                     fix="Check the folder with `lesion-response inspect INPUT`."))
    return timepoints


def _previous_tracks(out: Path) -> list | None:
    try:
        return load_analysis(out).tracks if (out / "analysis.json").is_file() else None
    except LesionResponseError:
        return None


def run_pipeline(input_dir: str | Path, out_dir: str | Path, params: AnalysisParameters | None = None, *,
                 patient: str | None = None, labels_dir: str | Path | None = None,
                 step: Callable[[str], None] | None = None) -> tuple[Analysis, RunReport]:
    """Run every stage (module docstring) and write the output folder; ``step(name)`` announces each stage.
    ``labels_dir`` (or ``params.segmentation.labels_dir``): label maps to use instead of segmenting.

    A folder that holds a review (``OUT/review/``) is written under its session lock, taken before anything is
    computed and kept until the review is re-applied: a reader editing it elsewhere makes the run stop at once
    (nothing written) instead of after minutes; a review app that starts the run hands its lock over
    (``review.store.LOCK_HANDOVER_ENV``)."""
    from LesionResponseLib.review.reconcile import REAPPLY_USER
    from LesionResponseLib.review.store import session_lock

    lock = session_lock(out_dir, REAPPLY_USER) if (Path(out_dir) / "review").is_dir() else None
    if lock is not None:
        lock.acquire()
    try:
        return _run_stages(input_dir, out_dir, params, patient=patient, labels_dir=labels_dir, step=step,
                           lock=lock)
    finally:
        if lock is not None:
            lock.release()


def _run_stages(input_dir: str | Path, out_dir: str | Path, params: AnalysisParameters | None, *,
                patient: str | None, labels_dir: str | Path | None, step: Callable[[str], None] | None,
                lock: SessionLock | None) -> tuple[Analysis, RunReport]:
    from LesionResponseLib.dicomio import load_timepoint
    from LesionResponseLib.tracking import build_tracks, save_transform, transform_filename

    params = params or AnalysisParameters()
    announce = step or (lambda _name: None)
    out, report = Path(out_dir), RunReport()
    labels_dir = labels_dir or params.segmentation.labels_dir
    labels_path = Path(labels_dir) if labels_dir else None
    if params.segmentation.method == "truth" and not labels_path:
        raise AnalysisError(describe("segmentation 'truth' needs the phantom's truth masks",
                                     path=input_dir, fix="Pass labels_dir (--labels PHANTOM/truth)."))
    if labels_path:  # record where the ROIs came from (analysis.json parameters)
        params = params.updated({"segmentation.labels_dir": str(labels_path.resolve())})
    cache = out / "cache"
    announce("indexing DICOM")
    infos = _inventory(Path(input_dir), patient, weight_kg=params.input.weight_kg,
                       allow_other_tracer=params.input.allow_other_tracer, unpack_dir=out / ARCHIVES)
    loaded, labels, rois, evidence = [], {}, [], {}
    for info in infos:
        announce(f"loading time point {info.index}")
        loaded.append(load_timepoint(info))
        announce(f"segmenting time point {info.index}")
        inputs = SegmentationInputs(loaded[-1], find_label_file(labels_path,
                                                                info.index) if labels_path else None)
        segmented, _ = run_stage(SEGMENTATION, inputs, params, cache=cache, report=report,
                                 item=f"tp{info.index}")
        labels[info.index] = segmented.labels
        if segmented.evidence is not None:
            evidence[info.index] = segmented.evidence
        rois += measure_rois(labels[info.index], loaded[-1].pet_suv, info.index, settings=params.quantification)
    transforms, registrations, reg_keys = {}, [], []
    for moving in loaded[1:]:
        k = moving.info.index
        announce(f"registering time point {k} onto baseline")
        registered, key = run_stage(REGISTRATION, (loaded[0], moving), params, cache=cache, report=report,
                                    item=f"tp0->tp{k}")
        registered.result.transform_path = transform_filename(0, k, registered.transform)
        save_transform(registered.transform, out / registered.result.transform_path)
        transforms[(0, k)] = registered.transform
        registrations.append(registered.result)
        reg_keys.append(key)

    def match() -> list:
        if len(labels) < 2:
            return []
        return run_stage(MATCHING, MatchingInputs(labels, rois, transforms, reg_keys), params, cache=cache,
                         report=report)[0]

    announce("matching lesion-ROIs")
    links = match()
    previous = _previous_tracks(out)
    tracks = build_tracks(rois, links, previous=previous)
    searches: list[SearchRecord] = []
    if params.prior_search.enabled and len(loaded) > 1:
        from LesionResponseLib.workflow.prior_search import add_finds

        announce("prior-guided search")
        finds, _ = run_stage(PRIOR_SEARCH, PriorSearchInputs(loaded, labels, rois, tracks, transforms, reg_keys,
                                                             evidence), params, cache=cache, report=report)
        searches = finds.records
        labels, rois = add_finds(rois, labels, {tp.info.index: tp.pet_suv for tp in loaded}, finds,
                                 settings=params.quantification)
        if any(record.roi_id for record in searches):
            links = match()
            tracks = build_tracks(rois, links, previous=previous)
    responses, heterogeneous = assess_response(tracks, rois, len(infos), params)
    announce("reference regions and lesion sites")
    references = reference_stage(loaded, labels, rois, evidence=evidence, params=params, out=out, report=report)
    analysis = Analysis(patient_id=infos[0].patient_id, timepoints=infos, rois=rois, registrations=registrations,
                        links=links, tracks=tracks, responses=responses, heterogeneous=heterogeneous,
                        parameters=params, software_version=__version__, prior_searches=searches,
                        reference_regions=references, input_source=InputSource.of(input_dir, patient))
    announce("writing outputs")
    with interrupts_deferred():  # a stop request now waits until the folder and its review are whole
        write_outputs(analysis, out, labels)
        write_suv_images(loaded, out)
        write_ct_images(loaded, out)
        _drop_stale_transforms(out, {r.transform_path for r in registrations})
        if (out / "review" / "session.json").is_file():
            from LesionResponseLib.review import reapply_review

            announce("re-applying the reader's review")
            report.review = reapply_review(out, lock=lock)
    return analysis, report


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl+C (SIGINT) and SIGTERM until the block ends, then act on them: the output folder is written whole
    or not at all by a stopped run (the stages before are cached atomically). Only in the main thread (signal
    handlers live there); a cohort's worker threads run the block as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, _frame: received.append(number))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            signal.raise_signal(received[0])


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


def analyze(input_dir: str | Path, out_dir: str | Path, params: AnalysisParameters | None = None, *,
            patient: str | None = None, labels_dir: str | Path | None = None, progress: bool = True) -> Analysis:
    """Analyse one patient's DICOM folder into ``out_dir`` (docs/DOMAIN.md §8); see :func:`run_pipeline`.

    ``labels_dir``: use ``tp{k}.nii.gz`` (or ``tp{k}_lesions.nii.gz``, phantom truth) instead of
    segmenting. ``progress``: show the current stage on the terminal (stderr).
    """
    if not progress:
        return run_pipeline(input_dir, out_dir, params, patient=patient, labels_dir=labels_dir)[0]
    from LesionResponseLib.terminal import cli_console

    with cli_console(stderr=True).status("starting") as status:
        analysis, _ = run_pipeline(input_dir, out_dir, params, patient=patient, labels_dir=labels_dir,
                                   step=lambda name: status.update(name))
    return analysis


def clear_cache(out_dir: str | Path) -> None:
    """Remove ``OUT/cache`` (forces every stage to be recomputed)."""
    shutil.rmtree(Path(out_dir) / "cache", ignore_errors=True)
