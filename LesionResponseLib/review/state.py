"""The reviewed state (an :class:`Analysis` plus its label maps), its recomputation and ROI fingerprints.

Tracks are always derived: accepted ROIs + links (automatic and reader) -> ``tracking.build_tracks`` (ids
kept stable through ``previous``) -> ``analysis.assess_response`` (track categories, heterogeneity).
The stage functions are reached through :class:`Engine` so the same review code runs in Slicer, the CLI
and tests.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.datamodel import Analysis, LesionROI
from LesionResponseLib.errors import describe
from LesionResponseLib.imaging import label_on_grid
from LesionResponseLib.review.store import ReviewError


def _missing(name: str) -> Callable[..., Any]:
    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise ReviewError(describe(f"the analysis stage does not provide {name}() in this installation",
                                   path="LesionResponseLib/analysis",
                                   fix="Update LesionResponse; the review needs it to recompute"))
    return fail


@dataclass
class Engine:
    """The stage functions a review calls (defaults: the tracking and analysis packages)."""

    build_tracks: Callable[..., Any]
    assess_response: Callable[..., Any]
    measure_rois: Callable[..., Any]
    write_outputs: Callable[..., Any]
    measure_reference: Callable[..., Any] = field(default_factory=lambda: _missing("measure_reference"))
    lesion_sites: Callable[..., Any] = field(default_factory=lambda: _missing("lesion_sites"))

    @classmethod
    def default(cls) -> Engine:
        """Engine over ``tracking.build_tracks`` and ``analysis.{assess_response,measure_rois,write_outputs,
        measure_reference,lesion_sites}``."""
        from LesionResponseLib import analysis
        from LesionResponseLib.tracking import build_tracks

        names = ("assess_response", "measure_rois", "write_outputs", "measure_reference", "lesion_sites")
        found = {name: getattr(analysis, name, None) or _missing(name) for name in names}
        return cls(build_tracks=build_tracks, **found)


@dataclass
class ReviewState:
    """The analysis being reviewed, its label maps (time point -> uint16 image) and the highest track id used."""

    analysis: Analysis
    labels: dict[int, sitk.Image]
    max_track_id: int = 0
    created: dict[str, str] = field(default_factory=dict)  # edit id -> ROI id an AddRoi created

    def copy(self) -> ReviewState:
        """A deep copy (label images are copied, so edits never touch the original)."""
        labels = {tp: sitk.Image(img) for tp, img in self.labels.items()}
        return ReviewState(copy.deepcopy(self.analysis), labels, self.max_track_id, dict(self.created))

    def roi(self, roi_id: str) -> LesionROI:
        """The ROI ``roi_id`` or a :class:`ReviewError` naming it."""
        try:
            return self.analysis.roi(roi_id)
        except KeyError:
            raise ReviewError(describe(f"no lesion-ROI {roi_id!r} in this analysis", path="analysis.json",
                                       fix="Check the id in rois.csv (e.g. tp1-L0003)")) from None

    def track_of(self) -> dict[str, int]:
        """ROI id -> track id, over accepted ROIs."""
        return {rid: t.track_id for t in self.analysis.tracks for ids in t.rois.values() for rid in ids}

    def track_id_of(self, roi_id: str) -> int:
        """The track of an accepted ROI, or a :class:`ReviewError`."""
        track = self.track_of().get(roi_id)
        if track is None:
            raise ReviewError(describe(f"lesion-ROI {roi_id} is in no track (is it rejected?)",
                                       path="analysis.json", fix="Restore it first"))
        return track

    def label_array(self, timepoint: int) -> np.ndarray:
        """The label map of ``timepoint`` as a (z, y, x) array (a view: do not modify)."""
        if timepoint not in self.labels:
            raise ReviewError(describe(f"no label map for time point {timepoint}",
                                       path=f"labels/tp{timepoint}.nii.gz",
                                       fix="Re-run `lesion-response analyze` so it writes labels/"))
        return sitk.GetArrayViewFromImage(self.labels[timepoint])


def recompute(state: ReviewState, engine: Engine) -> ReviewState:
    """Rebuild tracks (stable ids, never reusing a deleted id), responses and heterogeneity in place."""
    analysis = state.analysis
    max_id = max([state.max_track_id] + [t.track_id for t in analysis.tracks])
    tracks = engine.build_tracks(analysis.rois, analysis.links, previous=analysis.tracks, min_new_id=max_id + 1)
    responses, heterogeneous = engine.assess_response(tracks, analysis.rois, len(analysis.timepoints),
                                                      analysis.parameters)
    analysis.tracks, analysis.responses = list(tracks), list(responses)
    analysis.heterogeneous = {int(k): bool(v) for k, v in heterogeneous.items()}
    analysis.reviewed_tracks = [t for t in analysis.reviewed_tracks if t in {x.track_id for x in tracks}]
    state.max_track_id = max([max_id] + [t.track_id for t in tracks])
    return state


def track_summary(state: ReviewState) -> dict[str, Any]:
    """Compact state for before/after: track -> ROI ids and categories per follow-up; heterogeneity; reference
    regions (centre, SUVmean); ROI sites."""
    responses = {r.track_id: r for r in state.analysis.responses}
    tracks = {}
    for track in state.analysis.tracks:
        response = responses.get(track.track_id)
        tracks[str(track.track_id)] = {
            "rois": sorted(rid for ids in track.rois.values() for rid in ids),
            "categories": {str(k): v for k, v in (response.categories if response else {}).items()},
        }
    heterogeneous = {str(k): v for k, v in state.analysis.heterogeneous.items()}
    references = {f"tp{r.timepoint} {r.organ}": (None if r.suv_mean is None or not r.placed else
                                                  {"centre_mm": [round(c, 1) for c in r.centre_mm],
                                                   "suv_mean": round(r.suv_mean, 3), "source": r.source})
                  for r in state.analysis.reference_regions}
    sites = {r.roi_id: r.site for r in state.analysis.rois}
    return {"tracks": tracks, "heterogeneous": heterogeneous, "references": references, "sites": sites}


def summary_diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Only the tracks whose ROIs or categories changed (``None`` = track absent on that side); the reference
    regions and sites of existing ROIs that changed, when any did."""
    ids = sorted(set(before["tracks"]) | set(after["tracks"]), key=int)
    changed = [i for i in ids if before["tracks"].get(i) != after["tracks"].get(i)]
    diff = {
        "tracks_before": {i: before["tracks"].get(i) for i in changed},
        "tracks_after": {i: after["tracks"].get(i) for i in changed},
        "heterogeneous_before": before["heterogeneous"],
        "heterogeneous_after": after["heterogeneous"],
    }
    for name in ("references", "sites"):  # only where something changed (reference moved, site set)
        was, now = before.get(name, {}), after.get(name, {})
        keys = [k for k in sorted(set(was) | set(now)) if was.get(k) != now.get(k) and k in was]
        if keys:
            diff[f"{name}_before"] = {k: was.get(k) for k in keys}
            diff[f"{name}_after"] = {k: now.get(k) for k in keys}
    return diff


