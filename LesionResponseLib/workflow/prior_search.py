"""When and where the ``analyze`` pipeline runs the prior-guided search, and how its ROIs join the analysis.

After the first matching, every track is looked for where it has no accepted ROI:

- **forward**: at each time point after its first appearance without a ROI (a gap or after its last one),
  starting from its most recent ROI before that time point (found ones included, so a shrinking lesion is
  followed from scan to scan);
- **backward** (a lesion "visible in retrospect"): a track first seen at follow-up ``f`` is looked for at
  ``f − 1``, ``f − 2`` … down to the baseline, from its earliest ROI after that time point (found ones
  included). The search does not stop at the first time point where nothing is found: a lesion's uptake
  fluctuates under therapy, so a lesion below the limit at ``f − 1`` may be plain at ``f − 2`` (the forward
  search treats a gap the same way), while a lesion that is truly new costs one more search per earlier scan,
  each with the search's false-alarm probability (1 %);
- **model candidates** (``params.prior_search.candidates``, off by default): a lesion the model saw but its ROI
  filters dropped (a component under ``min_roi_volume_ml``) and no ROI covers is searched for at the previous,
  else the next time point; when found there *and* the model's probability in the found ROI reaches its evidence
  threshold (``params.prior_search.model_probability``, 0.2), it is confirmed (a noise component does not come
  back at the same place), contoured by the search from that find, and followed forward and backward like a
  track. Uptake alone does not confirm: physiological uptake (an adrenal, the pituitary) is there on every scan,
  and what tells it from a lesion is the model's view of its surroundings, which must see the lesion again
  (an adrenal candidate of patient 4310, then unseen, was confirmed by uptake at probability 0.01 and followed to
  every scan before this rule; docs/changelog.md).

A ROI (or candidate) lying mostly on physiological uptake by the segmentation model's ``physiological`` output
(models that have one, ``params.prior_search.skip_physiological``; see
:func:`LesionResponseLib.segmentation.prior_guided.physiological_share`) is not searched from, and a find lying
mostly on it is not kept: an adrenal the model called a lesion on one scan was otherwise followed to every scan
(unseen patient 4315: 11 of its 17 false-positive ROIs; docs/changelog.md). What tells an adrenal from a node beside it is
anatomy, which the model learns with the lesions; uptake, probability and shape at the find did not (docs/changelog.md).

A ROI (or candidate) lying in the cranial cavity found on its time point's CT
(:mod:`LesionResponseLib.segmentation.anatomy`, ``params.prior_search.skip_intracranial``) is not searched from:
the pituitary's physiological uptake, which the model calls a lesion on the odd scan, would otherwise be found
again on every scan (on the development patient 4300 the candidates turned one pituitary into a track on all 7
scans before this rule; docs/changelog.md). The record says so.

The prior ROI is mapped through the registration and grown by ``params.prior_search.margin_mm``
(:func:`LesionResponseLib.tracking.priors.map_mask`); the detection rule is
:func:`LesionResponseLib.segmentation.prior_guided.search_known_location` (every ROI already at that time point,
rejected ones included, is excluded), with the detection model's probability map of that time point as model
evidence when the segmentation was a model's. A found contour becomes a new label of that time point's label map
(``LesionROI.source = "prior-guided"``); every search, found or not, is a record in
``Analysis.prior_searches`` with its detection limit (SUV). The pipeline then re-measures the time points
that gained ROIs and matches again, so links, tracks and categories follow from the same rules as for model
ROIs. Results are cached on the label maps, the registrations, the PET series and the search parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from LesionResponseLib.analysis.quantify import measure_rois
from LesionResponseLib.config import AnalysisParameters, QuantificationConfig
from LesionResponseLib.datamodel import LesionROI, SearchRecord, Track, roi_id_for
from LesionResponseLib.segmentation.anatomy import INTRACRANIAL_SHARE, NOT_SEARCHED_INTRACRANIAL
from LesionResponseLib.segmentation.prior_guided import PHYSIOLOGICAL_PROBABILITY
from LesionResponseLib.workflow.stages import PriorSearchFinds

#: Reason of a candidate's confirmation search that found uptake the model does not see there.
NOT_CONFIRMED_WITHOUT_MODEL = "uptake found, but not the model's evidence: candidate not confirmed"
#: Reason recorded for a search not run from a ROI on physiological uptake, and for a find on it not kept.
NOT_SEARCHED_PHYSIOLOGICAL = ("not searched: the lesion-ROI lies on physiological uptake by the model's organ "
                              "output (adrenal, kidney, spleen, ...: the reader decides)")
NOT_KEPT_PHYSIOLOGICAL = "uptake found, but on physiological uptake by the model's organ output: not kept"


@dataclass
class _Searcher:
    """Label arrays being augmented, with what a search needs for each time point."""

    pets: dict[int, sitk.Image]
    arrays: dict[int, np.ndarray]
    transforms: dict
    params: AnalysisParameters
    records: list[SearchRecord]
    label_of: dict[str, int]  # ROI id -> its value in its time point's label array (found ROIs added)
    probabilities: dict[int, np.ndarray]  # the model's lesion probability per time point (0-1 or uint8), if any
    cranial_of: Callable[[int], np.ndarray | None] | None = None  # cranial cavity (PET grid) of a time point
    physiological: dict[int, np.ndarray] = field(default_factory=dict)  # the model's organ output (0-1 or uint8)
    physiological_threshold: float = PHYSIOLOGICAL_PROBABILITY  # the model's ModelConfig.physiological_threshold
    _cranial: dict[int, np.ndarray | None] = field(default_factory=dict)

    def on_physiological(self, mask: np.ndarray, tp: int) -> bool:
        """Does ``mask`` (time point ``tp``) lie mostly on physiological uptake by the model's organ output?"""
        from LesionResponseLib.segmentation.prior_guided import PHYSIOLOGICAL_SHARE, physiological_share

        organs = self.physiological.get(tp)
        return organs is not None and \
            physiological_share(mask, organs, self.physiological_threshold) >= PHYSIOLOGICAL_SHARE

    def intracranial(self, mask: np.ndarray, tp: int) -> bool:
        """Does ``mask`` (time point ``tp``) lie mostly in the cranial cavity found on that time point's CT?"""
        if self.cranial_of is None:
            return False
        if tp not in self._cranial:
            self._cranial[tp] = self.cranial_of(tp)
        cavity = self._cranial[tp]
        return cavity is not None and bool(mask.any()) and float(cavity[mask].mean()) >= INTRACRANIAL_SHARE

    def search(self, prior_ids: list[str], prior_tp: int, tp: int, direction: str) -> str | None:
        """Look at ``tp`` for the lesion of ``prior_ids`` (time point ``prior_tp``); the new ROI id or None."""
        prior_mask = np.isin(self.arrays[prior_tp], [self.label_of[rid] for rid in prior_ids])
        return self.search_mask(prior_mask, prior_tp, tp, direction=direction, prior_names=sorted(prior_ids))

    def search_mask(self, prior_mask: np.ndarray, prior_tp: int, tp: int, *, direction: str,
                    prior_names: list[str], need_model: bool = False) -> str | None:
        """Look at ``tp`` for the lesion at ``prior_mask`` of ``prior_tp``; the new ROI id or None.
        ``need_model``: a find counts only where the model's probability reaches its evidence threshold too
        (confirming a model candidate, :func:`_confirm_candidates`)."""
        from LesionResponseLib.segmentation.prior_guided import not_searched, search_known_location
        from LesionResponseLib.tracking.priors import map_mask

        for skipped, reason in ((self.intracranial, NOT_SEARCHED_INTRACRANIAL),
                                (self.on_physiological, NOT_SEARCHED_PHYSIOLOGICAL)):
            if skipped(prior_mask, prior_tp):
                self.records.append(SearchRecord(direction, tp, prior_tp, prior_names, None,
                                                 **not_searched(reason).summary()))
                return None
        region = map_mask(prior_mask, self.pets[prior_tp], self.transforms, source=prior_tp, target=tp,
                          target_grid=self.pets[tp],
                          margin_mm=self.params.prior_search.margin_mm)
        result = search_known_location(self.pets[tp], region, self.params.quantification.psf_fwhm_mm, others=self.arrays[tp],
                                       false_alarm=self.params.prior_search.false_alarm,
                                       min_volume_ml=self.params.segmentation.min_roi_volume_ml,
                                       probability=self.probabilities.get(tp),
                                       model_threshold=self.params.prior_search.model_probability)
        if need_model and result.found and result.mask is not None:
            result = self._with_model_evidence(result, tp)
        if result.found and result.mask is not None and self.on_physiological(result.mask, tp):
            import dataclasses

            result = dataclasses.replace(result, found=False, mask=None, evidence="", reason=NOT_KEPT_PHYSIOLOGICAL)
        roi_id = self.add(tp, result.mask) if result.found and result.mask is not None else None
        self.records.append(SearchRecord(direction, tp, prior_tp, prior_names, roi_id, **result.summary()))
        return roi_id

    def _with_model_evidence(self, result, tp: int):
        """``result`` if the model's highest probability in its ROI is at least the evidence threshold, else
        not found (with that probability and why)."""
        import dataclasses

        from LesionResponseLib.segmentation.prior_guided import as_probability

        probability = self.probabilities.get(tp)
        threshold = self.params.prior_search.model_probability
        if probability is None or threshold <= 0:
            return result
        p_max = float(as_probability(np.asarray(probability)[result.mask]).max())
        if p_max >= threshold:
            return dataclasses.replace(result, model_probability=p_max)
        return dataclasses.replace(result, found=False, mask=None, evidence="", model_probability=p_max,
                                   reason=f"{NOT_CONFIRMED_WITHOUT_MODEL} ({p_max:.2f} < {threshold:g})")

    def add(self, tp: int, mask: np.ndarray) -> str:
        """``mask`` as a new label of time point ``tp``; its ROI id."""
        label = int(self.arrays[tp].max()) + 1
        self.arrays[tp][mask] = label
        roi_id = roi_id_for(tp, label)
        self.label_of[roi_id] = label
        return roi_id


