"""UI of the track table: filters (category at any follow-up, pattern), what is left of the review queue, the
sortable table (opened in queue order) with the queue's score, a category chip and ΔSUVtotal per follow-up ("?"
and the interval where indeterminate), the time points whose ROI the model did not find (prior-guided search or
reader) and why the track is in the queue, the selected row highlighted; N / P (or ↓ / ↑) step through the rows
shown, U to the next unreviewed track, R marks the selected track reviewed."""

from __future__ import annotations

from trame.widgets import client, html
from trame.widgets import vuetify3 as v3
from trame_server import Server

from LesionResponseReview import mrml
from LesionResponseReview.web.logic import tracks
from LesionResponseReview.web.logic.base import typed_state
from LesionResponseReview.web.ui.common import tid


def category_colours_js() -> str:
    """JS object literal: category -> CSS colour (the views' palette)."""
    entries = ", ".join(f"'{k}': 'rgb({round(r * 255)},{round(g * 255)},{round(b * 255)})'"
                        for k, (r, g, b) in mrml.CATEGORY_COLORS.items())
    return "{" + entries + "}"


def build_queue_bar(server: Server) -> None:
    """What is left of the review queue, the reasons of the selected track, and the queue's buttons (triggers
    ``next_unreviewed`` and ``mark_reviewed``)."""
    name = typed_state(server, tracks.TracksState, tracks.NAMESPACE).name
    with html.Div(classes="d-flex align-center px-2"):
        html.Div(f"{{{{ {name.queue_summary} }}}}", classes="text-caption text-no-wrap mr-2", **tid("queue-summary"))
        v3.VBtn("Next unreviewed (U)", size="small", variant="tonal", classes="mr-1",
                click="trigger('next_unreviewed')", **tid("next-unreviewed"))
        v3.VBtn("Mark reviewed (R)", size="small", variant="tonal", disabled=(f"{name.selected_track} < 0",),
                click="trigger('mark_reviewed')", **tid("mark-reviewed"))
    with html.Div(classes="px-2 text-caption", v_if=(f"{name.selected_reasons}.length",), **tid("queue-reasons")):
        html.Span(f"Why T{{{{ String({name.selected_track}).padStart(3, '0') }}}} is in the queue: ",
                  classes="font-weight-bold")
        html.Span(f"{{{{ {name.selected_reasons}.join('; ') }}}}")


