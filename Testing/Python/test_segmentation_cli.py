"""``lesion-response segment`` on a DICOM phantom: one label map per time point, on the PET grid, on target."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from LesionResponseLib.cli import app
from LesionResponseLib.cli_base import EXIT_INPUT
from LesionResponseLib.segmentation.metrics import evaluate

SLAB = {"axial_extent_mm": 160}  # shares the cached slab phantom of test_phantom / test_dicomio_phantom

# one pytest-xdist worker (--dist loadgroup): the model segments the phantom (`segmented`) once, not per worker
pytestmark = pytest.mark.xdist_group("segmentation_cli")


@pytest.fixture(scope="module")
def segmented(make_phantom, tmp_path_factory):
    """(phantom folder, output folder) after ``lesion-response segment`` with the shipped model."""
    folder = make_phantom(seed=2, timepoints=2, vendor="philips", **SLAB)  # CNTS storage: SUV via private tags
    out = tmp_path_factory.mktemp("segment")
    result = CliRunner().invoke(app, ["segment", str(folder / "dicom"), "-o", str(out), "--segmentation", "model"])
    assert result.exit_code == 0, result.output
    return folder, out


def _per_timepoint(segmented):
    folder, out = segmented
    for k in (0, 1):
        labels = sitk.ReadImage(str(out / f"tp{k}.nii.gz"))
        truth = sitk.ReadImage(str(folder / "truth" / f"tp{k}_lesions.nii.gz"))
        yield k, labels, truth


def test_segment_command_writes_label_maps_that_find_the_truth(segmented):
    for k, labels, truth in _per_timepoint(segmented):
        assert labels.GetSize() == truth.GetSize()
        np.testing.assert_allclose(labels.GetOrigin(), truth.GetOrigin(), atol=1e-3)
        m = evaluate(labels, truth)
        # alignment check: a flipped, shifted or mis-scaled map would find ~0 lesions with Dice >= 0.6;
        # the quality targets are the (currently failing) test below
        assert m.n_true >= 5 and m.n_detected >= 0.5 * m.n_true, (k, m)
        assert np.median(m.dice) >= 0.6, (k, m)


@pytest.mark.xfail(strict=True, reason="v9 default: still short of it here (CI, 2026-12-04); v6: tp0 met it, tp1 6/7 + 0 FP on this slab (v4 and v3: 8/9 + 0 FP, "
                                       "6/7 + 0 FP; v2: 8/9 + 1 FP, 6/7 + 2 FP): one missed lesion is below 0.9 "
                                       "on so few lesions (MODEL_CARD.md)")
def test_segment_command_meets_detection_targets(segmented):
    for k, labels, truth in _per_timepoint(segmented):
        m = evaluate(labels, truth)
        assert m.n_detected >= 0.9 * m.n_true and m.false_positive_rois <= 1, (k, m)


def test_segment_command_reports_bad_input_without_traceback(make_phantom, tmp_path):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["segment", str(tmp_path / "empty"), "-o", str(tmp_path / "out")])
    assert result.exit_code == EXIT_INPUT
    assert "error:" in result.output and "Traceback" not in result.output
    folder = make_phantom(seed=2, timepoints=2, vendor="philips", **SLAB)
    result = CliRunner().invoke(app, ["segment", str(folder / "dicom"), "-o", str(tmp_path / "out"),
                                      "--segmentation", str(tmp_path / "missing.pt")])
    assert result.exit_code == EXIT_INPUT and "model file or folder not found" in " ".join(result.output.split())