def _extend(searcher: _Searcher, present: dict[int, list[str]], n: int) -> None:
    """Search one lesion (``present``: time point -> its ROI ids) at every time point without a ROI: forward
    from its most recent earlier ROI, backward from its earliest later one (found ones included both ways)."""
    first = min(present)
    latest = first
    for tp in range(first + 1, n):
        if tp not in present:
            found = searcher.search(present[latest], latest, tp, "forward")
            if found is None:
                continue
            present[tp] = [found]
        latest = tp
    earliest = first
    for tp in range(first - 1, -1, -1):
        found = searcher.search(present[earliest], earliest, tp, "backward")
        if found is None:
            continue
        present[tp] = [found]
        earliest = tp


def _confirm_candidates(searcher: _Searcher, candidates: dict[int, np.ndarray], n: int) -> None:
    """Model candidates (components above the model's threshold dropped as smaller than the minimum ROI volume)
    that no ROI covers become ROIs when the search finds the lesion at an adjacent time point (the previous one
    first) where the model's probability also reaches its evidence threshold (when the model's probabilities are
    given). The candidate's own ROI is then contoured by the search from that find (its voxels when that search
    finds nothing), and the new lesion is followed like a track (:func:`_extend`)."""
    for j in sorted(candidates):
        for value in range(1, int(candidates[j].max(initial=0)) + 1):
            mask = candidates[j] == value
            if not mask.any() or (searcher.arrays[j][mask] > 0).any():
                continue  # empty, or covered by a ROI found meanwhile
            name = f"candidate tp{j}-C{value:04d}"
            for k in (j - 1, j + 1):
                found = searcher.search_mask(mask, j, k, direction="confirm", prior_names=[name],
                                             need_model=True) if 0 <= k < n else None
                if found is None:
                    continue
                own = searcher.search([found], k, j, "candidate")
                if own is None:
                    own = searcher.add(j, mask)
                    searcher.records.append(SearchRecord(
                        "candidate", j, k, [found], own, found=True, evidence="model",
                        reason=f"model candidate confirmed at time point {k} (its voxels)"))
                _extend(searcher, {j: [own], k: [found]}, n)
                break


