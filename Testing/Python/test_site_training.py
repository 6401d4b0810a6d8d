"""Fine-tuning on reviewed analyses (``train --from-analyses``): a killed run resumes from its checkpoint and
finishes with the right step count, writing a loadable model with its card; unreviewed analyses are refused."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from LesionResponseLib.cli import app
from LesionResponseLib.cli_base import EXIT_INPUT
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.review import ReviewSession
from LesionResponseLib.segmentation import load_model
from LesionResponseLib.segmentation.finetune import find_analyses, reviewed_scans, split_patients
from LesionResponseLib.segmentation.model import SegmentationError

STEPS = 24  # patch 16: a few hundredths of a second each (and a checkpoint), long enough to be killed in the middle


@pytest.fixture(scope="module")
def reviewed(make_phantom, build_once, tmp_path_factory) -> tuple[list[Path], int]:
    """Two reviewed analyses (the phantom's true masks as ROIs, as two patients: the mechanics, not the model's
    quality, are tested here), and the label of the ROI rejected at time point 1 in each (one is also added)."""
    from LesionResponseLib.workflow import run_pipeline

    phantom = make_phantom(seed=2, timepoints=2, axial_extent_mm=160)
    params = AnalysisParameters().updated({"registration.method": "identity", "prior_search.enabled": False})
    built = build_once("site_truth_analysis_s2",
                       lambda folder: run_pipeline(phantom / "dicom", folder / "out", params,
                                                   labels_dir=phantom / "truth"))
    root = tmp_path_factory.mktemp("reviewed")
    folders = []
    for name in ("patient-a", "patient-b"):
        out = root / name
        shutil.copytree(built / "out", out)
        _crop(out)
        with ReviewSession.open(out, "tester") as session:
            rejected = int(np.bincount(session.state.label_array(1).ravel())[1:].argmax()) + 1  # the largest here
            session.reject(f"tp1-L{rejected:04d}", "physiological")
            mask = sitk.Image(session.state.labels[0])
            array = np.zeros(sitk.GetArrayViewFromImage(mask).shape, np.uint8)
            z, y, x = np.argwhere(session.state.label_array(0) == 0)[len(array.ravel()) // 3]
            array[z, y - 1:y + 1, x - 1:x + 1] = 1
            added = sitk.GetImageFromArray(array)
            added.CopyInformation(mask)
            session.add_roi(0, added)
        folders.append(out)
    return folders, rejected


CROP = 64  # in-plane voxels kept around the lesions: one 64^3 inference window per scan instead of ~16


def _crop(out: Path) -> None:
    """Keep a 64 x 64-voxel column of every image around the baseline lesions (the model's inferences are what
    costs; ROIs outside keep their rows in analysis.json and lose their voxels)."""
    labels = sitk.ReadImage(str(out / "labels" / "tp0.nii.gz"))
    centre = np.argwhere(sitk.GetArrayViewFromImage(labels) > 0).mean(0).astype(int)
    size = labels.GetSize()
    start = [int(np.clip(c - CROP // 2, 0, n - CROP)) for c, n in zip(centre[:0:-1], size[:2], strict=True)]
    for folder in ("suv", "labels", "ct", "anatomy"):  # anatomy: the organs on the PET grid (reference regions)
        for path in (out / folder).glob("tp*.nii.gz"):
            image = sitk.ReadImage(str(path))
            if image.GetSize() == size:  # the PET grid (the CT has its own and is not read by a PET-only model)
                sitk.WriteImage(sitk.RegionOfInterest(image, [CROP, CROP, size[2]], [*start, 0]), str(path), True)


def test_reviewed_scans_hold_the_readers_decisions(reviewed, tmp_path):
    reviewed, rejected = reviewed
    scans = reviewed_scans(reviewed[0])
    assert [s.timepoint for s in scans] == [0, 1]
    assert scans[0].roi_counts["reader"] == 1 and scans[1].roi_counts["rejected"] == 1
    labels = sitk.GetArrayViewFromImage(sitk.ReadImage(str(reviewed[0] / "labels" / "tp1.nii.gz")))
    assert scans[1].rejected.any() and np.array_equal(scans[1].rejected, labels == rejected)  # a negative ...
    assert not (sitk.GetArrayViewFromImage(scans[1].lesions) == rejected).any()  # ... not a lesion
    assert find_analyses([reviewed[0].parent]) == sorted(reviewed)
    train, validation = split_patients(reviewed)
    assert len(train) == len(validation) == 1
    unreviewed = tmp_path / "plain"
    shutil.copytree(reviewed[0], unreviewed, ignore=shutil.ignore_patterns("review"))
    with pytest.raises(SegmentationError, match=r"plain: this analysis has no reader review.*--include-unreviewed"):
        reviewed_scans(unreviewed)


def _log_steps(path: Path) -> list[int]:
    return [int(row["step"]) for row in csv.DictReader(open(path, newline=""))] if path.is_file() else []


def test_a_killed_fine_tuning_resumes_and_writes_a_model_with_its_card(reviewed, tmp_path):
    reviewed, _ = reviewed
    out = tmp_path / "site.pt"
    command = [sys.executable, "-m", "LesionResponseLib.cli", "train", "--from-analyses", str(reviewed[0]),
               "--from-analyses", str(reviewed[1]), "--out", str(out), "--steps", str(STEPS), "--patch", "16",
               "--checkpoint-every", "1", "--eval-every", "1000", "--threads", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    checkpoint = out.with_name(out.name + ".checkpoint.pt")
    try:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None and len(_log_steps(out.with_suffix(".log.csv"))) < 3:
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    logged = _log_steps(out.with_suffix(".log.csv"))
    assert process.returncode == -signal.SIGKILL and 3 <= len(logged) < STEPS, process.stderr.read().decode()[-2000:]
    assert checkpoint.is_file()
    refused = CliRunner().invoke(app, command[3:])  # without --resume the unfinished run is not overwritten
    assert refused.exit_code == EXIT_INPUT and "--resume" in refused.output
    result = CliRunner().invoke(app, [*command[3:], "--resume"])
    assert result.exit_code == 0, result.output
    assert _log_steps(out.with_suffix(".log.csv")) == list(range(1, STEPS + 1))  # each step once, none lost
    assert not checkpoint.exists()
    model = load_model(out)
    record = model.config.trained_on
    assert record["steps"] == STEPS and record["threshold_calibration"] == "held-out reviewed patients"
    assert record["training_rois"]["reader"] == 1 and record["training_rois"]["rejected"] == 1
    assert record["training_cpu_seconds"] > 0 and set(record["heldout_after"]) >= {"f1", "sensitivity"}
    card = out.with_suffix(".card.md").read_text()
    assert "## Held-out patients" in card and f"{STEPS} steps" in card
    assert "held-out patients: lesion F1" in result.output
