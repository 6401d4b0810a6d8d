"""The analysis settings as form fields, for the faces that show them: the Slicer module's parameter node and
"Advanced settings" section, the web app's settings panel. One field per :func:`LesionResponseLib.config.settings`
entry, so a setting (or a section) added there reaches both faces with no edit here. Qt-free.

A field stores a boolean as ``bool`` and every other value as the text a user types (``""`` for none), which
:meth:`LesionResponseLib.config.Setting.coerce` parses and checks; a run passes the fields that differ from the
built-in default as ``--set section.name=value`` to ``lesion-response analyze`` (:func:`analyze_arguments`).
A re-run of an analysis (:func:`rerun_arguments`) reads the input its ``analysis.json`` records
(:func:`recorded_input`) with that analysis's settings (``--config OUT/analysis.json``) and the edited ones as
``--set``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from LesionResponseLib.config import AnalysisParameters, Setting, settings
from LesionResponseLib.datamodel import Analysis
from LesionResponseLib.errors import LesionResponseError, describe

INPUT_PLACEHOLDER = "DICOM_FOLDER"  # in a re-run command whose input is not known


class RerunInputError(LesionResponseError):
    """The input of an analysis to re-run is not recorded, or no longer where it was."""


@dataclass(frozen=True)
class SettingField:
    """One setting as a form field."""

    setting: Setting
    name: str  # the parameter node's attribute: <section>_<name>
    kind: str  # "bool" (a check box), "choice" (a combo box of ``choices``) or "text" (a line edit)
    default: Any  # bool, or the default's text

    @property
    def label(self) -> str:
        return self.setting.name.replace("_", " ")

    @property
    def description(self) -> str:
        """Help, allowed values and unit, as a tooltip or caption."""
        spec = self.setting
        return f"{spec.long_help} Default: {as_text(spec.default) or 'none'}."


def as_text(value: Any) -> str:
    """A setting's value as a text field shows it (``""`` for none)."""
    return "" if value is None else str(value)


def fields() -> list[SettingField]:
    """Every setting as a form field, in declaration order."""
    result = []
    for spec in settings():
        kind = "bool" if spec.base_type is bool else "choice" if spec.choices else "text"
        default = spec.default if kind == "bool" else as_text(spec.default)
        result.append(SettingField(spec, f"{spec.section}_{spec.name}", kind, default))
    return result


def rows(params: AnalysisParameters) -> list[dict[str, Any]]:
    """One row per setting of ``params`` (an analysis's): field name, setting path, label, value and default as
    text, whether it differs from the default, where the value came from, and the description."""
    return [{"name": f.name, "path": f.setting.path, "section": f.setting.section, "label": f.label,
             "value": as_text(params.value(f.setting.path)), "default": as_text(f.setting.default),
             "changed": params.value(f.setting.path) != f.setting.default,
             "source": params.sources.get(f.setting.path, "default"), "description": f.description}
            for f in fields()]


def parameters_from_fields(values: Mapping[str, Any], *, source: str) -> AnalysisParameters:
    """The parameters the form's ``values`` (field name → value) set, over the built-in defaults; a value the
    setting does not allow raises :class:`LesionResponseLib.config.ConfigError` naming it."""
    changed = {f.setting.path: values[f.name] for f in fields() if f.name in values and values[f.name] != f.default}
    return AnalysisParameters().updated(changed, source=source)


def analyze_arguments(input_dir: str | Path, out_dir: str | Path, params: AnalysisParameters) -> list[str]:
    """``lesion-response analyze`` arguments that run ``params`` (every value that is not the built-in default
    as ``--set``; the site config file applies to the others, as for any run)."""
    arguments = ["analyze", str(input_dir), "-o", str(out_dir)]
    for path in params.non_default_sources():
        value = params.value(path)
        arguments += ["--set", f"{path}={'' if value is None else value}"]
    return arguments


def recorded_input(analysis: Analysis, out_dir: str | Path) -> Path:
    """The DICOM folder or archive ``analysis`` was made from (``analysis.json`` ``input_source``, as resolved when
    it ran); :class:`RerunInputError` naming the path when it is not recorded or no longer there."""
    source = analysis.input_source
    if source is None:
        raise RerunInputError(describe("the analysis does not record the DICOM folder it was made from",
                                       path=Path(out_dir) / "analysis.json",
                                       fix="Give the folder (or run the command shown with it); an analysis "
                                           "written by this version records it"))
    path = Path(source.resolved)
    if not path.exists():
        given = "" if source.given == source.resolved else f" (given as {source.given})"
        raise RerunInputError(describe(f"the DICOM input of this analysis{given} is no longer there", path=path,
                                       fix="Give its new place (or run the command shown with it)"))
    return path


def rerun_arguments(analysis: Analysis, out_dir: str | Path, changed: Mapping[str, Any], *,
                    input_path: str | Path | None = None) -> list[str]:
    """``lesion-response analyze`` arguments that re-run ``analysis`` (of ``out_dir``) into the same folder: its input
    (``input_path``, default :func:`recorded_input`; raises :class:`RerunInputError`), its settings
    (``--config OUT/analysis.json``: every value as it ran, whatever the site file says now), the ``changed``
    ones (setting path → value or text typed) as ``--set``, and its ``--patient`` if one was chosen. The stage
    cache of ``out_dir`` recomputes only the stages that read a changed setting; the review is re-applied."""
    source = input_path if input_path is not None else recorded_input(analysis, out_dir)
    out = Path(out_dir).resolve()
    arguments = ["analyze", str(source), "-o", str(out), "--config", str(out / "analysis.json")]
    for path, value in changed.items():
        arguments += ["--set", f"{path}={as_text(value)}"]
    patient = analysis.input_source.patient if analysis.input_source else None
    return arguments + (["--patient", patient] if patient else [])


def command() -> list[str]:
    """The ``lesion-response`` command of this installation, to run :func:`rerun_arguments` in a child process: its
    console script beside the interpreter, else ``python -m LesionResponseLib``."""
    script = Path(sys.executable).with_name("lesion-response")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "LesionResponseLib"]
