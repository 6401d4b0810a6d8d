"""The track table: every track with its category and ΔSUVtotal per follow-up (marked when indeterminate, with its
interval), pattern, ROI count and its place in the review queue (score, reasons, reviewed); opened in queue order,
sorted and filtered on the server (so next/previous follow the order shown); a row click selects a track; one key
steps to the next unreviewed track."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trame_server import Server

from LesionResponseReview import mrml
from LesionResponseReview.web.context import ReviewContext
from LesionResponseReview.web.logic.base import FeatureLogic

ANY = "any"
FOLLOW_UP_CATEGORIES = ("new", "increasing", "stable", "decreasing", "disappearing")


NAMESPACE = "tracks"  # state keys of this feature


@dataclass
class TracksState:
    headers: list[dict] = field(default_factory=list)
    items: list[dict] = field(default_factory=list)
    selected_track: int = -1
    category_filter: str = ANY
    pattern_filter: str = ANY
    patterns: list[str] = field(default_factory=lambda: [ANY])
    categories: list[str] = field(default_factory=lambda: [ANY, *FOLLOW_UP_CATEGORIES])
    sort_by: list[dict] = field(default_factory=lambda: [{"key": "queue_rank", "order": "asc"}])
    summary: str = ""
    queue_summary: str = ""  # what is left of the review queue
    selected_reasons: list[str] = field(default_factory=list)  # why the selected track is in the queue


def table_items(analysis: Any) -> list[dict]:
    """One dict per track for the table: ids, pattern, ROI count, ``cat_t{k}`` and ``delta_t{k}`` (float|None),
    ``ind_t{k}`` (indeterminate) and ``ci_t{k}`` (its interval, text), ``not_model`` (time points whose ROI the
    prior-guided search or the reader added), the queue's ``queue_rank``, ``score`` (0..1), ``reviewed`` and
    ``reasons``."""
    _columns, rows = mrml.track_rows(analysis)
    responses = {r.track_id: r for r in analysis.responses}
    items = []
    for row in rows:
        item = {"track_id": row["track_id"], "pattern": row["pattern"] or "-", "n_rois": row["n_rois"],
                "rois": row["rois"], "not_model": row["not_model"], "queue_rank": row["queue_rank"],
                "score": float(row["review_score"]) if row["review_score"] else None,
                "reviewed": bool(row["reviewed"]), "reasons": row["review_reasons"]}
        response = responses.get(row["track_id"])
        for k in range(1, len(analysis.timepoints)):
            delta = row[f"delta_suv_total_pct_t{k}"]
            interval = response.delta_interval_pct.get(k) if response else None
            item[f"cat_t{k}"] = row[f"category_t{k}"] or "-"
            item[f"delta_t{k}"] = float(delta) if delta != "" else None
            item[f"ind_t{k}"] = bool(response and response.indeterminate.get(k))
            item[f"ci_t{k}"] = f"{interval[0]:+.0f} … {interval[1]:+.0f} %" if interval else ""
        items.append(item)
    return items


def table_headers(analysis: Any) -> list[dict]:
    headers = [{"title": "Queue", "key": "queue_rank"}, {"title": "Track", "key": "track_id"},
               {"title": "Pattern", "key": "pattern"}, {"title": "ROIs", "key": "n_rois"}]
    for k in range(1, len(analysis.timepoints)):
        headers.append({"title": f"T{k} ΔSUVtotal", "key": f"delta_t{k}"})
    # time points whose ROI the prior-guided search (or the reader) added: check these
    headers.append({"title": "Not model", "key": "not_model"})
    headers.append({"title": "Why in the queue", "key": "reasons", "sortable": False})
    return headers


def _sort_key(key: str):
    def value(item: dict) -> tuple:
        v = item.get(key)
        return (v is None, v if v is not None else 0)
    return value


class TracksLogic(FeatureLogic[TracksState]):
    """Keeps the table current (after load and every edit) and selects tracks."""

    def __init__(self, server: Server, context: ReviewContext) -> None:
        super().__init__(server, context, TracksState, NAMESPACE)
        self._all: list[dict] = []
        self.bind_changes({
            self.name.category_filter: lambda _v: self.refresh(),
            self.name.pattern_filter: lambda _v: self.refresh(),
            self.name.sort_by: lambda _v: self.refresh(),
        })
        context.listeners.append(self._on_change)

    def _on_change(self, what: str) -> None:
        if what in ("loaded", "edited"):
            self._all = table_items(self.context.nodes.analysis)
            self.data.headers = table_headers(self.context.nodes.analysis)
            self.data.patterns = [ANY, *sorted({i["pattern"] for i in self._all})]
            self.data.queue_summary = mrml.queue_summary(self.context.nodes.analysis)
            self.refresh()
            selected = self.context.nodes.selected_track
            if selected is not None and selected not in mrml.track_ids(self.context.nodes):
                self.select(None)  # the track was merged away or emptied
        if what in ("loaded", "edited", "selected"):
            selected = self.context.nodes.selected_track
            row = next((i for i in self._all if i["track_id"] == selected), None)
            self.data.selected_reasons = [r for r in (row["reasons"].split("; ") if row else []) if r]

    def refresh(self) -> None:
        """Apply filters and sort to the table rows."""
        category, pattern = self.data.category_filter, self.data.pattern_filter
        items = [i for i in self._all
                 if (category == ANY or category in [v for k, v in i.items() if k.startswith("cat_t")])
                 and (pattern == ANY or i["pattern"] == pattern)]
        for rule in reversed(self.data.sort_by or []):
            items.sort(key=_sort_key(rule.get("key", "track_id")), reverse=rule.get("order") == "desc")
        self.data.items = items
        self.data.summary = f"{len(items)} of {len(self._all)} tracks"

    def order(self) -> list[int]:
        """Track ids in the order shown (for next/previous)."""
        return [i["track_id"] for i in self.data.items] or mrml.track_ids(self.context.nodes)

    def select(self, track_id: int | None) -> None:
        """Highlight ``track_id`` and centre every view on it (None: clear the selection)."""
        nodes = self.context.nodes
        if track_id is not None:
            track_id = int(track_id)
        self.context.quietly(lambda: mrml.select_track(nodes, track_id))
        self.data.selected_track = -1 if track_id is None else track_id
        self.context.changed("selected")

    def step(self, step: int) -> int:
        """Select the next (``step`` = 1) or previous (-1) track of the table."""
        current = self.context.nodes.selected_track
        track_id = mrml.step_track(self.context.nodes, current, step, self.order())
        self.select(track_id)
        return track_id

    def next_unreviewed(self) -> int | None:
        """Select the next unreviewed track of the review queue and centre every view on it (None: all reviewed)."""
        track_id = mrml.next_unreviewed(self.context.nodes.analysis, self.context.nodes.selected_track)
        if track_id is not None:
            self.select(track_id)
        return track_id
