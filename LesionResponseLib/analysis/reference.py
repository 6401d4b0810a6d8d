"""A site's reference contours as a :class:`~LesionResponseLib.analysis.truth.Reference`, measured like the analysis.

The structures (``dicomio.contours``) become, per time point, a label map on the PET grid (structures in file
order; a voxel two structures claim stays with the first, and the overlap is counted), measured with
:func:`~LesionResponseLib.analysis.quantify.measure_rois` on the analysis' SUV PET with its settings. Lesions across
time points are the structures sharing a **name** (case and spaces ignored): a site's "Lesion 3" at baseline and
at follow-up is one lesion; a name that occurs at one time point only is a lesion seen there only. Each lesion is
its own reference track; its categories and the heterogeneity come from the analysis' own rules
(:func:`~LesionResponseLib.analysis.response.assess_response`, its measure, reference and thresholds), so the
reference and the analysis are categorised alike. Time points without any reference file are not covered: no
figure counts them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.analysis.quantify import measure_rois
from LesionResponseLib.analysis.response import assess_response
from LesionResponseLib.analysis.truth import Reference
from LesionResponseLib.datamodel import Analysis, Track, roi_id_for


def lesion_key(name: str) -> str:
    """The name structures are matched on across time points: lower case, spaces and underscores dropped."""
    return "".join(name.lower().replace("_", " ").split())


def contour_reference(structures: Sequence[Any], covered: set[int], analysis: Analysis,
                      suv_of: Callable[[int], sitk.Image], source: str = "") -> Reference:
    """The :class:`Reference` of ``structures`` (``dicomio.contours.ReferenceStructure``: name, timepoint, mask on
    the PET grid) for ``analysis``; ``covered``: the time points the reference files cover; ``suv_of(k)``: the SUV
    PET of time point ``k``. See the module docstring."""
    n = len(analysis.timepoints)
    keys = list(dict.fromkeys(lesion_key(s.name) for s in structures))
    lesion_of = {key: i + 1 for i, key in enumerate(keys)}
    maps, rois, members, overlaps = {}, [], {i: {} for i in lesion_of.values()}, 0
    for k in sorted(covered):
        suv = suv_of(k)
        array = np.zeros(sitk.GetArrayViewFromImage(suv).shape, np.uint16)
        for label, structure in enumerate((s for s in structures if s.timepoint == k), start=1):
            inside = sitk.GetArrayViewFromImage(structure.mask) > 0
            overlaps += int((inside & (array > 0)).sum())
            array[inside & (array == 0)] = label
            members[lesion_of[lesion_key(structure.name)]].setdefault(k, []).append(label)
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(suv)
        maps[k] = array
        rois += measure_rois(image, suv, k, settings=analysis.parameters.quantification)
    by_id = {r.roi_id: r for r in rois}
    tracks = [Track(lesion, {k: [roi_id_for(k, label) for label in labels if roi_id_for(k, label) in by_id]
                             for k, labels in per.items()}) for lesion, per in members.items()]
    tracks = [t for t in tracks if any(t.rois.values())]
    responses, heterogeneous = assess_response(tracks, rois, n, analysis.parameters)
    truth = {"n_timepoints": n, "covered_timepoints": sorted(covered), "overlap_voxels": overlaps,
             "lesions": [_lesion(track, keys, by_id, n) for track in tracks],
             "tracks": {str(r.track_id): {"suv_total": [r.suv_total.get(k, 0.0) for k in range(n)],
                                          "categories": {str(k): c for k, c in r.categories.items()}}
                        for r in responses},
             "heterogeneous": {str(k): bool(v) for k, v in heterogeneous.items()}}
    names = {lesion_of[lesion_key(s.name)]: s.name for s in structures}
    for lesion in truth["lesions"]:
        lesion["name"] = names[lesion["lesion_id"]]
        lesion["categories"] = truth["tracks"].get(str(lesion["track_id"]), {}).get("categories", {})

    def label_array(k: int) -> np.ndarray:
        return maps[k] if k in maps else np.zeros(sitk.GetArrayViewFromImage(suv_of(k)).shape, np.uint16)

    return Reference(truth, label_array, "reference contours", source)


def _lesion(track: Track, keys: list[str], by_id: dict, n: int) -> dict[str, Any]:
    """A reference lesion in the truth schema (measured on the PET: volume, SUVmax, SUVmean, SUVtotal, summed over
    its structures at a time point)."""
    timepoints = {}
    for k in range(n):
        parts = [by_id[r] for r in track.rois.get(k, [])]
        volume = sum(r.volume_ml for r in parts)
        total = sum(r.suv_total for r in parts)
        timepoints[str(k)] = {"present": bool(parts), "labels": [r.label for r in parts], "volume_ml": volume,
                              "suv_max": max((r.suv_max for r in parts), default=0.0),
                              "suv_mean": total / volume if volume else 0.0, "suv_total": total,
                              "centroid_mm": list(parts[0].centroid_mm) if len(parts) == 1 else None}
    return {"lesion_id": track.track_id, "track_id": track.track_id, "kind": "reference",
            "key": keys[track.track_id - 1], "timepoints": timepoints}
