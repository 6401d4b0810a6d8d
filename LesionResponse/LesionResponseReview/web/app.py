"""The review app: creates the Slicer application, the feature logics and their UI, and wires them (nothing else)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from trame.app import TrameApp
from trame.ui.vuetify3 import SinglePageWithDrawerLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v3

from LesionResponseLib.review import edits
from LesionResponseReview import mrml
from LesionResponseReview.web.context import ReviewContext
from LesionResponseReview.web.logic.audit import AuditLogic
from LesionResponseReview.web.logic.corrections import CorrectionsLogic
from LesionResponseReview.web.logic.export import ExportLogic
from LesionResponseReview.web.logic.overview import OverviewLogic
from LesionResponseReview.web.logic.settings import SettingsLogic
from LesionResponseReview.web.logic.timepoints import TimepointsLogic
from LesionResponseReview.web.logic.tracks import TracksLogic
from LesionResponseReview.web.logic.views import REFERENCE_MODE, ViewsLogic
from LesionResponseReview.web.ui.audit_ui import build_audit
from LesionResponseReview.web.ui.corrections_ui import build_corrections
from LesionResponseReview.web.ui.overview_ui import build_overview
from LesionResponseReview.web.ui.settings_ui import build_settings
from LesionResponseReview.web.ui.timepoints_ui import build_export, build_timepoints
from LesionResponseReview.web.ui.tracks_ui import build_track_table
from LesionResponseReview.web.ui.views_ui import build_toolbar, view_caption

# PNG: lossless, so the reader (and the tests) see exactly the rendered colours; one quality for interaction and
# still frames, so each change renders once (a second "still" render doubles the cost on a software renderer)
DEFAULT_ENCODER = "png"
FRAME_QUALITY = 90
DRAWER_WIDTH = 600  # px: the track table with up to 6 follow-up columns


class ReviewApp(TrameApp):
    """One analysis folder under review in the browser."""

    def __init__(self, out_dir: str | Path, user: str, *, server: Any = None, pacs: tuple[str, int,
                                                                                          str] | None = None,
                 encoder: str = DEFAULT_ENCODER, log: Callable[[str], None] = print, images: Any = None) -> None:
        """``images``: the folder's PET/CT already read, or a ``Future`` of them (``mrml.prefetch_images``)."""
        super().__init__(server)
        from trame_slicer.core import SlicerApp
        from trame_slicer.rca_view import register_rca_factories

        self.context = ReviewContext(Path(out_dir), user, SlicerApp(), pacs=pacs, log=log)
        register_rca_factories(self.context.slicer_app.view_manager, self.server, slice_view_ui_f=view_caption,
                               rca_encoder=encoder, interactive_quality=FRAME_QUALITY)
        self.views = ViewsLogic(self.server, self.context)
        self.tracks = TracksLogic(self.server, self.context)
        self.corrections = CorrectionsLogic(self.server, self.context)
        self.audit = AuditLogic(self.server, self.context)
        self.timepoints = TimepointsLogic(self.server, self.context)
        self.export = ExportLogic(self.server, self.context)
        self.overview = OverviewLogic(self.server, self.context)
        self.settings = SettingsLogic(self.server, self.context)
        self.views.click_listeners.append(self._on_view_click)
        self.server.trigger("select_track")(self.tracks.select)
        self.server.trigger("step_track")(self.tracks.step)
        self.server.trigger("next_unreviewed")(self.tracks.next_unreviewed)
        self.server.trigger("mark_reviewed")(self._mark_reviewed)
        self.server.trigger("mip_click")(self.overview.clicked)
        self.server.trigger("show_reference")(self.timepoints.show_reference)
        self._load(images)
        self._build_ui()

    def _load(self, images: Any) -> None:
        self.views.create_views(len(mrml.read_analysis(self.context.out_dir).timepoints))
        with ExitStack() as no_renders:  # one render per view when loaded, not one per node added (~200)
            for view in self.context.views.values():
                no_renders.enter_context(view.render_blocked())
            images = images.result() if hasattr(images, "result") else images
            self.context.nodes = mrml.load_analysis_into_scene(self.context.slicer_app.scene,
                                                               self.context.out_dir, images=images)
            self.corrections.open_session()
            self.views.attach()
            self.context.changed("loaded")
            order = self.tracks.order()
            if order:
                self.tracks.select(order[0])

    def close(self) -> None:
        """Release the review session's lock (every edit is already saved); a running re-run is stopped and the lock
        left to it (``SettingsLogic.stop``)."""
        if not self.settings.stop():
            self.corrections.close_session()

    def _mark_reviewed(self) -> None:
        """Mark the selected track reviewed: a review edit like the others (saved, audited, undoable)."""
        selected = self.context.nodes.selected_track
        if selected is not None:
            self.corrections.apply(lambda: edits.MarkReviewed(selected))

    def _on_view_click(self, tp: int, ras: tuple[float, float, float], mode: str, shift: bool) -> None:
        with self.state:
            if mode == "add":
                self.corrections.add_at(tp, ras)
                self.views.data.click_mode = "navigate"  # one ROI per click in add mode
                return
            if mode.startswith(REFERENCE_MODE):
                self.corrections.place_reference(tp, ras, mode.removeprefix(REFERENCE_MODE))
                self.views.data.click_mode = "navigate"  # one move per click
                return
            roi_id = self.corrections.pick(tp, ras, into_b=shift)
            track = mrml.track_of(self.context.nodes.analysis).get(roi_id) if roi_id else None
            if track is not None and not shift:  # highlight its track where the reader is looking (no jump)
                self.context.nodes.selected_track = track
                mrml.refresh_colors(self.context.nodes)
                self.tracks.data.selected_track = track
                self.context.changed("selected")

    def _build_ui(self) -> None:
        n = len(self.context.nodes.analysis.timepoints)
        with SinglePageWithDrawerLayout(self.server, full_height=True) as layout:
            self.ui = layout
            layout.title.set_text(f"Review {self.context.nodes.analysis.patient_id}")
            layout.title.style = "flex: 0 0 auto;"  # the toolbar's buttons shrink before the patient's name does
            with layout.toolbar:
                v3.VSpacer()
                build_toolbar(self.server, self.views.zoom, self.views.reset)
            with layout.drawer as drawer:
                drawer.width = DRAWER_WIDTH
                with v3.VTabs(v_model=("drawer_tab", "tracks"), density="compact", grow=True):
                    for key, label in (("tracks", "Tracks"), ("correct", "Correct"), ("audit", "Audit"),
                                       ("mip", "MIP"), ("info", "Time points"), ("settings", "Settings")):
                        v3.VTab(label, value=key, raw_attrs=[f'data-testid="tab-{key}"'])
                with v3.VWindow(v_model=("drawer_tab",)):
                    with v3.VWindowItem(value="tracks", transition=False, reverse_transition=False):
                        build_track_table(self.server, n - 1)
                    with v3.VWindowItem(value="correct", transition=False, reverse_transition=False):
                        build_corrections(self.server, self.corrections, n)
                    with v3.VWindowItem(value="audit", transition=False, reverse_transition=False):
                        build_audit(self.server)
                    with v3.VWindowItem(value="mip", transition=False, reverse_transition=False):
                        build_overview(self.server)
                    with v3.VWindowItem(value="info", transition=False, reverse_transition=False):
                        build_export(self.server, self.export.export)  # first: its outcome stays in sight
                        v3.VDivider()
                        build_timepoints(self.server)
                    with v3.VWindowItem(value="settings", transition=False, reverse_transition=False):
                        build_settings(self.server, self.settings.set_value, self.settings.rerun,
                                       self.settings.cancel)
            with layout.content:
                # flex items may shrink below their image's size (else views grow with their last frame)
                client.Style(".layout-grid-container, .layout-grid-container div { min-width: 0; min-height: 0; }")
                with html.Div(classes="d-flex flex-row fill-height", style="width: 100%; overflow: hidden;"):
                    self.views.layout_manager.initialize_layout_grid(layout)