def _runs(flat: np.ndarray) -> list[list[int]]:
    """Run-length encoding of sorted flat voxel indices as ``[start, length]`` pairs."""
    if flat.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(flat) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [flat.size]))
    return [[int(flat[s]), int(e - s)] for s, e in zip(starts, ends, strict=True)]


def runs_to_indices(runs: list[list[int]]) -> np.ndarray:
    """Flat voxel indices of a run-length encoding made by :func:`roi_fingerprint`."""
    if not runs:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(s, s + n, dtype=np.int64) for s, n in runs])


def roi_fingerprint(state: ReviewState, roi_id: str) -> dict[str, Any]:
    """What re-identifies a ROI after a re-run: time point, centroid (LPS mm), volume (mL), grid, voxel RLE."""
    roi = state.roi(roi_id)
    array = state.label_array(roi.timepoint)
    flat = np.flatnonzero(array.ravel() == roi.label)
    return {"roi_id": roi_id, "timepoint": roi.timepoint, "centroid_mm": list(roi.centroid_mm),
            "volume_ml": roi.volume_ml, "grid_zyx": list(array.shape), "runs": _runs(flat)}


def load_mask(mask: sitk.Image | str | Path, reference: sitk.Image) -> sitk.Image:
    """A binary uint8 mask on ``reference``'s grid (nearest-neighbour resampling when grids differ)."""
    if not isinstance(mask, sitk.Image):
        path = Path(mask)
        if not path.exists():
            raise ReviewError(describe("mask file not found", path=path, fix="Give a NIfTI/NRRD label mask"))
        mask = sitk.ReadImage(str(path))
    return label_on_grid(sitk.NotEqual(mask, 0), reference, sitk.sitkUInt8)
