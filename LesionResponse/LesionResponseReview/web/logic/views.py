"""The views: one slice view per time point (CT + PET fused, ROI outlines), linked through the registrations;
orientation, SUV window, fusion opacity, colour-by, zoom; a click in a view is passed to the listeners."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trame_server import Server

from LesionResponseReview import mrml
from LesionResponseReview.web.context import ReviewContext
from LesionResponseReview.web.logic.base import FeatureLogic

VIEW_TAG = "LRtp{k}"  # singleton tag of a time point's slice view (the same as the desktop layout)
CLICK_TOLERANCE_PX = 3  # a press and release this close together is a click, not a drag
ZOOM_STEP = 1.5  # field-of-view factor of one zoom button press
START_ZOOM = 1.6  # after fitting the whole body: the track's surroundings fill the view, the body outline stays
VIEWS_PER_ROW = {1: 1, 2: 2, 3: 3, 4: 2, 5: 3, 6: 3, 7: 4}  # views as square as a wide screen allows


NAMESPACE = "views"  # state keys of this feature
REFERENCE_MODE = "reference:"  # click mode prefix: a click moves that organ's reference region there


@dataclass
class ViewsState:
    orientation: str = "Axial"
    suv_range: list[float] = field(default_factory=lambda: list(mrml.PET_SUV_WINDOW))
    suv_slider_max: float = 40.0  # top of the SUV slider (DOTATATE lesions rarely exceed it)
    fusion_opacity: float = mrml.PET_OPACITY
    color_by: str = "category"
    linked: bool = True
    labels: list[str] = field(default_factory=list)  # per view: "T1 2025-03-04"
    notes: list[str] = field(default_factory=list)  # per view: the selected track there
    click_mode: str = "navigate"  # "navigate" | "add" (grow a ROI at the click) | REFERENCE_MODE + organ


def timepoint_layout(n: int) -> Any:
    """trame-slicer layout: one axial slice view per time point, rows of at most 4."""
    from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition, ViewProps, ViewType

    mrml.check_timepoints_shown(n)
    views = [ViewLayoutDefinition(VIEW_TAG.format(k=k), ViewType.SLICE_VIEW,
                                  ViewProps(orientation="Axial", label=f"T{k}", group=k)) for k in range(n)]
    per_row = VIEWS_PER_ROW[n]
    rows = [Layout(LayoutDirection.Horizontal, views[i:i + per_row]) for i in range(0, n, per_row)]
    return Layout(LayoutDirection.Vertical, rows)


class ViewsLogic(FeatureLogic[ViewsState]):
    """Creates the views for the loaded analysis and applies the display choices to them."""

    def __init__(self, server: Server, context: ReviewContext) -> None:
        super().__init__(server, context, ViewsState, NAMESPACE)
        self.layout_manager: Any = None
        # listeners of a click: (time point, RAS point, click mode, shift held)
        self.click_listeners: list[Callable[[int, tuple[float, float, float], str, bool], None]] = []
        self._press: dict[int, tuple[int, int]] = {}
        self.bind_changes({
            self.name.orientation: self._on_orientation,
            self.name.suv_range: self._on_suv_range,
            self.name.fusion_opacity: self._on_opacity,
            self.name.color_by: self._on_color_by,
            self.name.linked: self._on_linked,
        })
        context.listeners.append(self._on_change)

    # ----- building --------------------------------------------------------------------------------
    def create_views(self, n: int) -> None:
        """Register the layout of ``n`` time points and create its views (before the data: the views then
        render through the stream scheduler, once per change, not on every node added)."""
        from trame_slicer.core import LayoutManager

        manager = self.slicer_app.view_manager
        self.layout_manager = LayoutManager(self.scene, manager, self.server)
        self.layout_manager.register_layout("timepoints", timepoint_layout(n))
        self.layout_manager.set_layout("timepoints")
        for k in range(n):
            view = manager.get_view(VIEW_TAG.format(k=k))
            view.render_window().SetMultiSamples(0)  # 3-5x faster redraws on a software renderer
            self.context.views[k] = view
            self._observe_clicks(k, view)
            view.interactor().AddObserver("WindowResizeEvent", lambda *_: self._refit(), -1.0)

    def attach(self) -> None:
        """Show the loaded nodes in the views, fit them, link them."""
        nodes = self.context.nodes
        n = len(nodes.analysis.timepoints)
        mrml.attach_views(nodes, {k: view.get_view_node() for k, view in self.context.views.items()})
        for view in self.context.views.values():
            view.fit_view_to_content()
        self.context.linker = mrml.ViewLinker(nodes)
        self.data.labels = [mrml.view_label(nodes.analysis, k) for k in range(n)]
        self.data.notes = [""] * n

    def _observe_clicks(self, tp: int, view: Any) -> None:
        interactor = view.interactor()

        def press(caller: Any, _event: str) -> None:
            self._press[tp] = caller.GetEventPosition()

        def release(caller: Any, _event: str) -> None:
            start, end = self._press.pop(tp, None), caller.GetEventPosition()
            if start is None or max(abs(start[0] - end[0]), abs(start[1] - end[1])) > CLICK_TOLERANCE_PX:
                return
            xy_to_ras = view.get_view_node().GetXYToRAS()
            ras = xy_to_ras.MultiplyPoint((float(end[0]), float(end[1]), 0.0, 1.0))[:3]
            self.clicked(tp, (ras[0], ras[1], ras[2]), bool(caller.GetShiftKey()))

        interactor.AddObserver("LeftButtonPressEvent", press, 10.0)
        interactor.AddObserver("LeftButtonReleaseEvent", release, 10.0)

    def clicked(self, tp: int, ras: tuple[float, float, float], shift: bool = False) -> None:
        """A click at ``ras`` in time point ``tp``'s view: navigate (the other views follow), then tell listeners."""
        mode = self.data.click_mode
        if mode == "navigate":
            nodes = self.context.nodes  # the clicked view stays put under the reader's pointer
            self.context.quietly(lambda: mrml.follow_crosshair(nodes, ras, tp, move_source=False))
        for listener in self.click_listeners:
            listener(tp, ras, mode, shift)

    # ----- display choices ---------------------------------------------------------------------------
    def _on_orientation(self, orientation: str) -> None:
        if self.context.nodes is not None:
            self.context.quietly(lambda: mrml.set_orientation(self.context.nodes, orientation))

    def _on_suv_range(self, suv_range: list[float]) -> None:
        if self.context.nodes is not None and len(suv_range) == 2 and suv_range[1] > suv_range[0]:
            mrml.set_pet_window(self.context.nodes, *suv_range)

    def _on_opacity(self, opacity: float) -> None:
        if self.context.nodes is not None:
            mrml.set_fusion_opacity(self.context.nodes, float(opacity))

    def _on_color_by(self, color_by: str) -> None:
        if self.context.nodes is not None:
            self.context.nodes.color_by = color_by
            mrml.refresh_colors(self.context.nodes)
            self.context.changed("display")

    def _on_linked(self, linked: bool) -> None:
        if self.context.linker is not None:
            self.context.linker.enabled = bool(linked)

    def _refit(self) -> None:
        """After a view changed size (first shown, browser resized): fit it again, keep the selected track centred."""
        if self.context.nodes is not None and self.context.views:
            self.reset()

    def zoom(self, factor: float) -> None:
        """Zoom every view by ``factor`` (> 1 = closer)."""
        mrml.zoom_views(self.context.nodes, factor)

    def reset(self) -> None:
        """Fit every view to its image again, then re-centre on the selected track."""
        for view in self.context.views.values():
            view.fit_view_to_content()
        mrml.zoom_views(self.context.nodes, START_ZOOM)
        nodes = self.context.nodes
        if nodes is not None and nodes.selected_track is not None:
            self.context.quietly(lambda: mrml.jump_to_track(nodes, nodes.selected_track))

    # ----- notes under the view labels ------------------------------------------------------------------
    def _on_change(self, what: str) -> None:
        if what in ("selected", "edited") and self.context.nodes is not None:
            self.data.notes = self.track_notes()

    def track_notes(self) -> list[str]:
        """Per view, the selected track there: ``T012 increasing +45.0 %`` (or absent), with `` · ROI prior-guided``
        (or ``reader``) where the model did not find that ROI."""
        nodes = self.context.nodes
        n = len(nodes.analysis.timepoints)
        track_id = nodes.selected_track
        if track_id is None or track_id not in mrml.track_ids(nodes):
            return [""] * n
        track = nodes.analysis.track(track_id)
        response = next((r for r in nodes.analysis.responses if r.track_id == track_id), None)
        sources = mrml.roi_sources(nodes.analysis, track)
        notes = []
        for k in range(n):
            present = bool(track.rois.get(k))
            category = "baseline" if k == 0 and present else (response.categories.get(k, "") if response else "")
            delta = response.delta_suv_total_pct.get(k) if response and k else None
            text = f"T{track_id:03d} {category or ('absent' if not present else '')}"
            text += f" {delta:+.1f} %" if delta is not None else ""
            text += " (indeterminate)" if response and k and response.indeterminate.get(k) else ""
            text += "" if present else " (registered)"
            text += f" · ROI {sources[k]}" if sources.get(k, "model") != "model" else ""  # found by the search: check it
            notes.append(text)
        return notes
