"""``segment``: PET (SUV) -> lesion-ROI label map on the PET grid."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.errors import describe
from LesionResponseLib.segmentation.components import (
    drop_equivocal_rois,
    drop_physiological_rois,
    drop_rois_in,
    dropped_components,
    label_rois,
)
from LesionResponseLib.segmentation.model import SegmentationError, SegmentationModel, load_model
from LesionResponseLib.segmentation.threshold import liver_reference, threshold_mask

_CACHE: dict[str, SegmentationModel] = {}


def segment(pet_suv: sitk.Image, ct: sitk.Image | None = None, *, method: str = "model",
            model_path: str | None = None,
            min_volume_ml: float = 0.1, progress: bool | Callable[[str], None] | None = None,
            split_touching: bool = True, organs: sitk.Image | None = None,
            equivocal_max_volume_ml: float = 0.0, drop_physiological: bool = True,
            drop_intracranial: bool = True) -> sitk.Image:
    """Lesion-ROI label map (uint16, PET grid, 0 background, 1..N by descending SUVmax); see
    :func:`segment_with_evidence`, which also returns the model's probability and dropped candidates."""
    return segment_with_evidence(pet_suv, ct, method=method, model_path=model_path,
                                 min_volume_ml=min_volume_ml, progress=progress, split_touching=split_touching,
                                 organs=organs, equivocal_max_volume_ml=equivocal_max_volume_ml,
                                 drop_physiological=drop_physiological, drop_intracranial=drop_intracranial).labels


@dataclass
class SegmentationOutput:
    """What one segmentation run gives (PET grid): the lesion-ROI label map and, for models, the lesion
    probability (0-1) and the *candidates*: components above the model's threshold dropped as smaller than the
    minimum ROI volume (equivocal ROIs are not candidates: uptake not above the liver is not the disease
    tracked), for the prior-guided search's longitudinal confirmation; for models with a ``physiological`` output,
    that probability too (where the search does not go)."""

    labels: sitk.Image
    probability: sitk.Image | None = None
    candidates: sitk.Image | None = None
    physiological: sitk.Image | None = None


