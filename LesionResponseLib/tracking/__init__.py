"""Tracking stage: registration of time points, lesion-ROI matching into links, and tracks.

- :func:`register_pair` (``registration``): rigid + deformable registration with quality checks;
  :func:`save_transform` / :func:`load_transform` for the ITK transform files.
- :func:`match_rois` (``matching``): dilate, map through the registration, cluster, assign -> links.
- :func:`build_tracks` (``tracks``): connected components of links over accepted ROIs, stable ids.
- ``evaluate``: scores against phantom truth (benchmarks, tests).
"""

from LesionResponseLib.tracking.matching import match_rois
from LesionResponseLib.tracking.registration import (
    RegistrationError,
    RegistrationSettings,
    load_transform,
    register_pair,
    save_transform,
    transform_filename,
)
from LesionResponseLib.tracking.tracks import TrackingError, build_tracks

__all__ = ["RegistrationError", "RegistrationSettings", "TrackingError", "build_tracks", "load_transform",
           "match_rois", "register_pair", "save_transform", "transform_filename"]
