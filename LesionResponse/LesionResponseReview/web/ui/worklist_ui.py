"""UI of the cohort worklist: every patient with where its review stands and who has it open; Open starts the
patient's review (the browser moves to it; the reader's name comes from the page's ``?user=``)."""

from __future__ import annotations

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_server import Server

from LesionResponseReview.web.logic import worklist
from LesionResponseReview.web.logic.base import typed_state
from LesionResponseReview.web.ui.common import tid

HEADERS = [{"title": "Patient", "key": "patient"}, {"title": "Review", "key": "state"},
           {"title": "Tracks reviewed", "key": "reviewed"}, {"title": "Left in the queue", "key": "left"},
           {"title": "Reviewed by", "key": "reviewers"}, {"title": "Last edit (UTC)", "key": "last"},
           {"title": "Open by", "key": "locked_by"}, {"title": "", "key": "open", "sortable": False}]

# The opening reader's browser alone moves to the patient's app: the trigger's answer goes back to its caller only.
# An arrow function (Vue calls it on click; an immediately invoked one would run at every render), and browser
# globals through ``window`` (a template sees only what the trame client exposes).
OPEN_JS = ("() => { const location = window.location; const user = new window.URLSearchParams(location.search)"
           ".get('user') || ''; trigger('open_patient', [item.patient, user]).then((answer) => { if (answer && "
           "answer.port) { location.href = location.protocol + '//' + location.hostname + ':' + answer.port + '/' + "
           "location.search; } else { window.document.querySelector('[data-testid=worklist-error]').textContent = "
           "answer ? answer.error : 'no answer from the server'; } }); }")


def build_worklist(server: Server) -> None:
    """The summary, the error line of the last opening, and the patient table."""
    name = typed_state(server, worklist.WorklistState, worklist.NAMESPACE).name
    html.Div(f"{{{{ {name.summary} }}}}", classes="text-subtitle-1 pa-2", **tid("worklist-summary"))
    html.Div("", classes="text-error px-2", **tid("worklist-error"))
    with v3.VDataTable(headers=("headers", HEADERS), items=(name.rows,), item_value="patient", density="compact",
                       items_per_page=-1, hide_default_footer=True,
                       **tid("worklist", ":row-props=\"({ item }) => ({ 'data-testid': 'worklist-row-' + item.patient })\"")):
        with v3.Template(raw_attrs=['v-slot:item.left="{ item }"']):
            html.Span("{{ item.left }}{{ item.flagged ? ' (' + item.flagged + ' flagged)' : '' }}")
        with v3.Template(raw_attrs=['v-slot:item.locked_by="{ item }"']):
            html.Span("{{ item.locked_by }}", classes="text-amber font-weight-bold",
                      raw_attrs=[":data-testid=\"'lock-' + item.patient\""])
        with v3.Template(raw_attrs=['v-slot:item.open="{ item }"']):
            v3.VBtn("Open", size="small", variant="tonal", disabled=("item.state === 'failed' || item.state === "
                                                                     "'not analysed'",),
                    click=OPEN_JS, raw_attrs=[":data-testid=\"'open-' + item.patient\""])
