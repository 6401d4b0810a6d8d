"""The settings: one source (LesionResponseLib.config), validated, parsed from text, schema 1 migrated."""

from __future__ import annotations

import dataclasses

import pytest

from LesionResponseLib.config import (
    FLAT_EXTRA_NAMES,
    FLAT_NAMES,
    AnalysisParameters,
    ConfigError,
    find_setting,
    migrate_flat,
    settings,
)
from LesionResponseLib.datamodel import Analysis

# analysis.json "parameters" as schema 1 wrote it (every field, non-default values)
SCHEMA1 = {"segmentation_method": "threshold", "model_path": "/m.pt", "min_roi_volume_ml": 0.2,
           "equivocal_max_volume_ml": 0.5, "drop_intracranial_rois": False, "registration_method": "sitk-rigid",
           "dilation_mm": 10.0, "max_match_distance_mm": 25.0, "min_overlap": 0.1, "reference": "nadir",
           "psf_fwhm_mm": 5.0, "response_measure": "suv_total", "decrease_threshold_pct": -35.0,
           "increase_threshold_pct": 35.0, "weight_kg": 71.0, "prior_search": False, "prior_search_margin_mm": 12.0,
           "prior_search_false_alarm": 0.02, "prior_search_model_probability": 0.3, "prior_search_candidates": True,
           "prior_search_skip_intracranial": False, "prior_search_skip_physiological": False,
           "extra": {"containment_min": 0.3, "labels_dir": "/truth"}}


def test_every_setting_has_help_and_a_default_that_passes_its_own_checks() -> None:
    specs = settings()
    assert len({s.path for s in specs}) == len(specs)
    assert len({s.cli_flag.split("/")[0] for s in specs}) == len(specs)  # no two settings share a flag
    for spec in specs:
        assert spec.help.strip().endswith(".") and len(spec.help) > 20, spec.path
        spec.check(spec.default)
        assert AnalysisParameters().value(spec.path) == spec.default


def test_schema1_parameters_migrate_to_the_same_values() -> None:
    params = AnalysisParameters.from_dict(SCHEMA1)
    assert set(FLAT_NAMES) | {"extra"} == set(SCHEMA1)  # the fixture covers every schema-1 name
    for flat, path in FLAT_NAMES.items():
        assert params.value(path) == SCHEMA1[flat], path
    for key, path in FLAT_EXTRA_NAMES.items():
        assert params.value(path) == SCHEMA1["extra"][key], path
    assert AnalysisParameters.from_dict(params.to_dict()) == params  # the nested form round-trips


def test_a_schema1_analysis_loads_with_its_parameters_migrated() -> None:
    data = {"schema_version": 1, "patient_id": "P", "timepoints": [], "parameters": SCHEMA1}
    analysis = Analysis.from_dict(data)
    assert analysis.parameters.matching.containment_min == 0.3
    assert analysis.parameters.response.reference == "nadir"
    assert analysis.to_dict()["parameters"]["matching"]["max_distance_mm"] == 25.0


def test_unknown_names_are_refused_not_dropped() -> None:
    with pytest.raises(ConfigError, match="unknown name 'dilation'"):
        migrate_flat({"dilation": 3.0})
    with pytest.raises(ConfigError, match="unknown key 'speed'"):
        migrate_flat({"extra": {"speed": 1}})
    with pytest.raises(ConfigError, match="unknown setting 'matching.dilation'.*matching.dilation_mm"):
        AnalysisParameters().updated({"matching.dilation": 3.0})
    with pytest.raises(ConfigError, match="unknown settings section 'match'"):
        AnalysisParameters.from_dict({"match": {"dilation_mm": 3.0}})


def test_values_are_parsed_from_text_and_checked() -> None:
    params = AnalysisParameters().updated({"matching.dilation_mm": "10", "prior_search.enabled": "no",
                                           "input.weight_kg": "none", "response.measure": "suv_total"})
    assert params.matching.dilation_mm == 10.0 and params.prior_search.enabled is False
    assert params.input.weight_kg is None and params.response.measure == "suv_total"
    with pytest.raises(ConfigError, match="response.reference = 'median' is not allowed.*baseline, previous, nadir"):
        AnalysisParameters().updated({"response.reference": "median"})
    with pytest.raises(ConfigError, match="matching.min_overlap = 1.5 is not allowed.*≤ 1"):
        AnalysisParameters().updated({"matching.min_overlap": 1.5})
    with pytest.raises(ConfigError, match="'ten' is not a float"):
        AnalysisParameters().updated({"matching.dilation_mm": "ten"})
    with pytest.raises(ConfigError, match="cannot be empty"):
        AnalysisParameters().updated({"matching.dilation_mm": None})


def test_parameters_are_frozen_and_updated_returns_a_copy() -> None:
    params = AnalysisParameters()
    changed = params.updated({"matching.dilation_mm": 12.0})
    assert params.matching.dilation_mm == 8.0 and changed.matching.dilation_mm == 12.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.matching.dilation_mm = 1.0  # type: ignore[misc]
    assert params.digest_of("matching") != changed.digest_of("matching")
    assert params.digest_of("response") == changed.digest_of("response")


def test_boolean_settings_have_paired_flags() -> None:
    assert find_setting("prior_search.enabled").cli_flag == "--prior-search/--no-prior-search"
    assert find_setting("prior_search.skip_intracranial").cli_flag == (
        "--prior-search-skip-intracranial/--no-prior-search-skip-intracranial")
    assert find_setting("matching.containment_min").cli_flag == "--matching-containment-min"
