"""Every setting of LesionResponseLib.config reaches every face with the same default: the analyze, cohort-analyze
and demo options (and --set, --config, the site file), the Slicer module's parameter node and the web app's
settings panel. The tests iterate ``settings()``, so a section another change adds is checked with no edit here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from LesionResponseLib.cli import app
from LesionResponseLib.cli_base import EXIT_INPUT, EXIT_USAGE, parameter_name
from LesionResponseLib.config import CONFIG_ENV, AnalysisParameters, Setting, settings

COMMANDS = ("analyze", "cohort-analyze", "demo")


class Captured(Exception):
    """Raised by the stand-in of the pipeline: the command got this far with these parameters."""

    def __init__(self, params: AnalysisParameters) -> None:
        super().__init__("captured")
        self.params = params


def other_value(spec: Setting) -> Any:
    """A valid value of ``spec`` that is not its default."""
    if spec.base_type is bool:
        return not spec.default
    if spec.choices:
        return next(c for c in spec.choices if c != spec.default)
    if spec.base_type is float:
        low, high = spec.minimum, spec.maximum
        if spec.default is None:
            return (low + high) / 2 if low is not None and high is not None else 1.0
        if high is not None and low is not None:
            return (spec.default + (high if spec.default != high else low)) / 2
        return spec.default - 1.0 if high is not None else spec.default + 1.0
    return f"other-{spec.name}"


def _option_arguments(spec: Setting, value: Any) -> list[str]:
    """The command-line words that set ``spec`` to ``value`` through its own option."""
    flags = spec.cli_flag.split("/")
    if spec.base_type is bool:
        return [flags[0] if value else flags[1]]
    return [flags[0], str(value)]


@pytest.fixture()
def no_site_file(monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, "")


@pytest.fixture()
def captured_runs(monkeypatch, no_site_file, tmp_path):
    """Run a command up to where it hands its parameters to the pipeline (or the cohort runner); return them."""
    from LesionResponseLib import phantom
    from LesionResponseLib.workflow import cli as workflow_cli
    from LesionResponseLib.workflow import cohort

    def capture(*args, **kwargs):
        raise Captured(next(a for a in (*args, *kwargs.values()) if isinstance(a, AnalysisParameters)))

    monkeypatch.setattr(workflow_cli, "_run", capture)
    monkeypatch.setattr(cohort, "run_cohort", capture)
    monkeypatch.setattr(cohort, "discover", lambda *args, **kwargs: [])
    monkeypatch.setattr(phantom, "generate_patient", lambda *args, **kwargs: None)

    def run(command: str, *arguments: str) -> AnalysisParameters:
        head = {"analyze": [str(tmp_path), "-o", str(tmp_path / "out")], "cohort-analyze": [str(tmp_path), "-o",
                str(tmp_path / "out")], "demo": ["-o", str(tmp_path / "demo")]}[command]
        result = CliRunner().invoke(app, [command, *head, *arguments])
        assert isinstance(result.exception, Captured), result.output
        return result.exception.params

    return run


@pytest.mark.parametrize("command", COMMANDS)
def test_every_setting_is_an_option_with_its_default_help_and_flag(command):
    click_command = typer.main.get_command(app).commands[command]
    options = {p.name: p for p in click_command.params}
    flags = [opt for p in click_command.params for opt in (*p.opts, *p.secondary_opts)]
    assert len(flags) == len(set(flags)), "two options share a flag"
    for spec in settings():
        option = options[parameter_name(spec)]
        assert option.default == spec.default, spec.path
        assert spec.help in option.help and spec.cli_flag.split("/")[0] in option.opts, spec.path
    assert {"--config", "--set"} <= set(flags)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_setting_reaches_the_run_from_its_option_and_from_set(command, captured_runs):
    assert captured_runs(command) == AnalysisParameters()  # nothing given: the built-in defaults
    expected = {spec.path: other_value(spec) for spec in settings()}
    by_options = captured_runs(command, *[w for spec in settings() for w in _option_arguments(spec, expected[spec.path])])
    by_set = captured_runs(command, *[w for path, value in expected.items() for w in ("--set", f"{path}={value}")])
    for params, source in ((by_options, "command line"), (by_set, "--set")):
        assert {path: params.value(path) for path in expected} == expected
        assert params.non_default_sources() == dict.fromkeys(expected, source)


def test_precedence_defaults_site_file_config_file_options(captured_runs, monkeypatch, tmp_path):
    site, config = tmp_path / "site.toml", tmp_path / "run.toml"
    site.write_text("[matching]\ndilation_mm = 9.0\nmin_overlap = 0.1\n[response]\nreference = 'nadir'\n")
    config.write_text("[matching]\ndilation_mm = 10.0\nmin_overlap = 0.2\n")
    monkeypatch.setenv(CONFIG_ENV, str(site))
    params = captured_runs("analyze", "--config", str(config), "--min-overlap", "0.3")
    assert params.matching.dilation_mm == 10.0 and params.matching.min_overlap == 0.3
    assert params.response.reference == "nadir" and params.matching.max_distance_mm == 30.0
    assert params.non_default_sources() == {"matching.dilation_mm": f"--config {config}",
                                            "matching.min_overlap": "command line",
                                            "response.reference": f"site config {site}"}


def test_bad_values_name_the_setting_and_what_is_allowed(no_site_file, tmp_path):
    runner = CliRunner()
    args = ["analyze", str(tmp_path), "-o", str(tmp_path / "out")]
    bad_option = runner.invoke(app, [*args, "--min-overlap", "1.5"])
    assert bad_option.exit_code == EXIT_USAGE and "matching.min_overlap = 1.5 is not allowed" in bad_option.output
    bad_set = runner.invoke(app, [*args, "--set", "matching.dilation=3"])
    assert bad_set.exit_code == EXIT_USAGE and "unknown setting 'matching.dilation'" in bad_set.output
    (tmp_path / "bad.toml").write_text("[response]\nreference = 'median'\n")
    bad_file = runner.invoke(app, [*args, "--config", str(tmp_path / "bad.toml")])
    assert bad_file.exit_code == EXIT_INPUT and "bad.toml" in bad_file.output
    assert "response.reference = 'median' is not allowed" in bad_file.output and "Traceback" not in bad_file.output


def test_settings_command_lists_every_setting_with_value_and_source(monkeypatch, tmp_path):
    (tmp_path / "site.toml").write_text("[quantification]\npsf_fwhm_mm = 5.0\n")
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "site.toml"))
    result = CliRunner().invoke(app, ["settings", "--json"])
    assert result.exit_code == 0, result.output
    listed = {row["setting"]: row for row in json.loads(result.stdout)["settings"]}
    assert list(listed) == [spec.path for spec in settings()]
    assert listed["quantification.psf_fwhm_mm"]["value"] == 5.0
    assert listed["quantification.psf_fwhm_mm"]["source"].startswith("site config")
    assert listed["matching.dilation_mm"] == {**listed["matching.dilation_mm"], "value": 8.0, "source": "default"}


def test_the_slicer_parameter_node_has_every_setting_and_runs_them_through_the_cli(monkeypatch, captured_runs):
    """The desktop module's parameter node holds one field per setting with its default; the values it holds
    become ``analyze`` arguments that give the run exactly those settings."""
    pytest.importorskip("slicer", reason="slicer-core not installed")
    import slicer_bootstrap
    from LesionResponseReview import settings_form

    node = slicer_bootstrap.import_desktop_module(monkeypatch).LesionResponseParameterNode
    for field in settings_form.fields():
        assert getattr(node, field.name) == field.default, field.setting.path
        expected = field.setting.default if field.kind == "bool" else settings_form.as_text(field.setting.default)
        assert field.default == expected
    values = {f.name: other_value(f.setting) if f.kind == "bool" else str(other_value(f.setting))
              for f in settings_form.fields()}
    params = settings_form.parameters_from_fields(values, source="Slicer module")
    assert {spec.path: params.value(spec.path) for spec in settings()} == \
        {spec.path: other_value(spec) for spec in settings()}
    arguments = settings_form.analyze_arguments(Path("in"), Path("out"), params)
    assert arguments[:4] == ["analyze", "in", "-o", "out"]
    assert captured_runs("analyze", *arguments[4:]) == params


def test_the_web_settings_panel_shows_every_setting_with_default_and_source():
    from LesionResponseReview import settings_form

    params = AnalysisParameters().updated({"matching.dilation_mm": 10.0}, source="--set")
    rows = {row["path"]: row for row in settings_form.rows(params)}
    assert list(rows) == [spec.path for spec in settings()]
    for spec in settings():
        assert rows[spec.path]["default"] == settings_form.as_text(spec.default)
        assert spec.help in rows[spec.path]["description"]
    assert rows["matching.dilation_mm"]["value"] == "10.0" and rows["matching.dilation_mm"]["changed"]
    assert rows["matching.dilation_mm"]["source"] == "--set" and not rows["matching.min_overlap"]["changed"]
