"""The cached stages (workflow.stages): a change of one setting invalidates exactly the caches of the stages that
read it (for every setting of LesionResponseLib.config), the runner reuses only complete results, and the cache-key
documentation is generated from the stage declarations."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from test_config_faces import other_value

from LesionResponseLib.config import AnalysisParameters, settings
from LesionResponseLib.workflow import stages
from LesionResponseLib.workflow.stages import (
    MATCHING,
    ORGANS,
    PRIOR_SEARCH,
    REGISTRATION,
    SEGMENTATION,
    STAGES,
    MatchingInputs,
    ModelEvidence,
    OrgansInputs,
    PriorSearchInputs,
    RunReport,
    SegmentationInputs,
    run_stage,
    stage_key,
)


def _timepoint(k: int) -> SimpleNamespace:
    """What the stages read of a loaded time point: its identity (UIDs, SUV factor) and a small PET."""
    pet = sitk.GetImageFromArray(np.full((4, 5, 6), float(k + 1), np.float32))
    info = SimpleNamespace(index=k, pet_series_instance_uid=f"1.2.{k}.1", ct_series_instance_uid=f"1.2.{k}.2",
                           suv_factor=1e-4 * (k + 1))
    return SimpleNamespace(info=info, pet_suv=pet, ct=None)


@pytest.fixture(autouse=True)
def no_engine_probe(monkeypatch):
    """``auto`` registration resolves without asking the elastix programs for their version (a process each)."""
    from LesionResponseLib.tracking import elastix

    monkeypatch.setattr(elastix, "available_engines", lambda: [])


@pytest.fixture(scope="module")
def stage_inputs(tmp_path_factory):
    """Small synthetic inputs of every stage (what they identify, not real images)."""
    folder = tmp_path_factory.mktemp("evidence")
    loaded = [_timepoint(0), _timepoint(1)]
    labels = {k: sitk.GetImageFromArray(np.eye(6, dtype=np.uint16)[None].repeat(4, 0) * (k + 1)) for k in (0, 1)}
    evidence = {0: ModelEvidence(folder / "p.nii.gz", folder / "c.nii.gz")}
    return {SEGMENTATION: SegmentationInputs(loaded[0]), REGISTRATION: tuple(loaded),
            MATCHING: MatchingInputs(labels, [], {}, ["reg-key"]),
            PRIOR_SEARCH: PriorSearchInputs(loaded, labels, [], [], {}, ["reg-key"], evidence),
            ORGANS: OrgansInputs(loaded[0])}


def _changed_value(spec, tmp_path):
    """A non-default value the stages' identities accept (a model file that exists, a method that resolves)."""
    if spec.path == "segmentation.model_path":
        (tmp_path / "other.pt").write_bytes(b"another model")
        return str(tmp_path / "other.pt")
    return {"segmentation.method": "threshold", "registration.method": "identity"}.get(spec.path, other_value(spec))


@pytest.mark.parametrize("spec", settings(), ids=lambda s: s.path)
def test_a_setting_invalidates_exactly_the_stages_that_read_it(spec, stage_inputs, tmp_path):
    base = AnalysisParameters()
    changed = base.updated({spec.path: _changed_value(spec, tmp_path)})
    for stage, _runs in STAGES:
        inputs = stage_inputs[stage]
        invalidated = stage_key(stage, inputs, base) != stage_key(stage, inputs, changed)
        assert invalidated == (spec.path in stage.reads), (stage.name, spec.path)


def test_every_stage_reads_only_settings_that_exist_and_its_key_follows_its_inputs(stage_inputs):
    paths = {spec.path for spec in settings()}
    base = AnalysisParameters()
    for stage, _runs in STAGES:
        assert set(stage.reads) <= paths, stage.name
    moved = SegmentationInputs(_timepoint(1))  # another PET series: another segmentation
    assert stage_key(SEGMENTATION, moved, base) != stage_key(SEGMENTATION, stage_inputs[SEGMENTATION], base)
    other_registration = MatchingInputs(stage_inputs[MATCHING].labels, [], {}, ["another-reg-key"])
    assert stage_key(MATCHING, other_registration, base) != stage_key(MATCHING, stage_inputs[MATCHING], base)


class _Counting:
    """A stage that counts its computations (the runner's behaviour, without images)."""

    name, prefix, reads, version, inputs = "counting", "count", ("matching.dilation_mm",), 1, "a number"

    def __init__(self) -> None:
        self.computed = 0

    def identity(self, inputs, params):
        return inputs

    def compute(self, inputs, params):
        self.computed += 1
        return {"value": inputs * params.matching.dilation_mm}

    def save(self, result, entry):
        entry.file("value.txt").write_text(str(result["value"]))
        return result

    def load(self, payload, entry, inputs):
        assert float(entry.file("value.txt").read_text()) == payload["value"]
        return payload


def test_the_runner_reuses_a_complete_result_and_recomputes_after_a_killed_write(tmp_path):
    stage, params, report = _Counting(), AnalysisParameters(), RunReport()
    first, key = run_stage(stage, 3, params, cache=tmp_path, report=report, item="a")
    again, same = run_stage(stage, 3, params, cache=tmp_path, report=report, item="b")
    assert first == again == {"value": 24.0} and key == same and stage.computed == 1
    assert report.stages == {"counting a": "computed", "counting b": "reused"}
    (tmp_path / f"count-{key}.json").unlink()  # a run killed before the manifest: its files do not count
    run_stage(stage, 3, params, cache=tmp_path, report=report)
    assert stage.computed == 2 and json.loads((tmp_path / f"count-{key}.json").read_text()) == {"value": 24.0}
    run_stage(stage, 3, params.updated({"matching.dilation_mm": 9.0}), cache=tmp_path, report=report)
    assert stage.computed == 3


def test_the_cache_key_documentation_is_generated_from_the_declarations():
    text = stages.__doc__
    assert stages.describe_cache_keys() in text
    for stage, _runs in STAGES:
        line = next(line for line in text.splitlines() if line.startswith(f"- **{stage.name}**"))
        assert all(f"`{path}`" in line for path in stage.reads) and f"cache/{stage.prefix}-" in line
