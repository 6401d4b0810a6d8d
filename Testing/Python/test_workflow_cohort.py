"""cohort-analyze on a real Dask LocalCluster: 3 small phantom patients + 1 broken one, re-run, kill and
resume, PACS input from a real Orthanc; the synthetic cohort plan and the truth cohort figures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import start_orthanc

from LesionResponseLib.analysis import cohort_summary, load_analysis, truth_cohort_summary
from LesionResponseLib.cli_base import EXIT_PARTIAL
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.workflow.cohort import (
    DONE,
    FAILED,
    LOG,
    ClusterPlan,
    CohortError,
    PatientJob,
    default_workers,
    discover,
    patient_folder_name,
    read_manifest,
    run_cohort,
)

# the fastest honest options: threshold segmentation and rigid registration on 160 mm slab phantoms
FAST = AnalysisParameters().updated({"segmentation.method": "threshold", "registration.method": "sitk-rigid"})
SLAB = {"axial_extent_mm": 160, "extras": False}
GOOD = ((2, 2, "siemens"), (3, 2, "philips"), (4, 3, "ge"))  # seed, scans, vendor
BROKEN = (5, 1, "gml")  # one scan: no follow-up to assess
PLAN = ClusterPlan(workers=2, dashboard_address=":0")
CLI_ARGS = ["--segmentation", "threshold", "--registration", "sitk-rigid", "--workers", "2",
            "--dashboard-address", ":0"]

# one pytest-xdist worker (--dist loadgroup): the cohort input tree is copied and the first run built once, and two
# tests' Dask clusters (2 worker processes each) do not compete for the same two cores
pytestmark = pytest.mark.xdist_group("workflow_cohort")


@pytest.fixture(scope="module")
def tree(make_phantom, tmp_path_factory) -> Path:
    """A folder tree with one sub-folder per patient (DICOM only), as a PACS export would be."""
    root = tmp_path_factory.mktemp("cohort-input")
    for seed, scans, vendor in (*GOOD, BROKEN):
        shutil.copytree(make_phantom(seed=seed, timepoints=scans, vendor=vendor, **SLAB) / "dicom",
                        root / f"patient-{seed}")
    return root


@pytest.fixture(scope="module")
def first_run(tree, build_once, tmp_path_factory) -> tuple[Path, dict]:
    """(a copy of the cohort's output folder, the run's summary); the run itself is done once per session
    (the job keys hash relative paths, sizes and mtimes, so every worker's copy of the tree has the same keys)."""

    def build(folder: Path) -> None:
        run = run_cohort(discover(tree), folder / "out", FAST, PLAN)
        (folder / "run.json").write_text(json.dumps(run, default=str))

    built = build_once("cohort_first_run", build)
    out = tmp_path_factory.mktemp("cohort-out") / "out"
    shutil.copytree(built / "out", out)
    return out, json.loads((built / "run.json").read_text())


def _events(out: Path, patient_id: str) -> list[str]:
    lines = (out / "patients" / patient_id / LOG).read_text().splitlines()
    return [json.loads(line)["event"] for line in lines]


def _status(run: dict) -> dict[str, str]:
    return {r["patient_id"]: r["status"] for r in run["patients"]}


@pytest.mark.slow
def test_three_analysed_one_failure_and_figures_equal_one_by_one(first_run, tree, tmp_path) -> None:
    from LesionResponseLib.workflow import run_pipeline

    out, run = first_run
    assert _status(run) == {"LRPH0002": "done", "LRPH0003": "done", "LRPH0004": "done", "LRPH0005": "failed"}
    failure = json.loads((out / "patients" / "LRPH0005" / FAILED).read_text())
    assert "time point" in failure["error"] and not (out / "patients" / "LRPH0005" / DONE).exists()
    singles = []
    for seed, _, _ in GOOD:  # the same patients analysed one by one, without Dask
        single = run_pipeline(tree / f"patient-{seed}", tmp_path / str(seed), FAST)[0]
        singles.append(single)
        cohort_side = out / "patients" / single.patient_id
        for name in ("rois.csv", "tracks.csv"):
            assert (cohort_side / name).read_text() == (tmp_path / str(seed) / name).read_text()
    assert json.loads((out / "cohort.json").read_text()) == json.loads(json.dumps(cohort_summary(singles)))
    assert run["figures"]["patients"] == 3 and run["figures"]["scans"] == 7
    assert (out / "report" / "cohort.html").is_file() and (out / "cohort.csv").is_file()
    assert json.loads((out / "cohort-run.json").read_text())["patients"][3]["status"] == "failed"


@pytest.mark.slow
def test_rerun_skips_every_finished_patient(first_run, tree) -> None:
    out, _ = first_run
    run = run_cohort(discover(tree), out, FAST, PLAN)
    assert _status(run) == {"LRPH0002": "skipped", "LRPH0003": "skipped", "LRPH0004": "skipped",
                            "LRPH0005": "failed"}  # a failed patient is tried again
    for seed, _, _ in GOOD:
        assert _events(out, f"LRPH{seed:04d}").count("finished") == 1
    assert json.loads((out / "cohort.json").read_text()) == run["figures"]


@pytest.mark.slow
def test_changed_parameters_reanalyse_and_keep_the_readers_review(first_run, tree) -> None:
    from LesionResponseLib.review import ReviewSession

    out, _ = first_run
    folder = out / "patients" / "LRPH0003"
    roi = next(r.roi_id for r in load_analysis(folder).rois if r.timepoint == 1)
    with ReviewSession.open(folder, "reader") as session:
        session.reject(roi, "physiological uptake")
    orphan = folder / ".tracks.csv.k1ll3d00.tmp"  # what a run killed inside an atomic write leaves behind
    orphan.write_text("half a file")
    changed = FAST.updated({"response.decrease_threshold_pct": -35.0})
    run = run_cohort(discover(tree, patients=["LRPH0003"]), out, changed, PLAN)
    assert _status(run) == {"LRPH0003": "done"}  # new parameters: analysed again...
    assert not orphan.exists() and (folder / "review").is_dir()  # ...its leftovers removed, the review kept...
    analysis = load_analysis(folder)
    assert analysis.parameters.response.decrease_threshold_pct == -35.0
    assert next(r for r in analysis.rois if r.roi_id == roi).status == "rejected"  # ...the review re-applied
    run_cohort(discover(tree, patients=["LRPH0003"]), out, FAST, PLAN)  # back to the module's parameters


@pytest.mark.slow
def test_cli_on_an_existing_scheduler(first_run, tree) -> None:
    """--scheduler: the CLI uses a cluster it did not start (and leaves it running); exit 1 as one failed."""
    from distributed import Client, LocalCluster
    from typer.testing import CliRunner

    from LesionResponseLib.cli import app

    out, _ = first_run
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as cluster:
        result = CliRunner().invoke(app, ["cohort-analyze", str(tree), "-o", str(out), "--segmentation", "threshold",
                                          "--registration", "sitk-rigid", "--scheduler", cluster.scheduler_address])
        assert result.exit_code == EXIT_PARTIAL, result.output
        assert "0 analysed, 3 unchanged (skipped), 1 failed" in result.output and "Dask dashboard" in result.output
        with Client(cluster) as client:  # still up after the command
            assert len(client.scheduler_info()["workers"]) == 1


@pytest.mark.slow
def test_killed_run_resumes_without_losing_or_repeating_a_patient(tree, tmp_path) -> None:
    good = tmp_path / "good"  # the 3 good patients only
    good.mkdir()
    for seed, _, _ in GOOD:
        shutil.copytree(tree / f"patient-{seed}", good / f"patient-{seed}")
    out = tmp_path / "out"
    cli = Path(sys.executable).with_name("lesion-response")
    driver = subprocess.Popen([str(cli), "cohort-analyze", str(good), "-o", str(out), *CLI_ARGS],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not list(out.glob(f"patients/*/{DONE}")):
            assert driver.poll() is None, "the run ended before any patient finished"
            assert time.monotonic() < deadline, "no patient finished within 10 minutes"
            time.sleep(0.1)
    finally:  # SIGKILL the driver and its LocalCluster (scheduler, nannies, workers): nothing can clean up
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    finished_before = {p.parent.name for p in out.glob(f"patients/*/{DONE}")}
    assert 1 <= len(finished_before) < 3, finished_before  # killed mid-way, with work left
    run = run_cohort(discover(good), out, FAST, PLAN)
    status = _status(run)
    assert set(status.values()) <= {"done", "skipped"} and len(status) == 3
    assert {p for p, s in status.items() if s == "skipped"} == finished_before
    for patient_id in status:
        assert _events(out, patient_id).count("finished") == 1  # none lost, none done twice
        load_analysis(out / "patients" / patient_id)
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]


@pytest.mark.slow
@pytest.mark.needs_tool
def test_pacs_input_gives_the_same_analysis_as_the_folder(first_run, tree, tmp_path) -> None:
    from LesionResponseLib.dicomio.pacs import parse_pacs, retrieve_patient
    from LesionResponseLib.report import send_to_pacs

    folder_out, _ = first_run
    orthanc = start_orthanc(tmp_path / "orthanc", dicomweb=True)
    base, port = next(orthanc)
    try:
        files = sorted(p for p in (tree / "patient-4").rglob("*") if p.is_file())
        assert send_to_pacs(files, "127.0.0.1", port)["stored"] == len(files)
        out = tmp_path / "out"
        run = run_cohort(discover(None, pacs=f"{base}/dicom-web"), out, FAST, ClusterPlan(workers=1,
                                                                                          dashboard_address=":0"))
        assert _status(run) == {"LRPH0004": "done"}
        for name in ("rois.csv", "tracks.csv", "timepoints.csv"):
            assert (out / "patients/LRPH0004" / name).read_text() == (folder_out / "patients/LRPH0004" / name).read_text()
        # DIMSE C-FIND + C-GET brings the same instances, byte for byte in their data sets
        dimse = retrieve_patient(parse_pacs(f"dicom://ORTHANC@127.0.0.1:{port}"), "LRPH0004", tmp_path / "dimse")
        assert dimse["files"] == len(files) and dimse["retrieved"] == dimse["series"]
        assert retrieve_patient(parse_pacs(f"dicom://ORTHANC@127.0.0.1:{port}"), "LRPH0004",
                                tmp_path / "dimse")["reused"] == dimse["series"]
        import pydicom

        sent = {str(pydicom.dcmread(p).SOPInstanceUID): pydicom.dcmread(p).PixelData for p in files[:5]}
        for uid, pixels in sent.items():
            got = list((tmp_path / "dimse").glob(f"*/{uid}.dcm"))
            assert len(got) == 1 and pydicom.dcmread(got[0]).PixelData == pixels
    finally:
        orthanc.close()


def test_manifest_rows_folders_and_pacs(tmp_path) -> None:
    (tmp_path / "a").mkdir()
    manifest = tmp_path / "m.csv"
    manifest.write_text("patient_id,folder,pacs,labels\nP1,a,,a/seg\nP2,,dicom://PACS@h:104,\nP3,,,\n")
    jobs = read_manifest(manifest, pacs="http://h/dicom-web")
    assert jobs == [PatientJob("P1", folder=str((tmp_path / "a").resolve()), patient="P1",
                               labels=str((tmp_path / "a" / "seg").resolve())),
                    PatientJob("P2", pacs="dicom://PACS@h:104"), PatientJob("P3", pacs="http://h/dicom-web")]
    with pytest.raises(CohortError, match="line 4"):
        read_manifest(manifest)  # P3 has neither a folder nor a PACS without --pacs
    assert [j.patient_id for j in discover(manifest, pacs="http://h/dicom-web", patients=["P2"])] == ["P2"]


def test_folder_names_and_default_workers() -> None:
    assert patient_folder_name("LRPH0002") == "LRPH0002"
    odd = patient_folder_name("12/34 x")
    assert odd.startswith("12_34_x-") and odd != patient_folder_name("12_34 x")
    gb = 1024**3
    assert default_workers(10, cores=2, memory_bytes=24 * gb) == 1  # 2 threads per patient
    assert default_workers(10, cores=16, memory_bytes=24 * gb) == 6  # memory bound (4 GB each)
    assert default_workers(3, cores=64, memory_bytes=512 * gb) == 3  # no more than patients


def test_cohort_plan_is_the_papers() -> None:
    from LesionResponseLib.phantom import VENDORS
    from LesionResponseLib.phantom.cohort import cohort_plan

    plan = cohort_plan(18)
    scans = [p["scans"] for p in plan]
    assert sum(scans) == 67 and scans.count(2) == 8 and min(scans) == 2 and max(scans) == 7
    assert {p["vendor"] for p in plan} == set(VENDORS) and len({p["seed"] for p in plan}) == 18
    assert len(cohort_plan(40)) == 40 and cohort_plan(18, seed=3) != plan


@pytest.mark.slow
def test_truth_labels_analysis_reproduces_truth_roi_counts(make_phantom, tmp_path) -> None:
    """With the phantom's true lesion masks as ROIs, the analysed cohort's ROI counts are the truth's."""
    from LesionResponseLib.workflow import run_pipeline

    phantom = make_phantom(seed=4, timepoints=3, vendor="ge", **SLAB)
    analysis = run_pipeline(phantom / "dicom", tmp_path, FAST, labels_dir=phantom / "truth")[0]
    ours, truth = cohort_summary([analysis]), truth_cohort_summary([phantom])
    for name in ("patients", "scans", "lesion_rois", "rois_per_image"):
        assert ours[name] == truth[name], name
    assert truth["tracks"] >= 1 and truth["heterogeneous_per_follow_up"]["1"]["patients"] == 1
