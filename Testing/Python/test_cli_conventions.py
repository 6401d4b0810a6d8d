"""One convention over every ``lesion-response`` command (LesionResponseLib.cli_base): inputs are arguments, every
output folder or file is -o/--out, a command with a result has --json, the exit codes are in every help, and
the one error handler prints the project's errors without a traceback and exits EXIT_INPUT (not click's 2)."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from LesionResponseLib.cli import app
from LesionResponseLib.cli_base import EPILOG, EXIT_CODES, EXIT_INPUT, EXIT_USAGE

#: commands without a result to print: the review server
NO_RESULT = {"review-app"}


def _commands() -> dict[str, object]:
    """Every command by its full name (``review link``), the review group's callback as ``review``."""
    root = typer.main.get_command(app)
    found = {}
    for name, command in root.commands.items():
        found[name] = command
        for sub, subcommand in getattr(command, "commands", {}).items():
            found[f"{name} {sub}"] = subcommand
    return found


COMMANDS = _commands()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_outputs_are_dash_o_out_and_results_have_json(name):
    command = COMMANDS[name]
    options = [p for p in command.params if p.param_type_name == "option"]
    flags = {opt for p in options for opt in p.opts}
    assert not flags & {"--dest", "--output", "--method"}, name  # the spellings this convention replaced
    for option in options:
        if option.name in ("out", "output", "dest"):
            assert set(option.opts) == {"--out", "-o"}, name
    is_review_edit = name.startswith("review ")  # the review group carries --json for its commands
    if name not in NO_RESULT and not is_review_edit:
        assert "--json" in flags, name
    if not is_review_edit:
        assert EPILOG in (command.epilog or "") or name == "review", name


def test_exit_codes_are_one_table_in_the_main_help():
    result = CliRunner().invoke(app, ["--help"], terminal_width=300)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {meaning.split(':')[0]}" in text
    assert EXIT_USAGE == 2 and EXIT_INPUT != EXIT_USAGE


def test_an_input_error_is_printed_by_the_one_handler(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nowhere"), "--json"])
    assert result.exit_code == EXIT_INPUT and result.stdout == ""
    assert result.stderr.startswith("error: ") and "analysis.json" in result.stderr
    assert "Traceback" not in result.output
    usage = CliRunner().invoke(app, ["report", str(tmp_path), "--no-such-option"])
    assert usage.exit_code == EXIT_USAGE


def test_json_results_are_json_on_stdout(make_phantom, tmp_path):
    phantom = make_phantom(seed=2, timepoints=2, axial_extent_mm=160)
    result = CliRunner().invoke(app, ["inspect", str(phantom / "dicom"), "--json"])
    assert result.exit_code == 0, result.output
    assert [tp["index"] for tp in json.loads(result.stdout)["timepoints"]] == [0, 1]
