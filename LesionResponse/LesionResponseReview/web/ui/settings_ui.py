"""UI of the analysis settings: one row per setting (value editable, default, where it came from, help as a
tooltip), a changed value highlighted; the DICOM input, the Re-run button with the stage being run and a Cancel,
and the command that does the same from a terminal."""

from __future__ import annotations

from collections.abc import Callable

from trame.widgets import client, html
from trame.widgets import vuetify3 as v3
from trame_server import Server

from LesionResponseReview.web.logic import settings
from LesionResponseReview.web.logic.base import typed_state
from LesionResponseReview.web.ui.common import tid


def build_settings(server: Server, set_value: Callable[[str, str], None], rerun: Callable[[], object],
                   cancel: Callable[[], None]) -> None:
    name = typed_state(server, settings.SettingsState, settings.NAMESPACE).name
    with html.Div(classes="pa-2"):
        html.Div("Settings of this analysis (a highlighted value is not the default). Edit values, then Re-run: the "
                 "analysis runs again on this folder with them (only the steps that read a changed setting are "
                 "recomputed) and reloads with your edits re-applied.", classes="text-caption mb-2")
        _build_rerun(name, rerun, cancel)
        v3.VAlert(f"{{{{ {name.error} }}}}", v_if=(name.error,), type="error", density="compact", classes="mb-2",
                  **tid("settings-error"))
        # one line of hint per row: a long source (--config /path/analysis.json) would overlap the next row
        client.Style(".setting-row .v-messages__message { white-space: nowrap; overflow: hidden; "
                     "text-overflow: ellipsis; }")
        with html.Div(v_for=f"row in {name.rows}", key="row.path", classes="mb-3 setting-row",
                      **tid("setting-row")):
            v3.VTextField(model_value=("row.value",), update_modelValue=(set_value, "[row.path, $event]"),
                          label=("row.path",), hint=("'default ' + (row.default || 'none') + ' · ' + row.source",),
                          persistent_hint=True, density="compact", title=("row.description",),
                          disabled=(name.running,), base_color=("row.changed ? 'warning' : undefined",),
                          color="primary")
        html.Div("The same from a terminal:", classes="text-subtitle-2 mt-2")
        html.Code(f"{{{{ {name.command} }}}}", classes="text-caption", style="word-break: break-all;",
                  **tid("settings-command"))


def _build_rerun(name: settings.SettingsState, rerun: Callable[[], object], cancel: Callable[[], None]) -> None:
    """The input field, Re-run and Cancel, the stage being run, and how the last re-run ended."""
    v3.VTextField(v_model=(name.input_path,), label="DICOM input of the re-run (folder or ZIP archive)",
                  density="compact", disabled=(name.running,), hide_details="auto",
                  error_messages=(f"{name.input_error} ? [{name.input_error}] : []",), **tid("settings-input"))
    with html.Div(classes="d-flex align-center mt-2 mb-2"):
        v3.VBtn("Re-run analysis", click=rerun, loading=(name.running,), disabled=(f"{name.running} || !!{name.error}",),
                prepend_icon="mdi-play", size="small", variant="tonal", color="primary", **tid("settings-rerun"))
        v3.VBtn("Cancel", click=cancel, v_if=(name.running,), size="small", variant="text", classes="ml-2",
                **tid("settings-cancel"))
        html.Span(f"{{{{ {name.stage} }}}}", v_if=(name.running,), classes="text-caption ml-2",
                  **tid("settings-stage"))
    v3.VProgressLinear(indeterminate=True, v_if=(name.running,), classes="mb-2")
    html.Div(f"{{{{ {name.message} }}}}", v_if=(name.message,), classes="text-caption mb-2",
             **tid("settings-message"))
    v3.VAlert(f"{{{{ {name.run_error} }}}}", v_if=(name.run_error,), type="error", density="compact",
              classes="mb-2", style="white-space: pre-wrap;", **tid("settings-run-error"))