def segment_with_evidence(pet_suv: sitk.Image, ct: sitk.Image | None = None, *, method: str = "model",
                          model_path: str | None = None, min_volume_ml: float = 0.1,
                          progress: bool | Callable[[str], None] | None = None, split_touching: bool = True,
                          organs: sitk.Image | None = None, equivocal_max_volume_ml: float = 0.0,
                          drop_physiological: bool = True, drop_intracranial: bool = True) -> SegmentationOutput:
    """Label map, and for models the lesion probability and the dropped candidates (:class:`SegmentationOutput`).

    The label map is uint16 on the PET grid, 0 background, 1..N by descending SUVmax.
    ``method``: ``"model"`` (shipped SegResNet, or ``model_path``), ``"threshold"`` (BASELINE: liver-referenced
    SUV threshold; ``organs``: optional PET-grid map whose non-zero voxels are physiological uptake to exclude), or a path to a TorchScript file / MONAI
    bundle folder (nnU-Net v2 folders are not supported). Model inference: resample to the model spacing,
    sliding-window inference (CPU, GPU when present), probability back to the PET grid (linear), threshold,
    then 26-connected components >= ``min_volume_ml`` (mL) with touching lesions split (see ``label_rois``).
    ``ct``: the time point's CT (HU, any grid in the PET's frame of reference), the second input of models
    whose config lists a ``ct_hu`` channel (``model.ct_channel``); PET-only models ignore it. A CT-channel
    model without a CT raises :class:`SegmentationError`, unless its config says ``missing_ct="zeros"``
    (trained with CT dropout: it then runs on the PET alone, see the model card).
    ``progress``: True for MONAI's progress bar, or a callable receiving stage names.
    Model outputs then lose the ROIs lying mostly in the cranial cavity found on ``ct`` (``drop_intracranial``;
    ``anatomy.cranial_cavity``: the pituitary's physiological uptake, the one false positive left on the
    phantom benchmarks, and meningiomas) and, for models with a ``physiological`` output, the ROIs lying on it
    (``drop_physiological``; see ``components.drop_physiological_rois``, at the model's
    ``physiological_threshold``). ``equivocal_max_volume_ml`` > 0 also drops the ROIs smaller than that (mL)
    with SUVmax not above the liver SUVmean (``components.drop_equivocal_rois``, the Krenning reference; off by
    default: on faint small lesions it dropped many more true ROIs than false ones, docs/methods/segmentation.md).
    """
    _check_input(pet_suv)
    report = progress if callable(progress) else (lambda _stage: None)
    if method == "threshold":
        report("threshold")
        mask = threshold_mask(pet_suv, organs=organs)
    else:
        model = _model(model_path if method == "model" else method)
        report("inference")
        maps = {name: sitk.Resample(image, pet_suv, sitk.Transform(), sitk.sitkLinear, 0.0)
                for name, image in model.probabilities(pet_suv, progress=progress is True, ct=ct).items()}
        probability = maps["lesion"]
        mask = probability > model.config.threshold
    report("components")
    labels = label_rois(mask, pet_suv, min_volume_ml=min_volume_ml, split_touching=split_touching)
    if method == "threshold":
        return SegmentationOutput(labels)
    candidates = dropped_components(mask, labels)  # too small only: equivocal ROIs stay out (not tracked disease)
    physiological = maps.get("physiological")
    if physiological is not None and drop_physiological:
        labels = drop_physiological_rois(labels, pet_suv, physiological, model.config.physiological_threshold)[0]
    if ct is not None and drop_intracranial:
        from LesionResponseLib.segmentation.anatomy import INTRACRANIAL_SHARE, cranial_cavity

        report("cranial cavity")
        labels = drop_rois_in(labels, pet_suv, cranial_cavity(ct, pet_suv), INTRACRANIAL_SHARE)[0]
    if equivocal_max_volume_ml > 0:
        labels = drop_equivocal_rois(labels, pet_suv, liver_reference(pet_suv)[0], equivocal_max_volume_ml)
    return SegmentationOutput(labels, probability, candidates, physiological)


def _model(path: str | None) -> SegmentationModel:
    # keyed on the file's modification time too: a model file rewritten in place (training, calibration) is reloaded
    key = f"{Path(path).resolve()}@{Path(path).stat().st_mtime_ns}" if path and Path(path).exists() else str(path)
    if key not in _CACHE:
        _CACHE[key] = load_model(path)
    return _CACHE[key]


def _check_input(pet_suv: sitk.Image, min_suv: float = -5.0, max_suv: float = 2000.0) -> None:
    """Refuse what cannot be an SUV PET volume: not 3D, empty, all zero, or values outside
    [``min_suv``, ``max_suv``] (noise dips a little below 0; CT in HU reaches -1000, Bq/mL reaches 1e3-1e5)."""
    if pet_suv.GetDimension() != 3:
        raise SegmentationError(describe(f"PET image has {pet_suv.GetDimension()} dimensions, not 3",
                                         fix="Pass one 3D SUV volume per time point."))
    values = sitk.GetArrayViewFromImage(pet_suv)
    if values.size == 0 or not np.isfinite(values).any() or float(np.nanmax(values)) <= 0:
        raise SegmentationError(describe(f"PET image of size {pet_suv.GetSize()} is empty or all zero",
                                         fix="Check that the series holds PET pixel data and was converted to SUV."))
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if low < min_suv:
        raise SegmentationError(describe(f"input values reach {low:.0f}, impossible for SUV (CT in HU?)",
                                         fix="Pass the PET converted to SUV (dicomio.load_timepoint(...).pet_suv), "
                                             "not the CT."))
    if high > max_suv:
        raise SegmentationError(describe(f"input values reach {high:.3g}, far above any SUV (Bq/mL or raw counts?)",
                                         fix="Multiply the PET by its SUV factor first "
                                             "(dicomio.load_timepoint(...).pet_suv is already SUV)."))
