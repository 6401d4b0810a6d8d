"""The cohort runner: every patient's ``analyze`` as one Dask task, then the cohort figures and report.

Input (:func:`discover`): a folder tree (every patient :func:`~LesionResponseLib.dicomio.index_folder`
finds, as ``inspect`` does), a manifest CSV (``patient_id`` and ``folder`` and/or ``pacs`` columns), or a
PACS (:mod:`LesionResponseLib.dicomio.pacs`; each patient's PT/CT series retrieved into a local cache).

Output folder ``OUT``::

    OUT/patients/<patient>/        the analysis folder of docs/DOMAIN.md §8 (``analyze``'s), plus
        cohort-done.json           written last, atomically: the input+parameter key of the finished analysis
        cohort-failed.json         the error of the last failed attempt (removed when one succeeds)
        cohort-log.jsonl           one line per attempt event (started / finished / skipped / failed)
    OUT/pacs-cache/<patient>/      retrieved DICOM (``--pacs``; ``--cache`` moves it)
    OUT/cohort.json, cohort.csv    the cohort figures (as the ``cohort`` command writes them)
    OUT/cohort-run.json            every patient's status, error and time in this run
    OUT/report/cohort.html, .csv   the cohort report (``cohort-report``)

Isolation and resumption: a patient is skipped when ``cohort-done.json`` holds the key of its current
inputs (relative path, size and mtime of every input file) and parameters (``AnalysisParameters``, model
file digest, software version). A task holds a file lock on its patient folder, so even a worker orphaned
by a killed driver and the new run never analyse one patient at the same time; a failure (bad DICOM, one
time point, a crash, a worker killed) is recorded for that patient and the others go on. Reader reviews
in a patient folder are kept: ``run_pipeline`` re-applies them after a re-analysis.

Threads: a patient's analysis uses torch (segmentation) and ITK (registration, resampling). Each task sets
torch, ITK and the OpenMP/BLAS pools to its share of the cores (:func:`limit_threads`) so that workers ×
threads never exceeds them.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import re
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from LesionResponseLib import __version__
from LesionResponseLib.analysis.outputs import atomic_write_text, remove_orphaned_temporaries
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.errors import LesionResponseError, describe

DONE, FAILED, LOG = "cohort-done.json", "cohort-failed.json", "cohort-log.jsonl"
PATIENTS = "patients"  # OUT/patients/<patient>/: one analysis folder per patient
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS")
#: a whole-body analysis peaks near 3 GB (benchmarks/bench_cohort.py); workers beyond RAM / this swap
MEMORY_PER_PATIENT_BYTES = 4 * 1024**3
#: threads one patient can use: segmentation caps torch at 2 (segmentation/model.py), registration runs 2
THREADS_PER_PATIENT = 2


class CohortError(LesionResponseError):
    """The cohort cannot start: no patient found, an unreadable manifest, no scheduler."""


@dataclass(frozen=True)
class PatientJob:
    """One patient to analyse: a DICOM ``folder`` (``patient``: the PatientID to pick in it) or a ``pacs``;
    ``labels``: a folder of label maps ``tp{k}.nii.gz`` to use instead of segmenting (``analyze --labels``)."""

    patient_id: str
    folder: str | None = None
    patient: str | None = None
    pacs: str | None = None
    labels: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class PatientResult:
    """One patient's outcome in a cohort run (an entry of ``cohort-run.json``'s ``patients``)."""

    patient_id: str
    folder: str
    status: str = "failed"  # done | skipped | failed
    error: str | None = None
    seconds: float | None = None
    worker_peak_rss_mb: float | None = None  # the worker's peak memory after an analysis

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------ discovery
def discover(input_path: str | Path | None, pacs: str | None = None,
             patients: list[str] | None = None, *, unpack_dir: str | Path | None = None) -> list[PatientJob]:
    """The patients of a folder tree (symbolic links followed, ZIP archives unpacked into ``unpack_dir``), a
    manifest CSV or (no input) a PACS; ``patients`` keeps only those IDs."""
    if input_path is None:
        if not pacs:
            raise CohortError(describe("no input", fix="Give a folder, a manifest CSV, or --pacs ADDRESS."))
        jobs = [PatientJob(pid, pacs=pacs) for pid in (patients or _pacs_patients(pacs))]
    elif Path(input_path).suffix.lower() == ".csv":
        jobs = read_manifest(input_path, pacs)
    else:
        jobs = _folder_patients(Path(input_path), unpack_dir)
    if patients:
        jobs = [j for j in jobs if j.patient_id in set(patients)]
    if not jobs:
        raise CohortError(describe("no patient to analyse", path=input_path or pacs,
                                   fix="Check the input with `lesion-response inspect` (folders) or the manifest's "
                                       "patient_id column, and --patient."))
    return jobs


def _pacs_patients(pacs: str) -> list[str]:
    from LesionResponseLib.dicomio.pacs import find_patients, parse_pacs

    return find_patients(parse_pacs(pacs))


def read_manifest(path: str | Path, pacs: str | None = None) -> list[PatientJob]:
    """Rows ``patient_id`` + ``folder`` (relative to the manifest's folder) and/or ``pacs`` (an address; an
    empty cell with ``--pacs`` given means that PACS); optional ``labels`` (a label-map folder, relative too)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as err:
        raise CohortError(describe(f"cannot read the manifest ({err.strerror})", path=path,
                                   fix="Give a CSV with columns patient_id and folder (or pacs).")) from None
    jobs = []
    for number, row in enumerate(rows, 2):
        pid, folder = (row.get("patient_id") or "").strip(), (row.get("folder") or "").strip()
        source = (row.get("pacs") or "").strip() or (pacs if not folder else None)
        if not pid or not (folder or source):
            raise CohortError(describe(f"line {number}: needs a patient_id and a folder or a pacs address", path=path,
                                       fix="Columns: patient_id,folder[,pacs]; or pass --pacs for rows without "
                                           "a folder."))
        labels = (row.get("labels") or "").strip()
        jobs.append(PatientJob(pid, folder=str((path.parent / folder).resolve()) if folder else None,
                               patient=pid if folder else None, pacs=source if not folder else None,
                               labels=str((path.parent / labels).resolve()) if labels else None))
    return jobs