def build_track_table(server: Server, n_followups: int) -> None:
    """Filters, table, keyboard shortcuts (triggers ``select_track``, ``step_track``, ``next_unreviewed`` and
    ``mark_reviewed``)."""
    name = typed_state(server, tracks.TracksState, tracks.NAMESPACE).name
    with html.Div(classes="d-flex align-center pa-2"):
        v3.VSelect(v_model=(name.category_filter,), items=(name.categories,), label="category (any follow-up)",
                   density="compact", hide_details=True, classes="mr-2", **tid("category-filter"))
        v3.VSelect(v_model=(name.pattern_filter,), items=(name.patterns,), label="pattern", density="compact",
                   hide_details=True, classes="mr-2", **tid("pattern-filter"))
        html.Div(f"{{{{ {name.summary} }}}}", classes="text-caption text-no-wrap", **tid("track-summary"))
    build_queue_bar(server)
    row_props = (f"({{ item }}) => ({{ class: item.track_id === {name.selected_track} ? 'bg-indigo-darken-2' : '',"
                 " 'data-testid': 'track-row-' + item.track_id })")
    # server mode: the rows are shown in the order the server sorted them (next/previous follow that order)
    with v3.VDataTableServer(headers=(name.headers,), items=(name.items,), items_length=(f"{name.items}.length",),
                             item_value="track_id", density="compact", items_per_page=-1, hide_default_footer=True,
                             fixed_header=True, height="calc(100vh - 190px)", hover=True,
                       **tid("track-table", f':row-props="{row_props}"',
                             f'v-model:sort-by="{name.sort_by}"',
                             "@click:row=\"(event, { item }) => trigger('select_track', [item.track_id])\"")):
        with v3.Template(raw_attrs=['v-slot:item.track_id="{ item }"']):
            html.Span("{{ 'T' + String(item.track_id).padStart(3, '0') }}", classes="font-weight-bold")
        # the queue: rank, how likely the automation is wrong, reviewed
        with v3.Template(raw_attrs=['v-slot:item.queue_rank="{ item }"']), \
                html.Span(style="white-space: nowrap;", raw_attrs=[":data-testid=\"'queue-' + item.track_id\""]):
            html.Span("{{ item.reviewed ? '✓' : item.queue_rank }}",
                      classes="text-caption mr-1", raw_attrs=[":class=\"item.reviewed ? 'text-green' : ''\""])
            html.Span("{{ item.score === null ? '' : Math.round(100 * item.score) + '%' }}",
                      classes="text-caption text-medium-emphasis")
        colours = category_colours_js()
        for k in range(1, n_followups + 1):
            with v3.Template(raw_attrs=[f'v-slot:item.delta_t{k}="{{ item }}"']), \
                    html.Span(style="white-space: nowrap;", raw_attrs=[f':data-testid="\'cat-t{k}-\' + item.track_id"']):
                html.Span("", style="display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:4px;"
                          "vertical-align:middle;",
                          raw_attrs=[f":style=\"{{background: ({colours})[item.cat_t{k}] || 'transparent'}}\""])
                html.Span(f"{{{{ item.cat_t{k} }}}}", classes="text-caption mr-1")
                # indeterminate: the interval holds a threshold; the category stays the paper's rule
                html.Span("?", v_if=(f"item.ind_t{k}",), classes="text-caption text-amber mr-1",
                          raw_attrs=[f":title=\"'indeterminate: ' + item.ci_t{k}\"",
                                     f":data-testid=\"'indeterminate-t{k}-' + item.track_id\""])
                html.Span(f"{{{{ item.delta_t{k} === null ? '' : (item.delta_t{k} > 0 ? '+' : '') + "
                          f"item.delta_t{k}.toFixed(0) + '%' }}}}", classes="text-caption text-medium-emphasis",
                          raw_attrs=[f":title=\"item.ci_t{k} ? '90 % interval ' + item.ci_t{k} : ''\""])
        # time points whose ROI the prior-guided search (or the reader) added: the ones to check
        with v3.Template(raw_attrs=['v-slot:item.not_model="{ item }"']):
            html.Span("{{ item.not_model }}", classes="text-caption text-amber",
                      raw_attrs=[":data-testid=\"'not-model-' + item.track_id\""])
        with v3.Template(raw_attrs=['v-slot:item.reasons="{ item }"']):
            # one line: a wrapped reason made its row three lines tall, off-screen to the right of the table
            html.Span("{{ item.reasons.split('; ')[0] }}", classes="text-caption", style="white-space: nowrap;",
                      raw_attrs=[":title=\"item.reasons\"", ":data-testid=\"'reasons-' + item.track_id\""])
    # N / P (or arrow down / up) outside text fields: next / previous track of the table; U: next unreviewed track
    # of the review queue; R: mark the selected track reviewed; Escape: no selection
    client.ClientTriggers(mounted=(
        "window.addEventListener('keydown', (e) => {"
        " const t = e.target.tagName; if (t === 'INPUT' || t === 'TEXTAREA' || e.ctrlKey || e.metaKey) return;"
        " if (e.key === 'n' || e.key === 'N' || e.key === 'ArrowDown') { trigger('step_track', [1]); e.preventDefault(); }"
        " if (e.key === 'p' || e.key === 'P' || e.key === 'ArrowUp') { trigger('step_track', [-1]); e.preventDefault(); }"
        " if (e.key === 'u' || e.key === 'U') { trigger('next_unreviewed'); e.preventDefault(); }"
        " if (e.key === 'r' || e.key === 'R') { trigger('mark_reviewed'); e.preventDefault(); }"
        " if (e.key === 'Escape') { trigger('select_track', [null]); }"
        "})"))
