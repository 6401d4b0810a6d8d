"""UI of the audit trail: every action, newest first: when, who, what, and the tracks changed before -> after."""

from __future__ import annotations

from trame.widgets import html
from trame.widgets import vuetify3 as v3
from trame_server import Server

from LesionResponseReview.web.logic import audit
from LesionResponseReview.web.logic.base import typed_state
from LesionResponseReview.web.ui.common import tid


def build_audit(server: Server) -> None:
    name = typed_state(server, audit.AuditState, audit.NAMESPACE).name
    html.Div(f"{{{{ {name.count} }}}} actions (review/audit.jsonl)", classes="text-caption pa-2")
    with v3.VList(density="compact", style="height: calc(100vh - 170px); overflow-y: auto;", **tid("audit-list")):
        with v3.VListItem(v_for=f"entry in {name.entries}", key="entry.n", classes="py-1",
                          **tid("audit-entry")):
            html.Div("#{{ entry.n }} {{ entry.time.replace('T', ' ').replace('+00:00', ' UTC') }} · {{ entry.user }}"
                     " · {{ entry.action }}", classes="text-caption text-medium-emphasis")
            html.Div("{{ entry.what }}", classes="text-body-2")
            html.Div("{{ line }}", v_for="line in entry.details", classes="text-caption",
                     style="white-space: pre-wrap;")
