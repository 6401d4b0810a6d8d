"""The overview: a coronal maximum-intensity projection of the SUV PET per time point (inverted grey, the usual
PET reading display) with the lesion-ROIs projected in their colours; a click on a MIP centres every view on
the hottest point along that ray, and the other time points on its registered images."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

import numpy as np
from trame_server import Server

from LesionResponseReview import mrml
from LesionResponseReview.web.context import ReviewContext
from LesionResponseReview.web.logic.base import FeatureLogic

NAMESPACE = "overview"  # state keys of this feature
MIP_SUV_MAX = 10.0  # SUV shown black on the inverted MIP: liver (~5) mid-grey, lesions and organs black


@dataclass
class OverviewState:
    images: list[str] = field(default_factory=list)  # PNG data URLs, one per time point
    labels: list[str] = field(default_factory=list)


def coronal_mip(suv: np.ndarray, labels: np.ndarray, colours: dict[int, tuple[float, float, float]]) -> np.ndarray:
    """RGB (z up, x = patient right on the left) of the (z, y, x) SUV volume projected along y (anterior-posterior),
    inverted grey, with each projected ROI label drawn in its colour."""
    mip = suv.max(axis=1)  # (z, x)
    grey = 255 - np.clip(mip / MIP_SUV_MAX, 0, 1) * 255
    rgb = np.repeat(grey[..., None], 3, axis=2)
    projected = labels.max(axis=1)
    for label, colour in colours.items():
        rgb[projected == label] = np.array(colour) * 255
    # row 0 = highest z (head up); LPS x grows to the patient's left, shown on the right as in a coronal view
    return rgb[::-1].astype(np.uint8)


def png_data_url(rgb: np.ndarray, spacing_zx: tuple[float, float]) -> str:
    """The image as a PNG data URL, resampled so that one pixel is square in mm."""
    from PIL import Image

    image = Image.fromarray(rgb)
    ratio = spacing_zx[0] / spacing_zx[1]
    image = image.resize((rgb.shape[1], max(1, round(rgb.shape[0] * ratio))), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class OverviewLogic(FeatureLogic[OverviewState]):
    """Redraws the MIPs after load and every edit; turns a click into a jump."""

    def __init__(self, server: Server, context: ReviewContext) -> None:
        super().__init__(server, context, OverviewState, NAMESPACE)
        self._suv: dict[int, np.ndarray] = {}
        context.listeners.append(self._on_change)

    def _suv_array(self, tp: int) -> np.ndarray:
        import SimpleITK as sitk

        if tp not in self._suv:  # a view on the session's cached SUV image: no second copy of the voxels
            self._suv[tp] = sitk.GetArrayViewFromImage(self.context.session.suv(tp))
        return self._suv[tp]

    def _on_change(self, what: str) -> None:
        if what == "loaded":
            self._suv.clear()  # views on the previous session's images (a re-run opens a new session)
        if what in ("loaded", "edited", "display") and self.context.session is not None:
            self.refresh()

    def refresh(self) -> None:
        nodes, session = self.context.nodes, self.context.session
        images = []
        for tp in range(len(nodes.analysis.timepoints)):
            colours = {r.label: mrml.segment_color(nodes, r) for r in nodes.analysis.rois if r.timepoint == tp}
            suv = session.suv(tp)
            spacing = suv.GetSpacing()
            images.append(png_data_url(coronal_mip(self._suv_array(tp), nodes.label_arrays[tp], colours),
                                       (spacing[2], spacing[0])))
        self.data.images = images
        self.data.labels = [mrml.view_label(nodes.analysis, k) for k in range(len(images))]

    def clicked(self, tp: int, fx: float, fy: float) -> None:
        """A click at fractions (``fx`` across, ``fy`` down) of time point ``tp``'s MIP."""
        suv = self._suv_array(tp)
        nz, _ny, nx = suv.shape
        x = int(np.clip(fx * nx, 0, nx - 1))
        z = int(np.clip((1.0 - fy) * nz, 0, nz - 1))
        y = int(suv[z, :, x].argmax())  # the hottest voxel along the projection ray
        lps = self.context.session.suv(tp).TransformIndexToPhysicalPoint((x, y, z))
        nodes = self.context.nodes
        self.context.quietly(lambda: mrml.follow_crosshair(nodes, mrml.lps_to_ras(lps), tp))