def search_tracks(tracks: list[Track], rois: list[LesionROI], labels: dict[int, sitk.Image],
                  pets: dict[int, sitk.Image], transforms: dict, params: AnalysisParameters, *,
                  probabilities: dict[int, np.ndarray] | None = None,
                  candidates: dict[int, np.ndarray] | None = None,
                  cranial_of: Callable[[int], np.ndarray | None] | None = None,
                  physiological: dict[int, np.ndarray] | None = None,
                  physiological_threshold: float = PHYSIOLOGICAL_PROBABILITY,
                  ) -> tuple[dict[int, np.ndarray], list[SearchRecord]]:
    """Run every search of the module docstring: (augmented label arrays per time point, search records).
    ``probabilities``: the detection model's lesion probability (PET grid, 0-1 or uint8 0-255) per time point,
    the searches' model evidence; ``candidates``: its dropped components (uint16 labels) per time point, confirmed
    longitudinally (none: uptake test only, no candidates); ``cranial_of(k)``: the cranial cavity of time point
    ``k`` on its PET grid (or None), computed when first needed; a ROI lying in it is not searched from;
    ``physiological``: the model's organ output (PET grid, 0-1 or uint8) per time point, where no search starts
    and no find is kept (none: no such rule), at ``physiological_threshold`` (the model's own)."""
    accepted = {r.roi_id for r in rois if r.status == "accepted"}
    searcher = _Searcher(pets, {k: sitk.GetArrayFromImage(img) for k, img in labels.items()}, transforms, params,
                         [], {r.roi_id: r.label for r in rois}, probabilities or {}, cranial_of,
                         physiological or {}, physiological_threshold)
    n = len(labels)
    for track in sorted(tracks, key=lambda t: t.track_id):
        present = {tp: [r for r in ids if r in accepted] for tp, ids in track.rois.items()}
        present = {tp: ids for tp, ids in present.items() if ids}
        if present:
            _extend(searcher, present, n)
    _confirm_candidates(searcher, candidates or {}, n)
    return searcher.arrays, searcher.records


def add_finds(rois: list[LesionROI], labels: dict[int, sitk.Image], pets: dict[int, sitk.Image],
              finds: PriorSearchFinds, *, settings: QuantificationConfig,
              ) -> tuple[dict[int, sitk.Image], list[LesionROI]]:
    """(label maps with the grown ones, ROIs) after the searches: the time points that gained prior-guided ROIs
    measured again (neighbours shape the PV correction), the others kept as they were."""
    labels = {**labels, **finds.grown}
    found = {r.roi_id for r in finds.records if r.roi_id}
    kept = [r for r in rois if r.timepoint not in finds.grown]
    for k in sorted(finds.grown):
        for roi in measure_rois(labels[k], pets[k], k, settings=settings):
            if roi.roi_id in found:
                roi.source = "prior-guided"
            kept.append(roi)
    return labels, sorted(kept, key=lambda r: (r.timepoint, r.label))
