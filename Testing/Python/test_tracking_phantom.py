"""End to end on a phantom patient's DICOM: ``register`` command, transform files, truth masks matched, scored."""

from __future__ import annotations

import json

import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from LesionResponseLib.cli import app
from LesionResponseLib.config import AnalysisParameters
from LesionResponseLib.phantom import load_truth
from LesionResponseLib.tracking import build_tracks, load_transform, match_rois
from LesionResponseLib.tracking.evaluate import label_rois, landmark_errors, score_links


@pytest.mark.slow
def test_phantom_links_and_registration_error_meet_the_bar(make_phantom, tmp_path) -> None:
    folder = make_phantom(seed=1, timepoints=3)
    truth = load_truth(folder)
    done = CliRunner().invoke(app, ["register", str(folder / "dicom"), "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    results = json.loads((tmp_path / "transforms" / "registrations.json").read_text())
    assert [r["ok"] for r in results] == [True, True], results
    transforms = {(r["fixed_timepoint"], r["moving_timepoint"]): load_transform(tmp_path / r["transform_path"])
                  for r in results}
    errors = [e for (i, j), t in transforms.items() for e in landmark_errors(t, truth, i, j)]
    assert sum(errors) / len(errors) <= 3.0  # mm, the bar (published 2.3-2.6 mm)
    labels = {k: sitk.ReadImage(str(folder / "truth" / f"tp{k}_lesions.nii.gz")) for k in range(3)}
    rois = [r for k, image in labels.items() for r in label_rois(image, k)]
    links = match_rois(labels, rois, transforms, AnalysisParameters().updated({"matching.dilation_mm": 8.0}))
    scores = score_links(links, build_tracks(rois, links), truth)
    assert scores["link_precision"] >= 0.97 and scores["link_recall"] >= 0.97, scores
    assert scores["split_merge_correct"] == scores["n_split_merge_tracks"], scores