def _folder_patients(root: Path, unpack_dir: str | Path | None = None) -> list[PatientJob]:
    """One job per PatientID in ``root``; its folder is the deepest folder holding all of that patient's
    files and none of another patient's (else ``root``, or the folder its ZIP archive was unpacked into, with
    the PatientID to pick). Paths keep the symbolic links they were found through."""
    from LesionResponseLib.dicomio import index_folder

    index = index_folder(root, unpack_dir=unpack_dir)
    tops = [Path(folder) for folder in index.archives.values()] + [root]
    files = {pid: [i.path for st in p.studies.values() for se in st.series.values() for i in se.instances]
             for pid, p in index.patients.items()}
    jobs = []
    for pid, paths in sorted(files.items()):
        folder = Path(os.path.commonpath([os.path.dirname(p) for p in paths]))
        top = next((t for t in tops if folder.is_relative_to(t)), root)
        others = [q for other, ps in files.items() if other != pid for q in ps]
        while folder != top and any(Path(q).is_relative_to(folder) for q in others):
            folder = folder.parent
        jobs.append(PatientJob(pid, folder=str(folder), patient=pid))
    return jobs


# ------------------------------------------------------------------------------------------------ one task
def patient_folder_name(patient_id: str) -> str:
    """A file-system-safe folder name for a PatientID (a hash suffix when characters had to be replaced)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", patient_id).strip(".") or "patient"
    return safe if safe == patient_id else f"{safe}-{hashlib.sha1(patient_id.encode()).hexdigest()[:6]}"


def input_fingerprint(folder: str | Path) -> str:
    """Hash of (relative path, size, mtime) of every file under ``folder`` (symbolic links followed, as the index
    follows them): changes when any input does."""
    from LesionResponseLib.dicomio.sources import walk_files

    root = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(walk_files(root)):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def job_key(job: PatientJob, folder: str | Path, params: AnalysisParameters) -> str:
    """The key of one patient's analysis: inputs (and label maps), PatientID picked, parameters, model,
    software version."""
    from LesionResponseLib.workflow.stages import model_digest

    labels = input_fingerprint(job.labels) if job.labels else None
    text = json.dumps([input_fingerprint(folder), labels, job.patient, params.to_dict(), model_digest(params),
                       __version__], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def limit_threads(threads: int) -> None:
    """Size torch's, ITK's and the OpenMP/BLAS thread pools of this process to ``threads``."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    import SimpleITK as sitk

    sitk.ProcessObject_SetGlobalDefaultNumberOfThreads(threads)
    try:
        import torch
    except ImportError:  # torch is a dependency; without it only threshold segmentation runs
        return
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _threads_here() -> int:
    """This worker's share of the cores it may use (its CPU affinity over its Dask threads)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        from distributed import get_worker

        return max(1, cores // max(1, get_worker().state.nthreads))
    except (ImportError, ValueError):
        return max(1, cores)


def _log(folder: Path, event: str, **fields: Any) -> None:
    """Append one event line (a single small write: atomic on a local file system)."""
    line = json.dumps({"event": event, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": socket.gethostname(),
                       "pid": os.getpid(), **fields})
    with (folder / LOG).open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def _finished_key(folder: Path) -> str | None:
    try:
        return json.loads((folder / DONE).read_text())["key"] if (folder / "analysis.json").is_file() else None
    except (OSError, ValueError, KeyError):
        return None


def _check_follow_up(analysis: Any, folder: Path) -> None:
    if len(analysis.timepoints) < 2:
        raise CohortError(describe(f"only {len(analysis.timepoints)} time point: no follow-up to assess",
                                   path=folder, fix="A response needs a baseline and at least one follow-up scan; "
                                                    "add the patient's other studies to the input."))


def analyse_patient(job: PatientJob, out_dir: str, params: AnalysisParameters, cache_dir: str | None = None,
                    threads: int | None = None) -> PatientResult:
    """One Dask task: analyse ``job`` into ``OUT/patients/<patient>`` unless already done (module docstring);
    never raises for a bad patient (its error is recorded instead)."""
    from filelock import FileLock

    start = time.perf_counter()
    folder = Path(out_dir) / PATIENTS / patient_folder_name(job.patient_id)
    folder.mkdir(parents=True, exist_ok=True)
    result = PatientResult(job.patient_id, str(folder))
    limit_threads(threads or _threads_here())
    with FileLock(str(folder / ".cohort.lock")):
        try:
            source = _input_folder(job, Path(cache_dir) if cache_dir else Path(out_dir) / "pacs-cache")
            key = job_key(job, source, params)
            if _finished_key(folder) == key:
                _log(folder, "skipped", key=key)
                return dataclasses.replace(result, status="skipped", seconds=round(time.perf_counter() - start, 2))
            (folder / DONE).unlink(missing_ok=True)
            orphans = remove_orphaned_temporaries(folder)  # a killed run's half-written files
            _log(folder, "started", key=key, **({"removed_temporaries": len(orphans)} if orphans else {}))
            from LesionResponseLib.workflow.pipeline import run_pipeline

            analysis, _ = run_pipeline(source, folder, params, patient=job.patient, labels_dir=job.labels)
            _check_follow_up(analysis, folder)
        except Exception as err:  # a patient's failure is recorded and the cohort goes on
            error = f"{type(err).__name__}: {err}"
            record = {"patient_id": job.patient_id, "job": job.to_dict(), "error": error,
                      "traceback": traceback.format_exc(limit=-6)}
            atomic_write_text(folder / FAILED, json.dumps(record, indent=1))
            _log(folder, "failed", error=error[:500])
            return dataclasses.replace(result, error=error, seconds=round(time.perf_counter() - start, 2))
        (folder / FAILED).unlink(missing_ok=True)
        atomic_write_text(folder / DONE, json.dumps({"key": key, "job": job.to_dict(), "version": __version__,
                                                     "seconds": round(time.perf_counter() - start, 2)}, indent=1))
        _log(folder, "finished", key=key)
    return dataclasses.replace(result, status="done", seconds=round(time.perf_counter() - start, 2),
                               worker_peak_rss_mb=_peak_rss_mb())


def _peak_rss_mb() -> float | None:
    """Peak resident memory of this (worker) process so far, MB (Linux ru_maxrss is in kB)."""
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    except ImportError:  # not on Windows
        return None


def _input_folder(job: PatientJob, cache: Path) -> Path:
    if job.pacs:
        from LesionResponseLib.dicomio.pacs import parse_pacs, retrieve_patient

        target = cache / patient_folder_name(job.patient_id)
        retrieve_patient(parse_pacs(job.pacs), job.patient_id, target)
        return target
    if not job.folder or not Path(job.folder).is_dir():
        raise CohortError(describe("the patient's DICOM folder does not exist", path=job.folder,
                                   fix="Correct the manifest's folder column (relative to the manifest)."))
    return Path(job.folder)


# ------------------------------------------------------------------------------------------------ the run
@dataclass
class ClusterPlan:
    """How the cohort runs: an existing ``scheduler`` address, or a LocalCluster of ``workers`` processes,
    each analysing one patient at a time with ``threads`` compute threads and ``memory_limit`` (dask spec)."""

    scheduler: str | None = None
    workers: int | None = None
    threads: int | None = None
    memory_limit: str = "auto"
    dashboard_address: str = ":8787"


def default_workers(n_patients: int, cores: int | None = None, memory_bytes: int | None = None) -> int:
    """Local workers: one per :data:`THREADS_PER_PATIENT` cores, no more than RAM allows or patients need."""
    cores = cores or len(os.sched_getaffinity(0))
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(n_patients, cores // THREADS_PER_PATIENT, memory_bytes // MEMORY_PER_PATIENT_BYTES))


def start_client(plan: ClusterPlan, n_patients: int):
    """A ``distributed.Client`` on ``plan.scheduler`` or on a new LocalCluster; returns (client, threads)."""
    from distributed import Client, LocalCluster

    if plan.scheduler:
        try:
            return Client(plan.scheduler, timeout="30s"), plan.threads
        except OSError as err:
            raise CohortError(describe(f"no Dask scheduler at {plan.scheduler} ({err})",
                                       fix="Start one (dask scheduler, dask-jobqueue, dask-kubernetes) and give "
                                           "its address, e.g. tcp://host:8786.")) from None
    cores = len(os.sched_getaffinity(0))
    workers = plan.workers or default_workers(n_patients, cores)
    threads = plan.threads or max(1, cores // workers)
    # silence_logs: Dask's own warnings (a slow worker shutdown) would break the progress display; a worker
    # killed for memory still surfaces, as that patient's recorded failure (KilledWorker)
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, memory_limit=plan.memory_limit,
                           dashboard_address=plan.dashboard_address, silence_logs=logging.ERROR,
                           env={name: str(threads) for name in THREAD_VARIABLES})
    return Client(cluster), threads


def run_cohort(jobs: list[PatientJob], out_dir: str | Path, params: AnalysisParameters, plan: ClusterPlan, *,
               cache_dir: str | Path | None = None, on_start: Callable[[Any], None] | None = None,
               on_result: Callable[[PatientResult], None] | None = None) -> dict[str, Any]:
    """Analyse every job on Dask, then write the cohort figures and report (module docstring).

    ``on_start(client)`` is called once the cluster is up (print the dashboard), ``on_result(result)``
    per finished patient (a progress bar). Returns the content of ``OUT/cohort-run.json``.
    """
    from distributed import as_completed

    if params.segmentation.labels_dir:
        raise CohortError(describe("segmentation.labels_dir names one patient's label maps, not a cohort's",
                                   path=params.segmentation.labels_dir,
                                   fix="Give each patient's label folder in the manifest's labels column."))

    out = Path(out_dir).resolve()
    (out / PATIENTS).mkdir(parents=True, exist_ok=True)
    client, threads = start_client(plan, len(jobs))
    started = time.perf_counter()
    try:
        if on_start:
            on_start(client)
        futures = {client.submit(analyse_patient, job, str(out), params, str(cache_dir) if cache_dir else None,
                                 threads, key=f"analyse-{patient_folder_name(job.patient_id)}-{time.time_ns()}",
                                 pure=False, retries=0): job for job in jobs}
        results = []
        for future in as_completed(futures):
            try:
                result = future.result()
            except Exception as err:  # the worker itself died (memory, segfault): record it for that patient
                result = _worker_lost(futures[future], out, err)
            results.append(result)
            if on_result:
                on_result(result)
    finally:
        _close(client)
    run = {"patients": [r.to_dict() for r in sorted(results, key=lambda r: r.patient_id)],
           "seconds": round(time.perf_counter() - started, 1),
           "parameters": params.to_dict(), "version": __version__}
    run["figures"] = write_cohort_outputs(out, [r["folder"] for r in run["patients"] if r["status"] != "failed"])
    atomic_write_text(out / "cohort-run.json", json.dumps(run, indent=1, default=str))
    return run


def _worker_lost(job: PatientJob, out: Path, err: BaseException) -> PatientResult:
    folder = out / PATIENTS / patient_folder_name(job.patient_id)
    error = f"{type(err).__name__}: {err} (the worker analysing this patient died)"
    atomic_write_text(folder / FAILED, json.dumps({"patient_id": job.patient_id, "job": job.to_dict(),
                                                   "error": error}, indent=1))
    return PatientResult(job.patient_id, str(folder), error=error)


def _close(client: Any) -> None:
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def is_cohort_folder(path: str | Path) -> bool:
    """Whether ``path`` is a cohort's output folder (``OUT/patients/``) rather than one patient's analysis."""
    return (Path(path) / PATIENTS).is_dir() and not (Path(path) / "analysis.json").exists()


def patient_folders(out_dir: str | Path) -> list[tuple[str, Path, str | None]]:
    """Every patient of a cohort output folder: (folder name, folder, the error of its last failed analysis or
    None), by name."""
    found = []
    for folder in sorted(p for p in (Path(out_dir) / PATIENTS).iterdir() if p.is_dir()):
        error = None
        if (folder / FAILED).is_file():
            try:
                error = str(json.loads((folder / FAILED).read_text(encoding="utf-8")).get("error", "failed"))
            except (OSError, ValueError):
                error = "failed (unreadable cohort-failed.json)"
        found.append((folder.name, folder, error))
    return found


def write_cohort_outputs(out: Path, folders: list[str]) -> dict[str, Any] | None:
    """``OUT/cohort.json``, ``OUT/cohort.csv`` (the ``cohort`` command's) and ``OUT/report/`` for ``folders``."""
    from LesionResponseLib.analysis import load_analysis
    from LesionResponseLib.analysis.cohort import write_cohort_figures
    from LesionResponseLib.report import write_cohort_report

    if not folders:
        return None
    figures = write_cohort_figures([load_analysis(f) for f in folders], out)
    write_cohort_report(folders, out / "report")
    return figures
