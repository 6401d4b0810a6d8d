"""UI of the analysis settings: one row per setting (value editable, default, where it came from, help as a
tooltip), a changed value highlighted, and the command that re-runs the analysis with the values shown."""

from __future__ import annotations

from collections.abc import Callable

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_server import Server

from LesionResponseReview.web.logic import settings
from LesionResponseReview.web.logic.base import typed_state
from LesionResponseReview.web.ui.common import tid


def build_settings(server: Server, set_value: Callable[[str, str], None]) -> None:
    name = typed_state(server, settings.SettingsState, settings.NAMESPACE).name
    with html.Div(classes="pa-2"):
        html.Div("Settings of this analysis (a highlighted value is not the default). Edit a value to get the "
                 "command that re-runs the analysis with it; the review is re-applied.", classes="text-caption mb-2")
        v3.VAlert(f"{{{{ {name.error} }}}}", v_if=(name.error,), type="error", density="compact", classes="mb-2",
                  **tid("settings-error"))
        with html.Div(v_for=f"row in {name.rows}", key="row.path", classes="mb-3",
                      **tid("setting-row")):
            v3.VTextField(model_value=("row.value",), update_modelValue=(set_value, "[row.path, $event]"),
                          label=("row.path",), hint=("'default ' + (row.default || 'none') + ' · ' + row.source",),
                          persistent_hint=True, density="compact", title=("row.description",),
                          base_color=("row.changed ? 'warning' : undefined",), color="primary")
        html.Div("Re-run with these settings:", classes="text-subtitle-2 mt-2")
        html.Code(f"{{{{ {name.command} }}}}", classes="text-caption", style="word-break: break-all;",
                  **tid("settings-command"))
