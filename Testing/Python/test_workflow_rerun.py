"""A re-run of an analysis from the faces: analysis.json records its input, the re-run command reads it with the
analysis's settings and the changed ones, runs under the review lock handed over by the face that holds it (and
nobody else's), recomputes only what the change keys and re-applies the review."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from LesionResponseReview import settings_form
from typer.testing import CliRunner

from LesionResponseLib.analysis import load_analysis
from LesionResponseLib.cli import app
from LesionResponseLib.cli_base import EXIT_INPUT
from LesionResponseLib.datamodel import Analysis, InputSource
from LesionResponseLib.review import ReviewSession
from LesionResponseLib.workflow.cli import STAGE_LINE

SLAB = {"axial_extent_mm": 160}  # the small phantom shared with the dicomio/phantom/pipeline tests


def rerun_analysis(make_phantom, build_once) -> tuple[Path, Path]:
    """(the seed-2 slab phantom, the folder of its analysis with its stage cache: truth labels, rigid registration),
    made once per session by `analyze` with the input given relative to the working folder, as a user types it;
    the re-run tests (this module, test_review_app_rerun) copy it."""
    phantom = make_phantom(seed=2, timepoints=2, **SLAB)

    def build(folder: Path) -> None:
        cwd = os.getcwd()
        os.chdir(phantom)
        try:
            result = CliRunner().invoke(app, ["analyze", "dicom", "-o", str(folder / "out"), "--labels",
                                              str(phantom / "truth"), "--registration", "sitk-rigid"])
        finally:
            os.chdir(cwd)
        assert result.exit_code == 0, result.output

    return phantom, build_once("rerun_s2_t2_slab", build) / "out"


@pytest.fixture(scope="module")
def analysed(make_phantom, build_once, tmp_path_factory):
    """(phantom, a copy of :func:`rerun_analysis`)."""
    phantom, built = rerun_analysis(make_phantom, build_once)
    return phantom, shutil.copytree(built, tmp_path_factory.mktemp("rerun") / "out")


def test_analysis_records_its_input_and_older_analyses_still_load(analysed) -> None:
    phantom, out = analysed
    data = json.loads((out / "analysis.json").read_text())
    assert data["input_source"] == {"given": "dicom", "resolved": str((phantom / "dicom").resolve()),
                                    "patient": None}
    analysis = load_analysis(out)
    assert settings_form.recorded_input(analysis, out) == (phantom / "dicom").resolve()
    older = Analysis.from_dict({k: v for k, v in data.items() if k != "input_source"})  # written before it existed
    assert older.input_source is None and older.to_dict()["input_source"] is None
    with pytest.raises(settings_form.RerunInputError, match="does not record the DICOM folder"):
        settings_form.recorded_input(older, out)
    moved = dataclasses.replace(analysis, input_source=InputSource.of(out.parent / "gone" / "dicom"))
    with pytest.raises(settings_form.RerunInputError, match="no longer there") as raised:
        settings_form.recorded_input(moved, out)
    assert str(out.parent / "gone" / "dicom") in str(raised.value)
    # the command is still offered, with the input the reader gives (or a placeholder)
    shown = settings_form.rerun_arguments(moved, out, {}, input_path=settings_form.INPUT_PLACEHOLDER)
    assert shown[:2] == ["analyze", settings_form.INPUT_PLACEHOLDER]


def test_the_lock_is_shared_only_with_a_child_it_was_handed_to(analysed) -> None:
    phantom, out = analysed
    probe = ("import sys; from LesionResponseLib.review.store import session_lock; lock = session_lock(sys.argv[1], "
             "'child'); lock.acquire(); print('shared' if lock.shared else 'taken')")
    with ReviewSession.open(out, "reader") as session:
        reviewed = (out / "analysis.json").read_bytes()
        # another writer is refused at once while the reader holds the folder, before anything is computed
        refused = CliRunner().invoke(app, ["analyze", str(phantom / "dicom"), "-o", str(out),
                                           "--config", str(out / "analysis.json")])
        assert refused.exit_code == EXIT_INPUT and "being edited by another process" in refused.output
        assert (out / "analysis.json").read_bytes() == reviewed
        handed = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True, text=True,
                                env={**os.environ, **session.lock.handover_environment()})
        assert handed.stdout.strip() == "shared", handed.stderr
        not_handed = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True, text=True)
        assert "being edited by another process (user=reader" in not_handed.stderr
        assert (out / "review" / "session.lock").read_text().startswith("user=reader")  # the child left it
    assert not (out / "review" / "session.lock").exists()


def test_rerun_recomputes_only_what_the_change_keys_and_keeps_the_review(analysed) -> None:
    phantom, out = analysed
    with ReviewSession.open(out, "reader") as session:
        victim = session.state.analysis.rois[0].roi_id
        session.reject(victim, reason="artefact")
    before = load_analysis(out)
    changed = {"response.increase_threshold_pct": "10"}
    arguments = settings_form.rerun_arguments(before, out, changed)
    assert arguments == ["analyze", str((phantom / "dicom").resolve()), "-o", str(out.resolve()), "--config",
                         str(out.resolve() / "analysis.json"), "--set", "response.increase_threshold_pct=10"]
    run = CliRunner().invoke(app, [*arguments, "--json"])
    assert run.exit_code == 0, run.output
    stages = [line.removeprefix(STAGE_LINE) for line in run.stderr.splitlines() if line.startswith(STAGE_LINE)]
    assert stages[0] == "indexing DICOM" and stages[-1] == "re-applying the reader's review"
    summary = json.loads(run.stdout)
    assert summary["computed"] == [] and {"segmentation tp0", "segmentation tp1", "matching"} <= set(summary["reused"])
    assert summary["review"] == {"applied": 1, "not_applicable": []}
    after = load_analysis(out)
    assert after.parameters.response.increase_threshold_pct == 10.0
    # every other value as it ran (from --config analysis.json, whatever the site file says)
    assert after.parameters.updated({"response.increase_threshold_pct": 30.0}) == before.parameters
    assert after.input_source.resolved == before.input_source.resolved  # given: the resolved path this time
    assert {r.roi_id for r in after.rois if r.status == "rejected"} == {victim}
