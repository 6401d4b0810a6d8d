"""Tracking stage: registration of time points, lesion-ROI matching into links, and tracks.

- :func:`match_rois` (``matching``): dilate, map through the registration, cluster, assign -> links.
- :func:`build_tracks` (``tracks``): connected components of links over accepted ROIs, stable ids.
"""

from LesionResponseLib.tracking.matching import match_rois
from LesionResponseLib.tracking.tracks import TrackingError, build_tracks

__all__ = ["TrackingError", "build_tracks", "match_rois"]
